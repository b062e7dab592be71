//! The key-encryption key (KEK): 32 bytes that encrypt signing keys at rest.
//!
//! Production configures it (`TESSERA_KEY_ENCRYPTION_KEY`), so every instance sharing a store
//! can decrypt the same keys. A development server with nothing configured generates one into
//! its data folder (mode 0600) and warns, because a key lying next to the data it protects
//! protects little.
//!
//! Loading it for a store is `keys::kek::load`, which may look at the store; this module only
//! holds the key and writes its file.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

/// File name of the generated key inside the data folder.
pub const KEK_FILE: &str = "key-encryption-key";

/// The key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Kek(pub [u8; 32]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A new random key.
    pub fn generate() -> Kek {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Kek(bytes)
    }

    /// Parses base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(b64: &str) -> Option<Kek> {
        STANDARD.decode(b64.trim()).ok()?.try_into().ok().map(Kek)
    }

    /// The form `TESSERA_KEY_ENCRYPTION_KEY` and the key file hold.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// Creates `path` readable by the owner only; fails if it exists, so a key is never replaced.
/// The file appears whole or not at all: it is written and flushed under a temporary name
/// beside it and then linked into place, which fails if `path` exists. Another process
/// starting at the same moment reads it as soon as it exists, and must never find it empty
/// or half written (which it did when the file was created in place and then written: two
/// instances on one data folder, `tests/it/instances.rs`).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    rand::rng().fill_bytes(&mut suffix);
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(suffix)));
    let written = create_private(&tmp, contents).and_then(|()| std::fs::hard_link(&tmp, path));
    // Linked or not, the temporary name goes: the file stays under `path` when it was linked.
    let _ = std::fs::remove_file(&tmp);
    written
}

fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
