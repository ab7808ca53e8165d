//! Password hashing with argon2id, kept off the async runtime.
//!
//! A hash costs tens of milliseconds of one core and ~19 MiB of memory. Run on the
//! runtime's worker threads, a burst of sign-ins would stall every other request. So
//! hashes run on a small pool of threads of their own, one per core (more would only
//! queue inside the OS scheduler and multiply memory use), fed by a queue.
//!
//! Each of those threads keeps its argon2 working memory and reuses it for every job.
//! Measured with the benchmark: letting argon2 allocate 19 MiB per hash on tokio's
//! blocking pool left the server at 550+ MiB of RSS after a sign-in burst, because the
//! allocator keeps freed blocks in per-thread arenas across many short-lived threads.
//! With reused memory the hashing memory is exactly `cores × ARGON2_MEMORY_KIB`.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
    mpsc,
};

use anyhow::anyhow;
use argon2::{Algorithm, Argon2, Block, Params, Version, password_hash::phc::PasswordHash};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult};

/// Length of the salt and of the hash output we write.
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// A job for a hashing thread, given that thread's working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    queue: mpsc::Sender<Job>,
    /// A well-formed hash with the configured parameters that no password matches:
    /// sign-in verifies against it when the username is unknown, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
    /// Argon2 computations finished, hashes and verifications alike.
    computed: Arc<AtomicU64>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_LEN))
            .map_err(|e| anyhow!("invalid argon2 parameters: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..cores {
            let jobs = jobs.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                let mut memory = Vec::new();
                // Ends when every PasswordHasher clone (every sender) is gone. A job that
                // panics drops its reply (its caller gets an internal error) but must not
                // take the thread with it, or the queue would stall.
                while let Ok(job) = { jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() } {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
                }
            })?;
        }
        let mut salt = [0u8; SALT_LEN];
        let mut output = [0u8; OUTPUT_LEN];
        rand::fill(&mut salt);
        rand::fill(&mut output);
        let dummy_hash = format!(
            "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(output)
        );
        Ok(Self { params, queue, dummy_hash: dummy_hash.into(), computed: Arc::new(AtomicU64::new(0)) })
    }

    /// How many argon2 computations have finished since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Hashes a new password (PHC string, random salt).
    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move |memory| {
            let mut salt = [0u8; SALT_LEN];
            rand::fill(&mut salt);
            let mut output = [0u8; OUTPUT_LEN];
            compute(
                Algorithm::Argon2id,
                Version::V0x13,
                &params,
                password.expose_secret().as_bytes(),
                &salt,
                &mut output,
                memory,
            )?;
            Ok(format!(
                "$argon2id$v=19$m={},t={},p={}${}${}",
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                STANDARD_NO_PAD.encode(salt),
                STANDARD_NO_PAD.encode(output)
            ))
        })
        .await
    }

    /// Checks a password against a stored hash, or against the dummy hash when there
    /// is no account (always false, same cost).
    pub async fn verify(&self, password: &SecretString, stored: Option<&str>) -> AppResult<bool> {
        let known = stored.is_some();
        let hash: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.clone();
        let matches = self
            .run(move |memory| {
                let parsed = PasswordHash::new(&hash).map_err(|e| AppError::internal(anyhow!("stored hash: {e}")))?;
                let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
                    .map_err(|e| AppError::internal(anyhow!("stored hash algorithm: {e}")))?;
                let version = Version::try_from(parsed.version.unwrap_or(0x13))
                    .map_err(|e| AppError::internal(anyhow!("stored hash version: {e}")))?;
                let params =
                    Params::try_from(&parsed).map_err(|e| AppError::internal(anyhow!("stored hash params: {e}")))?;
                let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                    return Err(AppError::internal(anyhow!("stored hash lacks salt or output")));
                };
                let mut output = vec![0u8; expected.len()];
                compute(
                    algorithm,
                    version,
                    &params,
                    password.expose_secret().as_bytes(),
                    salt.as_ref(),
                    &mut output,
                    memory,
                )?;
                Ok(constant_time_eq(&output, expected.as_bytes()))
            })
            .await?;
        Ok(known && matches)
    }

    /// True when a stored hash is weaker than (or different from) the configured
    /// parameters, so a successful sign-in should replace it.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return true;
        };
        if hash.algorithm.as_str() != "argon2id" {
            return true;
        }
        match Params::try_from(&hash) {
            Ok(p) => {
                p.m_cost() < self.params.m_cost()
                    || p.t_cost() < self.params.t_cost()
                    || p.p_cost() != self.params.p_cost()
            }
            Err(_) => true,
        }
    }

    /// Queues a job for a hashing thread and waits for it without blocking the runtime.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        // Counted from the moment the job waits for a thread: the queue's depth.
        let jobs = metrics::gauge!("authgraph_argon2_jobs");
        jobs.increment(1.0);
        let _done = scopeguard(move || jobs.decrement(1.0));
        let (reply, answer) = oneshot::channel();
        let computed = self.computed.clone();
        self.queue
            .send(Box::new(move |memory| {
                let result = job(memory);
                computed.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(result);
            }))
            .map_err(|_| AppError::internal(anyhow!("the hashing threads are gone")))?;
        answer.await.map_err(|_| AppError::internal(anyhow!("a hashing job was dropped")))?
    }
}

/// One argon2 computation in `memory`, grown to the size `params` need (and kept at
/// that size for the next job).
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    memory: &mut Vec<Block>,
) -> AppResult<()> {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt, output, &mut memory[..params.block_count()])
        .map_err(|e| AppError::internal(anyhow!("argon2: {e}")))
}

/// Compares without an early exit, so timing says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs `f` when dropped, also when the future holding it is cancelled.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(19_456, 2, 1).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hasher();
        let hash = h.hash(&"correct horse".to_owned().into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&"correct horse".to_owned().into(), Some(&hash)).await.unwrap());
        assert!(!h.verify(&"wrong horse".to_owned().into(), Some(&hash)).await.unwrap());
        assert!(!h.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let h = hasher();
        assert!(!h.verify(&"anything".to_owned().into(), None).await.unwrap());
    }

    #[test]
    fn weaker_hashes_need_rehash() {
        let h = hasher();
        use argon2::password_hash::PasswordHasher as _;
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(h.needs_rehash(&weak));
        assert!(h.needs_rehash("not a hash"));
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = hasher();
        let ours = h.hash(&"interop password".to_owned().into()).await.unwrap();
        assert!(Argon2::default().verify_password(b"interop password", ours.as_str()).is_ok());
        for params in [Params::new(19_456, 2, 1, None).unwrap(), Params::new(8192, 1, 2, Some(64)).unwrap()] {
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"interop password")
                .unwrap()
                .to_string();
            assert!(h.verify(&"interop password".to_owned().into(), Some(&theirs)).await.unwrap(), "{theirs}");
            assert!(!h.verify(&"interop passwore".to_owned().into(), Some(&theirs)).await.unwrap());
        }
    }
}
