//! `tessera kek rotate`: re-encrypt every signing key under a new key-encryption key.
//!
//! The store changes in one transaction. A key kept in the data folder is replaced so that
//! every step can fail without losing a key: the new key is written to a temporary file
//! beside the old one, the store commits, and only then is the file renamed over the old one.
//! See `docs/decisions/0009-kek-loss-and-rotation.md`.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::{open, print, CliError};
use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::crypto::kek::{self, Kek};
use crate::crypto::keys;
use crate::keys::kek::{load, KekSource};
use crate::store::ReencryptedKey;

#[derive(Debug, Subcommand)]
pub enum KekCommand {
    /// Re-encrypt every signing key under a new key-encryption key, generated and printed
    /// once unless read from stdin.
    Rotate {
        /// Read the new key (base64 of 32 bytes) from stdin instead of generating one.
        #[arg(long)]
        new_key_stdin: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: KekCommand) -> Result<(), CliError> {
    match command {
        KekCommand::Rotate {
            new_key_stdin,
            json,
        } => rotate(config, new_key_stdin, json).await,
    }
}

async fn rotate(config: &Config, new_key_stdin: bool, json: bool) -> Result<(), CliError> {
    // Input first: a bad key must fail before anything is touched.
    let given = if new_key_stdin {
        Some(read_key()?)
    } else {
        None
    };
    let store = open(config).await?;
    let (old, source) = load(config, store.as_ref()).await?;
    let generated = given.is_none();
    let new = given.unwrap_or_else(Kek::generate);
    if new == old {
        return Err(CliError::new(
            "the new key-encryption key is the current one; nothing changed",
        ));
    }
    let records = store.signing_keys().await?;
    let mut reencrypted = Vec::with_capacity(records.len());
    for record in &records {
        // Every key or none: one left under the old key would be lost with it.
        let ciphertext = keys::reencrypt(record, &old, &new)
            .map_err(|e| CliError::new(format!("{e}; nothing changed")))?;
        reencrypted.push(ReencryptedKey {
            kid: record.kid.clone(),
            previous: record.private_jwk_encrypted.clone(),
            private_jwk_encrypted: ciphertext,
        });
    }
    let kids: Vec<&str> = records.iter().map(|r| r.kid.as_str()).collect();
    let now = crate::app::Clock::default().now();
    let audit = AuditEvent::new(AuditKind::KekRotated, "cli", now).details(json!({ "kids": kids }));

    let file = match &source {
        KekSource::File(path) | KekSource::Generated(path) => Some(path.clone()),
        KekSource::Configured => None,
    };
    // The new key is on disk before the store depends on it.
    let staged = match &file {
        Some(path) => Some(stage(path, &new)?),
        None => None,
    };
    match store.reencrypt_signing_keys(&reencrypted, &audit).await {
        Ok(true) => {}
        Ok(false) => {
            discard(staged.as_deref());
            return Err(CliError::new(
                "the signing keys changed during the rotation (a key was added or re-encrypted); \
                 nothing changed: run the command again",
            ));
        }
        Err(e) => {
            // A connection lost during the commit leaves it unknown whether the keys are now
            // under the new key: keep it where the operator can find it.
            let kept = match &staged {
                Some(tmp) => format!("the new key is kept in {}", tmp.display()),
                None if generated => format!("the new key is {}", new.to_base64()),
                None => "the new key is the one given on stdin".to_owned(),
            };
            return Err(CliError::new(format!(
                "{e}; if the server then reports a wrong key-encryption key, the change was \
                 committed and {kept}"
            )));
        }
    }
    if let (Some(path), Some(tmp)) = (&file, &staged) {
        replace(tmp, path).map_err(|e| {
            CliError::new(format!(
                "the signing keys are now encrypted under the new key, but {} could not be \
                 replaced ({e}): move {} over it",
                path.display(),
                tmp.display()
            ))
        })?;
    }

    let next_step = match &file {
        Some(path) => format!(
            "back up {} now (separately from the database) and restart the server: the old \
             key no longer decrypts any signing key",
            path.display()
        ),
        None => "set TESSERA_KEY_ENCRYPTION_KEY (key_encryption_key) to the new key on every \
                 instance and restart them: an instance restarted with the old key refuses to \
                 start"
            .to_owned(),
    };
    let out = json!({
        "kids": kids,
        "source": if file.is_some() { "file" } else { "configured" },
        "file": file.as_ref().map(|p| p.display().to_string()),
        "new_key": generated.then(|| new.to_base64()),
        "next_step": next_step,
    });
    print(json, &out, || {
        let mut lines = vec![format!(
            "re-encrypted {} signing keys under a new key-encryption key",
            kids.len()
        )];
        if generated {
            lines.push(format!(
                "new key-encryption key (shown once): {}",
                new.to_base64()
            ));
        }
        lines.push(next_step.clone());
        lines.join("\n")
    })
}

/// The key on stdin: base64 of 32 bytes, surrounding whitespace ignored.
fn read_key() -> Result<Kek, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(format!("cannot read the new key from stdin: {e}")))?;
    Kek::from_base64(&text).ok_or_else(|| {
        CliError::new(
            "--new-key-stdin: expected base64 of 32 bytes (e.g. `openssl rand -base64 32`)",
        )
    })
}

/// Writes `kek` to a new owner-only file beside `path`; a rename on the same file system
/// then replaces the old key in one step.
fn stage(path: &Path, kek: &Kek) -> Result<PathBuf, CliError> {
    let mut suffix = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut suffix);
    let name = format!(
        "{}.new-{}",
        kek::KEK_FILE,
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let tmp = path.with_file_name(name);
    kek::write_private(&tmp, kek.to_base64().as_bytes()).map_err(|e| {
        CliError::new(format!(
            "cannot write {}: {e}; nothing changed",
            tmp.display()
        ))
    })?;
    Ok(tmp)
}

/// Removes a staged key the store never used.
fn discard(tmp: Option<&Path>) {
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Renames `tmp` over `path`, then flushes the folder so the rename survives a power loss.
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
