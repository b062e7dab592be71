//! The key-encryption key (KEK): 32 bytes that encrypt signing keys at rest.
//!
//! Production configures it (`TESSERA_KEY_ENCRYPTION_KEY`), so every instance sharing a store
//! can decrypt the same keys. A development server with nothing configured generates one into
//! its data folder (mode 0600) and warns, because a key lying next to the data it protects
//! protects little.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

use crate::config::Config;

/// File name of the generated key inside the data folder.
pub const KEK_FILE: &str = "key-encryption-key";

/// The key. `Debug` never shows it.
#[derive(Clone)]
pub struct Kek(pub [u8; 32]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("key-encryption key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key-encryption key file {0} does not hold base64 of 32 bytes")]
    Malformed(PathBuf),
}

/// Where the key came from; the caller logs a warning for `Generated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    Configured,
    File(PathBuf),
    Generated(PathBuf),
}

/// The configured key, or the one in the data folder, generating it on first use.
pub fn load_or_generate(config: &Config) -> Result<(Kek, KekSource), KekError> {
    if let Some(b64) = config.configured_kek() {
        // Config validation already checked the length; decode again rather than carry bytes.
        let bytes = decode(b64).ok_or_else(|| KekError::Malformed(PathBuf::from("(config)")))?;
        return Ok((Kek(bytes), KekSource::Configured));
    }
    let path = config.data_dir.join(KEK_FILE);
    let io = |source| KekError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = decode(text.trim()).ok_or_else(|| KekError::Malformed(path.clone()))?;
            Ok((Kek(bytes), KekSource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.data_dir).map_err(io)?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            match write_private(&path, STANDARD.encode(bytes).as_bytes()) {
                Ok(()) => Ok((Kek(bytes), KekSource::Generated(path))),
                // Another process (a parallel CLI call) won the race: use its key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_generate(config),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn decode(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Creates `path` readable by the owner only; fails if it exists, so a key is never replaced.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config_in(dir: &Path) -> Config {
        let env = BTreeMap::from([("TESSERA_DATA_DIR".to_owned(), dir.display().to_string())]);
        Config::from_sources(Some(Path::new("/dev/null")), &env).unwrap()
    }

    #[test]
    fn generates_once_with_owner_only_permissions_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir.path().join("nested"));
        let (first, source) = load_or_generate(&config).unwrap();
        assert!(matches!(source, KekSource::Generated(_)));
        let path = config.data_dir.join(KEK_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = load_or_generate(&config).unwrap();
        assert_eq!(source, KekSource::File(path));
        assert_eq!(first.0, second.0);
    }

    #[test]
    fn malformed_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        std::fs::write(dir.path().join(KEK_FILE), "not base64!").unwrap();
        assert!(matches!(
            load_or_generate(&config),
            Err(KekError::Malformed(_))
        ));
    }
}
