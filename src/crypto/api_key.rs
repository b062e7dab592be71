//! The API key format (docs/api-keys.md): `tsk_`, 256 random bits as 43 base64url characters,
//! then a CRC32 of those 43 characters as 6 base64url characters — 53 characters in all.
//!
//! The prefix lets secret scanners recognise a leaked key; the checksum lets them, and
//! Tessera, reject a mistyped or made-up value without a lookup. It is not a MAC: anyone can
//! compute it, so it proves nothing about who made the key, only that it was copied whole.
//! As with every other secret, only the SHA-256 digest of the whole key is stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::token::PlainSecret;

// NEVER CHANGE: scanners match on it, and keys issued today must keep working.
pub const PREFIX: &str = "tsk_";
const RANDOM_CHARS: usize = 43;
const CHECKSUM_CHARS: usize = 6;
/// Length of every API key.
pub const LENGTH: usize = PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
/// How much of a key the owner sees again later to recognise it: the prefix and six random
/// characters (36 of its 256 bits), as other platforms show.
const HINT_CHARS: usize = PREFIX.len() + 6;

fn checksum(random: &str) -> String {
    URL_SAFE_NO_PAD.encode(crc32fast::hash(random.as_bytes()).to_be_bytes())
}

/// A new API key.
pub fn generate() -> PlainSecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let random = URL_SAFE_NO_PAD.encode(bytes);
    PlainSecret::new(format!("{PREFIX}{random}{}", checksum(&random)))
}

/// Whether `value` claims to be an API key (has the prefix), well formed or not.
pub fn looks_like(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Whether `value` is a whole API key: prefix, length, alphabet and checksum. Costs no lookup.
pub fn is_well_formed(value: &str) -> bool {
    let Some(rest) = value.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != RANDOM_CHARS + CHECKSUM_CHARS
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return false;
    }
    let (random, sum) = rest.split_at(RANDOM_CHARS);
    // 43 characters carry 258 bits; a canonical encoding of 32 bytes has the last two zero.
    URL_SAFE_NO_PAD.decode(random).is_ok_and(|b| b.len() == 32) && checksum(random) == sum
}

/// The start of a key, shown in lists so that its owner can tell keys apart.
pub fn hint(key: &str) -> String {
    key.chars().take(HINT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        assert_eq!(a.expose().len(), LENGTH);
        assert!(a.expose().starts_with("tsk_"));
        assert!(is_well_formed(a.expose()));
        assert_ne!(a, generate());
        assert_eq!(hint(a.expose()).len(), 10);
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let key = generate().expose().to_owned();
        let mut bytes = key.clone().into_bytes();
        // Change one random character (not the checksum).
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(bytes).unwrap();
        assert!(!is_well_formed(&typo));
        assert!(!is_well_formed(&key[..LENGTH - 1]));
        assert!(!is_well_formed(&format!("{key}x")));
        assert!(!is_well_formed(&key.replacen("tsk_", "tsa_", 1)));
        assert!(!is_well_formed(""));
        assert!(!is_well_formed(&format!("tsk_{}", "é".repeat(24))));
    }

    #[test]
    fn checksum_is_crc32_of_the_random_part() {
        // A fixed vector, so the format documented in docs/api-keys.md cannot drift.
        let random = "A".repeat(43);
        assert_eq!(crc32fast::hash(random.as_bytes()), 0x0c2b_5986);
        assert_eq!(checksum(&random), "DCtZhg");
    }
}
