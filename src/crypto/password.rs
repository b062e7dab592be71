//! Password hashing with argon2id (RFC 9106), PHC strings in the store.
//!
//! Hashing costs tens of milliseconds of CPU and ~19 MiB of memory, so it runs on tokio's
//! blocking pool, and a semaphore bounds how many run at once: a burst of logins waits rather
//! than exhausting memory or starving the async workers. The wait is bounded too: when
//! `concurrency + queue` checks are already running or waiting, a login check is refused at
//! once (`PasswordError::Busy`, answered with 503 and `Retry-After`) instead of queueing
//! without limit behind a flood.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::PasswordPolicy;

/// Why hashing or verifying could not run (not "wrong password", which is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2: {0}")]
    Argon2(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("password hashing is shutting down")]
    Closed,
    #[error("too many password checks are waiting")]
    Busy,
}

/// Hashes and verifies passwords off the async runtime, a bounded number at once.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// Running plus waiting login checks: `concurrency + queue` at most.
    slots: Arc<Semaphore>,
    /// A hash of a random password with the same parameters, verified when the user does not
    /// exist, so an unknown username costs the same work as a wrong password.
    dummy: Arc<OnceLock<String>>,
}

impl Passwords {
    pub fn new(policy: &PasswordPolicy) -> Result<Passwords, PasswordError> {
        let params = Params::new(
            policy.memory_kib,
            policy.iterations,
            policy.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Argon2(e.to_string()))?;
        Ok(Passwords {
            params,
            permits: Arc::new(Semaphore::new(policy.concurrency.max(1))),
            slots: Arc::new(Semaphore::new(
                policy.concurrency.max(1).saturating_add(policy.queue),
            )),
            dummy: Arc::new(OnceLock::new()),
        })
    }

    /// Computes the dummy hash now, so that even the first unknown-user login costs exactly
    /// one hash (the server calls this at start-up).
    pub async fn warm_up(&self) -> Result<(), PasswordError> {
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            if dummy.get().is_none() {
                let d = hash_blocking(params, "tessera-dummy-password")?;
                let _ = dummy.set(d);
            }
            Ok(())
        })
        .await?
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            hash_blocking(params, password.expose_secret())
        })
        .await?
    }

    /// Checks `password` against `phc`; with no hash (unknown user, or a user without a
    /// password) it does the same work against a dummy hash and answers `false`.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => PasswordError::Busy,
                tokio::sync::TryAcquireError::Closed => PasswordError::Closed,
            })?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            // Held by the hashing itself: a request that goes away (client gone, timeout)
            // does not free its slot while its hash still runs.
            let _held = (slot, permit);
            let (phc, real) = match phc {
                Some(phc) => (phc, true),
                None => {
                    let phc = match dummy.get() {
                        Some(d) => d.clone(),
                        None => {
                            let d = hash_blocking(params.clone(), "tessera-dummy-password")?;
                            dummy.get_or_init(|| d).clone()
                        }
                    };
                    (phc, false)
                }
            };
            let parsed =
                PasswordHash::new(&phc).map_err(|e| PasswordError::Argon2(e.to_string()))?;
            // Verification reads the parameters from the stored hash, so hashes made under an
            // older policy keep working after the policy changes.
            let ok = Self::argon2(params)
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(ok && real)
        })
        .await?
    }
}

fn hash_blocking(params: Params, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Passwords::argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Argon2(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(&PasswordPolicy {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            concurrency: 2,
            queue: 0,
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_checks_beyond_concurrency_plus_queue_are_refused_at_once() {
        let p = Passwords::new(&PasswordPolicy {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            concurrency: 1,
            queue: 1,
        })
        .unwrap();
        // Hold both slots (one running, one waiting) by holding their permits here.
        let held = p.slots.clone().try_acquire_many_owned(2).unwrap();
        let refused = p.verify(SecretString::from("x"), None).await;
        assert!(matches!(refused, Err(PasswordError::Busy)));
        drop(held);
        assert!(!p.verify(SecretString::from("x"), None).await.unwrap());
    }

    #[tokio::test]
    async fn hash_is_argon2id_phc_and_verifies() {
        let p = cheap();
        let phc = p.hash(SecretString::from("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(p
            .verify("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!p.verify("wrong".into(), Some(phc)).await.unwrap());
    }

    #[tokio::test]
    async fn missing_hash_never_verifies() {
        let p = cheap();
        assert!(!p
            .verify("tessera-dummy-password".into(), None)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn default_policy_is_owasp() {
        let p = Passwords::new(&PasswordPolicy::default()).unwrap();
        let phc = p.hash("x".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    }
}
