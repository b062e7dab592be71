//! Loading the key-encryption key for a store: the only way in, for the server and every
//! command that needs the key. It never replaces a lost key while the store holds signing
//! keys (a new key would silently make every one of them unusable), and it refuses a key under
//! which no stored signing key decrypts. See `docs/decisions/0009-kek-loss-and-rotation.md`.

use std::path::PathBuf;

use crate::config::Config;
use crate::crypto::kek::{write_private, Kek, KEK_FILE};
use crate::crypto::keys;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("key-encryption key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key-encryption key file {0} does not hold base64 of 32 bytes")]
    Malformed(PathBuf),
    #[error(
        "key-encryption key file {} is missing but the store holds {keys} signing keys \
         encrypted under it: restore the file from a backup or set TESSERA_KEY_ENCRYPTION_KEY \
         (a new key would make every signing key unusable)",
        .path.display()
    )]
    Missing { path: PathBuf, keys: usize },
    #[error(
        "wrong key-encryption key: none of the {keys} stored signing keys decrypts under {}",
        describe_wrong(.from)
    )]
    Wrong { from: KekSource, keys: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe_wrong(from: &KekSource) -> String {
    match from {
        KekSource::Configured => "the configured key_encryption_key: set the key they were \
            encrypted under (restore it from a backup)"
            .to_owned(),
        KekSource::File(path) | KekSource::Generated(path) => format!(
            "the key in {}: restore the right file from a backup or set \
             TESSERA_KEY_ENCRYPTION_KEY",
            path.display()
        ),
    }
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// `key_encryption_key` in the configuration (file or environment).
    Configured,
    /// The file in the data folder.
    File(PathBuf),
    /// The file in the data folder, generated just now because the store had no keys.
    Generated(PathBuf),
}

/// The key for `store`: the configured one, or the one in the data folder, generated only
/// while the store holds no signing keys. Fails when the file is gone but keys exist, and
/// when keys exist and none of them decrypts under the key.
pub async fn load(config: &Config, store: &dyn Store) -> Result<(Kek, KekSource), KekError> {
    let records = store.signing_keys().await?;
    let (kek, source) = match configured(config)? {
        Some(kek) => (kek, KekSource::Configured),
        None => file_or_generate(config, records.len())?,
    };
    // One key that decrypts proves it is the right KEK; a single bad row is the key set's
    // business (skipped and reported), not a reason to refuse to start.
    if !records.is_empty() && !records.iter().any(|r| keys::decrypts(r, &kek)) {
        return Err(KekError::Wrong {
            from: source,
            keys: records.len(),
        });
    }
    if let KekSource::Generated(path) = &source {
        tracing::warn!(
            path = %path.display(),
            "generated a key-encryption key next to the data; back it up, and set \
             TESSERA_KEY_ENCRYPTION_KEY in production"
        );
    }
    Ok((kek, source))
}

fn configured(config: &Config) -> Result<Option<Kek>, KekError> {
    match config.configured_kek() {
        None => Ok(None),
        // Config validation already checked the length; decode again rather than carry bytes.
        Some(b64) => Kek::from_base64(b64)
            .map(Some)
            .ok_or_else(|| KekError::Malformed(PathBuf::from("(config)"))),
    }
}

/// The key file in the data folder; when it is missing, a new one if the store holds no keys.
fn file_or_generate(config: &Config, stored_keys: usize) -> Result<(Kek, KekSource), KekError> {
    let path = kek_file(config);
    let io = |source| KekError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let kek = Kek::from_base64(&text).ok_or_else(|| KekError::Malformed(path.clone()))?;
            Ok((kek, KekSource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if stored_keys > 0 {
                // The keys in the store were encrypted under the lost file: say so, never
                // paper over it with a new key.
                return Err(KekError::Missing {
                    path,
                    keys: stored_keys,
                });
            }
            std::fs::create_dir_all(&config.data_dir).map_err(io)?;
            let kek = Kek::generate();
            match write_private(&path, kek.to_base64().as_bytes()) {
                Ok(()) => Ok((kek, KekSource::Generated(path))),
                // Another process (a parallel CLI call) won the race: use its key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    file_or_generate(config, stored_keys)
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// Where the key lives when none is configured.
fn kek_file(config: &Config) -> PathBuf {
    config.data_dir.join(KEK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn config_in(dir: &Path) -> Config {
        let env = BTreeMap::from([("TESSERA_DATA_DIR".to_owned(), dir.display().to_string())]);
        Config::from_sources(Some(Path::new("/dev/null")), &env).unwrap()
    }

    #[test]
    fn generates_once_with_owner_only_permissions_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir.path().join("nested"));
        let (first, source) = file_or_generate(&config, 0).unwrap();
        assert!(matches!(source, KekSource::Generated(_)));
        let path = config.data_dir.join(KEK_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = file_or_generate(&config, 0).unwrap();
        assert_eq!(source, KekSource::File(path));
        assert_eq!(first.0, second.0);
    }

    /// Two instances starting at once on one data folder (tests/it/instances.rs): each
    /// either writes the key or reads the other's, whole, and all end with the same key.
    #[test]
    fn processes_generating_at_once_all_get_the_one_key_whole() {
        for _ in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let config = std::sync::Arc::new(config_in(dir.path()));
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    let (config, start) = (config.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        file_or_generate(&config, 0).map(|(kek, _)| kek.0)
                    })
                })
                .collect();
            let keys: Vec<_> = racers
                .into_iter()
                .map(|racer| racer.join().unwrap().unwrap())
                .collect();
            assert!(keys.iter().all(|k| *k == keys[0]));
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 1, "only the key file is left: {left:?}");
        }
    }

    #[test]
    fn missing_file_is_not_regenerated_while_the_store_holds_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let err = file_or_generate(&config, 3).unwrap_err();
        assert!(matches!(err, KekError::Missing { keys: 3, .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&kek_file(&config).display().to_string()));
        assert!(message.contains("restore the file from a backup"));
        assert!(message.contains("TESSERA_KEY_ENCRYPTION_KEY"));
        assert!(!kek_file(&config).exists());
    }

    #[test]
    fn base64_roundtrips_and_only_32_bytes_are_a_key() {
        let kek = Kek::generate();
        assert_eq!(
            Kek::from_base64(&format!(" {}\n", kek.to_base64())),
            Some(kek)
        );
        assert_eq!(Kek::from_base64("dG9vIHNob3J0"), None);
        assert_eq!(Kek::from_base64("not base64!"), None);
    }

    #[test]
    fn malformed_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        std::fs::write(dir.path().join(KEK_FILE), "not base64!").unwrap();
        assert!(matches!(
            file_or_generate(&config, 0),
            Err(KekError::Malformed(_))
        ));
    }
}
