//! Password hashing with argon2id, kept off the async runtime.
//!
//! A hash costs tens of milliseconds of one core and ~19 MiB of memory. Run on the
//! runtime's worker threads, a burst of sign-ins would stall every other request. So
//! hashes run on a small pool of threads of their own, one per core (more would only
//! queue inside the OS scheduler and multiply memory use), fed by a queue.
//!
//! The queue is bounded and fair. Bounded: beyond `queue_limit` jobs waiting, a request
//! is refused before any hashing with `SERVICE_UNAVAILABLE` and a `retryAfter` that
//! estimates when the queue will have drained, so a storm costs memory and latency only
//! up to that bound. Fair: each kind of work (sign-in, sign-up, account changes) has a
//! lane holding at most half the queue, so a storm of one kind always leaves room for
//! the others; the threads take from the lanes in turn, and within a lane from each
//! requester in turn; one requester may hold at most half a lane. A sign-in that
//! arrives behind two hundred sign-ups therefore waits for the jobs already running and
//! at most one job of each other lane, not for the whole storm.
//!
//! Each of those threads keeps its argon2 working memory and reuses it for every job.
//! Measured with the benchmark: letting argon2 allocate 19 MiB per hash on tokio's
//! blocking pool left the server at 550+ MiB of RSS after a sign-in burst, because the
//! allocator keeps freed blocks in per-thread arenas across many short-lived threads.
//! With reused memory the hashing memory is exactly `cores × ARGON2_MEMORY_KIB`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::anyhow;
use argon2::{Algorithm, Argon2, Block, Params, Version, password_hash::phc::PasswordHash};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

mod queue;

use queue::{Full, Handle, Job, Shared};
pub use queue::{Lane, Requester, Ticket};

use crate::error::{AppError, AppResult};

/// Length of the salt and of the hash output we write.
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    handle: Arc<Handle>,
    threads: usize,
    /// Most jobs waiting at once; half of it per lane, half of that per requester.
    queue_limit: usize,
    /// A well-formed hash with the configured parameters that no password matches:
    /// sign-in verifies against it when the username is unknown, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
    /// Argon2 computations finished, hashes and verifications alike.
    computed: Arc<AtomicU64>,
    /// How long the last computation took, in microseconds: for `retryAfter`.
    last_micros: Arc<AtomicU64>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32, queue_limit: usize) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_LEN))
            .map_err(|e| anyhow!("invalid argon2 parameters: {e}"))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shared = Arc::new(Shared::default());
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                let mut memory = Vec::new();
                // Ends when every PasswordHasher clone is gone. A job that panics drops
                // its reply (its caller gets an internal error) but must not take the
                // thread with it, or the queue would stall.
                while let Some(job) = shared.next_job() {
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
        Ok(Self {
            params,
            handle: Arc::new(Handle(shared)),
            threads,
            queue_limit: queue_limit.max(1),
            dummy_hash: dummy_hash.into(),
            computed: Arc::new(AtomicU64::new(0)),
            last_micros: Arc::new(AtomicU64::new(50_000)),
        })
    }

    /// Jobs waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.handle.0.queued()
    }

    /// How many argon2 computations have finished since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Hashes a new password (PHC string, random salt).
    pub async fn hash(&self, ticket: Ticket, password: &SecretString) -> AppResult<String> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(ticket, move |memory| {
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
    pub async fn verify(&self, ticket: Ticket, password: &SecretString, stored: Option<&str>) -> AppResult<bool> {
        let known = stored.is_some();
        let hash: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.clone();
        let matches = self
            .run(ticket, move |memory| {
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

    /// Queues a job in its lane and waits for it without blocking the runtime; refuses
    /// at once when the queue, or the requester's share of it, is full.
    async fn run<T: Send + 'static>(
        &self,
        ticket: Ticket,
        job: impl FnOnce(&mut Vec<Block>) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (reply, answer) = oneshot::channel();
        let computed = self.computed.clone();
        let last_micros = self.last_micros.clone();
        let job: Job = Box::new(move |memory| {
            let start = Instant::now();
            let result = job(memory);
            last_micros.store(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
            computed.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(result);
        });
        {
            if let Err(Full { waiting }) = self.handle.0.push(ticket, job, self.queue_limit) {
                metrics::counter!("authgraph_argon2_refused_total").increment(1);
                return Err(AppError::Busy { retry_after_secs: self.drain_secs(waiting as u64 + 1) });
            }
        }
        // Counted from the moment the job waits for a thread: the queue's depth.
        let jobs = metrics::gauge!("authgraph_argon2_jobs");
        jobs.increment(1.0);
        let _done = scopeguard(move || jobs.decrement(1.0));
        answer.await.map_err(|_| AppError::internal(anyhow!("a hashing job was dropped")))?
    }

    /// Seconds until `jobs` queued jobs are done, by the last computation's time.
    fn drain_secs(&self, jobs: u64) -> u64 {
        let micros = self.last_micros.load(Ordering::Relaxed).max(1);
        let total = jobs.saturating_mul(micros) / self.threads.max(1) as u64;
        total.div_ceil(1_000_000).max(1)
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
    use std::net::IpAddr;

    use super::*;
    use crate::auth::network::Network;

    const T: Ticket = Ticket { lane: Lane::Signin, requester: Requester::Unknown };

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(19_456, 2, 1, 64).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hasher();
        let hash = h.hash(T, &"correct horse".to_owned().into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(T, &"correct horse".to_owned().into(), Some(&hash)).await.unwrap());
        assert!(!h.verify(T, &"wrong horse".to_owned().into(), Some(&hash)).await.unwrap());
        assert!(!h.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_before_hashing_with_a_retry_time() {
        let h = PasswordHasher::new(19_456, 2, 1, 4).unwrap();
        let password: SecretString = "storm password".to_owned().into();
        let ticket =
            Ticket { lane: Lane::Signup, requester: Requester::Network(Network::of(IpAddr::from([10, 0, 0, 1]), 64)) };
        let results = futures_join(&h, ticket, &password, 12).await;
        let busy: Vec<u64> = results
            .iter()
            .filter_map(|r| match r {
                Err(AppError::Busy { retry_after_secs }) => Some(*retry_after_secs),
                _ => None,
            })
            .collect();
        assert!(!busy.is_empty() && busy.iter().all(|s| *s >= 1), "one requester holds at most a quarter");
        assert!(results.iter().filter(|r| r.is_ok()).count() >= 1);
        assert_eq!(h.computed() as usize, results.iter().filter(|r| r.is_ok()).count(), "refusals hash nothing");
    }

    async fn futures_join(
        h: &PasswordHasher,
        ticket: Ticket,
        password: &SecretString,
        n: usize,
    ) -> Vec<AppResult<String>> {
        let mut handles = Vec::new();
        for _ in 0..n {
            let (h, password) = (h.clone(), password.clone());
            handles.push(tokio::spawn(async move { h.hash(ticket, &password).await }));
        }
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let h = hasher();
        assert!(!h.verify(T, &"anything".to_owned().into(), None).await.unwrap());
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
        let ours = h.hash(T, &"interop password".to_owned().into()).await.unwrap();
        assert!(Argon2::default().verify_password(b"interop password", ours.as_str()).is_ok());
        for params in [Params::new(19_456, 2, 1, None).unwrap(), Params::new(8192, 1, 2, Some(64)).unwrap()] {
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"interop password")
                .unwrap()
                .to_string();
            assert!(h.verify(T, &"interop password".to_owned().into(), Some(&theirs)).await.unwrap(), "{theirs}");
            assert!(!h.verify(T, &"interop passwore".to_owned().into(), Some(&theirs)).await.unwrap());
        }
    }
}
