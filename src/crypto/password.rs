//! Password hashing with argon2id (RFC 9106), PHC strings in the store.
//!
//! Hashing costs tens of milliseconds of CPU and ~19 MiB of memory, so it runs on threads of
//! its own, `concurrency` of them, fed by one queue: a burst of logins waits rather than
//! exhausting memory or starving the async workers. A thread that finishes a hash takes the
//! next from the queue itself, so a core does not wait for the async runtime to start it
//! (decision 0046). The wait is bounded too: when
//! `concurrency + queue` checks are already running or waiting, a login check is refused at
//! once (`PasswordError::Busy`, answered with 503 and `Retry-After`) instead of queueing
//! without limit behind a flood.
//!
//! Each check needs `memory_kib` of working memory. Allocated afresh, every check paid for
//! zeroing it and for a page fault per 4 KiB (a sixth of a login's CPU in the benchmark's
//! profile), and the allocator handed it back to the kernel in between. So the buffers of
//! finished checks are kept in an [`Arena`] for the next one, and dropped once no check
//! has used them for [`Arena::IDLE`]: a busy server reuses them, an idle one holds none.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::config::PasswordPolicy;

/// Why hashing or verifying could not run (not "wrong password", which is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2: {0}")]
    Argon2(String),
    #[error("password hashing failed before answering")]
    Lost,
    #[error("password hashing is shutting down")]
    Closed,
    #[error("starting a password hashing thread: {0}")]
    Start(std::io::Error),
    #[error("too many password checks are waiting")]
    Busy,
}

/// Hashes and verifies passwords off the async runtime, a bounded number at once.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// The hashing threads' queue; they end once every `Passwords` holding it is gone.
    jobs: mpsc::Sender<Job>,
    /// Hashes being computed now.
    running: Arc<AtomicUsize>,
    /// Running plus waiting login checks: `concurrency + queue` at most.
    slots: Arc<Semaphore>,
    /// The slots semaphore's size, to tell how many of its permits are out.
    slot_count: usize,
    /// A hash of a random password with the same parameters, verified when the user does not
    /// exist, so an unknown username costs the same work as a wrong password.
    dummy: Arc<OnceLock<String>>,
    arena: Arc<Arena>,
    spent: Arc<Spent>,
}

/// What hashing has cost so far: hashes computed (and verified) and the CPU time the hashing
/// threads spent on them. Login throughput is bounded by that CPU time, so an operator (and
/// the benchmark) can tell how much of the process's CPU went to hashing and how much to
/// everything else, at the machine's speed of the moment.
#[derive(Default)]
struct Spent {
    hashes: AtomicU64,
    cpu_us: AtomicU64,
}

impl Spent {
    /// Runs `hash` (one argon2 computation) and counts it with the CPU time its thread spent.
    fn count<T>(&self, hash: impl FnOnce() -> T) -> T {
        let start = thread_cpu_ns();
        let out = hash();
        let us = match (start, thread_cpu_ns()) {
            (Some(start), Some(end)) => end.saturating_sub(start) / 1_000,
            _ => 0,
        };
        self.cpu_us.fetch_add(us, Ordering::Relaxed);
        self.hashes.fetch_add(1, Ordering::Relaxed);
        crate::metrics::password_hashed(us);
        out
    }
}

/// The calling thread's CPU time in nanoseconds (its own CPU clock, exact up to the moment
/// of the call; `/proc/thread-self/schedstat` would lag by up to a scheduler tick).
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u64::try_from(t.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Starts `count` hashing threads on one queue.
fn start_threads(count: usize) -> Result<mpsc::Sender<Job>, PasswordError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..count {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("password-hash-{i}"))
            .spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = next else {
                    return;
                };
                // A job that panics answers nothing (its caller sees `Lost`); the thread
                // stays for the next.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            })
            .map_err(PasswordError::Start)?;
    }
    Ok(jobs)
}

/// Counts a hash as running for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::AcqRel);
        Running(Arc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Working memory of finished password checks, kept for the next (see the module comment).
#[derive(Default)]
struct Arena {
    free: Mutex<Vec<(Vec<Block>, Instant)>>,
}

impl Arena {
    /// How long a buffer is kept without being used. Under login load a buffer is reused
    /// within milliseconds; once the load stops, it is dropped (and the allocator returns
    /// its 19 MiB within its half-second decay, decision 0020) well inside the two seconds
    /// after which the bench reads the idle RSS. At c = 64 the logins still queued when the
    /// load stops hash for up to half a second more; with 500 ms a buffer could be dropped
    /// 1.2 s after the load and returned 2.2 s after, past that reading.
    const IDLE: Duration = Duration::from_millis(100);
    /// How often idle buffers are looked for: a buffer goes at most this long after
    /// [`Arena::IDLE`].
    const SWEEP: Duration = Duration::from_millis(50);

    /// A buffer of at least `blocks` blocks; its content is whatever the last check left.
    fn take(&self, blocks: usize) -> Vec<Block> {
        let reused = {
            let mut free = self.lock();
            free.iter()
                .position(|(b, _)| b.len() >= blocks)
                .map(|i| free.swap_remove(i).0)
        };
        reused.unwrap_or_else(|| vec![Block::default(); blocks])
    }

    fn give(&self, buffer: Vec<Block>) {
        self.lock().push((buffer, Instant::now()));
    }

    /// Drops the buffers unused for [`Arena::IDLE`].
    fn trim(&self) {
        self.lock().retain(|(_, used)| used.elapsed() < Self::IDLE);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<Block>, Instant)>> {
        // The list stays valid even if a holder panicked.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
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
        let concurrency = policy.concurrency.max(1);
        let slot_count = concurrency.saturating_add(policy.queue);
        Ok(Passwords {
            params,
            jobs: start_threads(concurrency)?,
            running: Arc::default(),
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            dummy: Arc::new(OnceLock::new()),
            arena: Arc::default(),
            spent: Arc::default(),
        })
    }

    /// Drops idle argon2 buffers every [`Arena::SWEEP`], for as long as these `Passwords`
    /// live. Call once from within the runtime (the server does at start-up).
    pub fn trim_in_background(&self) {
        let arena: Weak<Arena> = Arc::downgrade(&self.arena);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Arena::SWEEP);
            loop {
                tick.tick().await;
                match arena.upgrade() {
                    Some(arena) => arena.trim(),
                    None => return,
                }
            }
        });
    }

    /// How busy hashing is now: (hashes running, login checks waiting for a hashing thread),
    /// read without taking anything. A hash outside a login (setting a password)
    /// runs without a queue slot, so while one runs the waiting count reads one low.
    pub fn load(&self) -> (usize, usize) {
        let running = self.running.load(Ordering::Acquire);
        let checks = self
            .slot_count
            .saturating_sub(self.slots.available_permits());
        (running, checks.saturating_sub(running))
    }

    /// Hashes computed or verified so far (at sign-in, setting a password, the dummy), and the
    /// CPU time in microseconds their threads spent on them (0 where the platform does not
    /// tell a thread's CPU time).
    pub fn spent(&self) -> (u64, u64) {
        (
            self.spent.hashes.load(Ordering::Relaxed),
            self.spent.cpu_us.load(Ordering::Relaxed),
        )
    }

    /// Runs `work` on a hashing thread, after the work queued before it, and answers with
    /// its result. The work runs to its end even if the caller goes away; whatever it holds
    /// (a login's queue slot) is let go before the answer is sent.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let running = Arc::clone(&self.running);
        self.jobs
            .send(Box::new(move || {
                let out = {
                    let _running = Running::start(&running);
                    work()
                };
                let _ = answer.send(out);
            }))
            .map_err(|_| PasswordError::Closed)?;
        answered.await.map_err(|_| PasswordError::Lost)
    }

    /// Computes the dummy hash now, so that even the first unknown-user login costs exactly
    /// one hash (the server calls this at start-up).
    pub async fn warm_up(&self) -> Result<(), PasswordError> {
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        let spent = Arc::clone(&self.spent);
        self.run(move || {
            if dummy.get().is_none() {
                let d = spent.count(|| hash_blocking(params, "tessera-dummy-password"))?;
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
        let params = self.params.clone();
        let spent = Arc::clone(&self.spent);
        self.run(move || spent.count(|| hash_blocking(params, password.expose_secret())))
            .await?
    }

    /// Checks `password` against `phc`; with no hash (unknown user, or a user without a
    /// password) it does the same work against a dummy hash and answers `false`.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        Ok(self.verify_upgrading(password, phc).await?.0)
    }

    /// Like [`Passwords::verify`]; when the password is right but `phc` was made with weaker
    /// parameters than the configured ones, also a new hash of it under the configured ones,
    /// computed in the same hashing slot, for the caller to store.
    pub async fn verify_upgrading(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<(bool, Option<String>), PasswordError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => PasswordError::Busy,
                tokio::sync::TryAcquireError::Closed => PasswordError::Closed,
            })?;
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        let arena = Arc::clone(&self.arena);
        let spent = Arc::clone(&self.spent);
        self.run(move || {
            // Held by the hashing itself: a request that goes away (client gone, timeout)
            // does not free its slot while its hash still runs.
            let _held = slot;
            let (phc, real) = match phc {
                Some(phc) => (phc, true),
                None => {
                    let phc = match dummy.get() {
                        Some(d) => d.clone(),
                        None => {
                            let d = spent.count(|| {
                                hash_blocking(params.clone(), "tessera-dummy-password")
                            })?;
                            dummy.get_or_init(|| d).clone()
                        }
                    };
                    (phc, false)
                }
            };
            let ok = spent
                .count(|| verify_blocking(&arena, password.expose_secret().as_bytes(), &phc))?;
            let upgraded = if ok && real && weaker_than(&phc, &params) {
                Some(spent.count(|| hash_blocking(params, password.expose_secret()))?)
            } else {
                None
            };
            Ok((ok && real, upgraded))
        })
        .await?
    }
}

/// Recomputes the PHC string's hash of `password` in a buffer from `arena`, and compares in
/// constant time. The parameters come from the stored hash, so hashes made under an older
/// policy keep working after the policy changes.
fn verify_blocking(arena: &Arena, password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let bad = |e: &dyn std::fmt::Display| PasswordError::Argon2(e.to_string());
    let parsed = PasswordHash::new(phc).map_err(|e| bad(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| bad(&e))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| bad(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| bad(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(bad(&"stored hash without salt or output"));
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| bad(&e))?;
    let mut out = vec![0u8; expected.len()];
    let mut memory = arena.take(params.block_count());
    let done = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory,
    );
    arena.give(memory);
    done.map_err(|e| bad(&e))?;
    Ok(out.ct_eq(expected.as_bytes()).into())
}

/// Whether `phc` was made with anything weaker than argon2id v1.3 under `params`: another
/// algorithm or version, or less memory, fewer iterations or fewer lanes. (A hash that cannot
/// be read is not a candidate: it never verifies.)
fn weaker_than(phc: &str, params: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(stored) = Params::try_from(&parsed) else {
        return false;
    };
    Algorithm::try_from(parsed.algorithm) != Ok(Algorithm::Argon2id)
        || parsed.version != Some(Version::V0x13.into())
        || stored.m_cost() < params.m_cost()
        || stored.t_cost() < params.t_cost()
        || stored.p_cost() < params.p_cost()
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

    #[test]
    fn only_hashes_weaker_than_the_configured_parameters_are_upgraded() {
        let configured = Params::new(256, 2, 2, None).unwrap();
        let made = |m, t, p| hash_blocking(Params::new(m, t, p, None).unwrap(), "pw").unwrap();
        assert!(!weaker_than(&made(256, 2, 2), &configured));
        assert!(!weaker_than(&made(512, 3, 2), &configured));
        assert!(weaker_than(&made(128, 2, 2), &configured));
        assert!(weaker_than(&made(512, 1, 2), &configured));
        assert!(weaker_than(&made(512, 2, 1), &configured));
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, configured.clone())
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(weaker_than(&argon2i, &configured));
        assert!(!weaker_than("not a hash", &configured));
    }

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
    async fn hashes_run_on_their_own_threads_at_most_concurrency_at_once() {
        let p = Passwords::new(&PasswordPolicy {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            concurrency: 2,
            queue: 16,
        })
        .unwrap();
        let thread = p
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(
            thread
                .as_deref()
                .is_some_and(|n| n.starts_with("password-hash-")),
            "{thread:?}"
        );
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A thread of its own, so that it samples while the runtime's threads are busy.
        let watch = {
            let (p, done) = (p.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut most = 0;
                while !done.load(Ordering::Acquire) {
                    most = most.max(p.load().0);
                    std::thread::yield_now();
                }
                most
            })
        };
        let checks: Vec<_> = (0..12)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.verify("x".into(), None).await })
            })
            .collect();
        for check in checks {
            assert!(!check.await.unwrap().unwrap());
        }
        done.store(true, Ordering::Release);
        let most = watch.join().unwrap();
        assert!((1..=2).contains(&most), "{most} hashes at once");
        assert_eq!(p.load(), (0, 0), "every slot and thread let go");
    }

    #[tokio::test]
    async fn every_hash_is_counted_with_its_threads_cpu_time() {
        // Heavy enough that its CPU time cannot round down to nothing.
        let p = Passwords::new(&PasswordPolicy {
            memory_kib: 4096,
            iterations: 2,
            parallelism: 1,
            concurrency: 2,
            queue: 4,
        })
        .unwrap();
        assert_eq!(p.spent(), (0, 0));
        let phc = p.hash(SecretString::from("pw")).await.unwrap();
        assert!(p.verify(SecretString::from("pw"), Some(phc)).await.unwrap());
        // An unknown user: the dummy is made, then verified (two more).
        assert!(!p.verify(SecretString::from("pw"), None).await.unwrap());
        let (hashes, cpu_us) = p.spent();
        assert_eq!(hashes, 4);
        if thread_cpu_ns().is_some() {
            assert!(
                cpu_us >= 4 * 100,
                "four 4 MiB hashes took {cpu_us} µs of CPU"
            );
        }
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
        assert_eq!(
            p.load(),
            (0, 2),
            "two checks hold slots, none a hashing permit"
        );
        let refused = p.verify(SecretString::from("x"), None).await;
        assert!(matches!(refused, Err(PasswordError::Busy)));
        drop(held);
        assert!(!p.verify(SecretString::from("x"), None).await.unwrap());
        assert_eq!(p.load(), (0, 0));
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
    async fn verification_reuses_buffers_and_matches_the_reference_implementation() {
        let arena = Arena::default();
        // Hashes made by the argon2 crate's own API, under several variants and parameters
        // (bigger and smaller than a buffer already in the arena).
        let salt = SaltString::generate(&mut OsRng);
        for (algorithm, m) in [
            (Algorithm::Argon2id, 64),
            (Algorithm::Argon2i, 256),
            (Algorithm::Argon2d, 32),
        ] {
            let params = Params::new(m, 2, 1, None).unwrap();
            let phc = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
            for _ in 0..2 {
                assert!(
                    verify_blocking(&arena, b"correct horse", &phc).unwrap(),
                    "{phc}"
                );
                assert!(!verify_blocking(&arena, b"correct horsf", &phc).unwrap());
            }
        }
        let buffers = arena.lock().len();
        assert!((1..=3).contains(&buffers), "kept for reuse: {buffers}");
        let arena = Arena::default();
        let buffer = arena.take(64);
        let at = buffer.as_ptr();
        arena.give(buffer);
        let again = arena.take(64);
        assert_eq!(again.as_ptr(), at, "a kept buffer is handed out again");
        assert!(verify_blocking(&arena, b"x", "$argon2id$v=19$m=64,t=1,p=1$bad").is_err());
    }

    /// The bench reads the idle RSS two seconds after its last login: by then no argon2
    /// buffer may be held (issue 13), and the allocator needs one of those seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_server_drops_its_argon2_buffers_within_a_second() {
        let p = cheap();
        p.trim_in_background();
        let phc = p.hash(SecretString::from("x")).await.unwrap();
        assert!(p.verify("x".into(), Some(phc)).await.unwrap());
        assert_eq!(p.arena.lock().len(), 1, "kept for the next check");
        // Slack for a loaded test machine, where the sweeping task may run late.
        tokio::time::sleep(Arena::IDLE + Arena::SWEEP + Duration::from_millis(750)).await;
        assert_eq!(p.arena.lock().len(), 0, "dropped once idle");
        assert!(Arena::IDLE + Arena::SWEEP <= Duration::from_secs(1));
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
