//! Password hashing with argon2id, kept off the async runtime.
//!
//! A hash costs tens of milliseconds of one core and ~19 MiB of memory. Run on the
//! runtime's worker threads, a burst of sign-ins would stall every other request; so
//! each hash runs on tokio's blocking pool, and a semaphore with one permit per core
//! bounds how many run at once (more would only queue inside the OS scheduler and
//! multiply memory use).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::anyhow;
use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A well-formed hash with the configured parameters that no password matches:
    /// sign-in verifies against it when the username is unknown, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
    /// Argon2 computations finished, hashes and verifications alike.
    computed: Arc<AtomicU64>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| anyhow!("invalid argon2 parameters: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut salt = [0u8; 16];
        let mut output = [0u8; 32];
        rand::fill(&mut salt);
        rand::fill(&mut output);
        let dummy_hash = format!(
            "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(output)
        );
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: dummy_hash.into(),
            computed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many argon2 computations have finished since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Hashes a new password (PHC string, random salt).
    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let argon2 = self.argon2();
        let password = password.clone();
        self.run(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(anyhow!("argon2 hash: {e}")))
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
            .run(move || Ok(Argon2::default().verify_password(password.expose_secret().as_bytes(), &*hash).is_ok()))
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

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> AppResult<T> + Send + 'static) -> AppResult<T> {
        // Counted from the moment the job waits for a core: the queue's depth.
        let jobs = metrics::gauge!("authgraph_argon2_jobs");
        jobs.increment(1.0);
        let _done = scopeguard(move || jobs.decrement(1.0));
        let _permit = self.permits.acquire().await.map_err(|e| AppError::internal(anyhow!("hasher closed: {e}")))?;
        let result = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| AppError::internal(anyhow!("hashing task failed: {e}")))?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        result
    }
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
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(h.needs_rehash(&weak));
        assert!(h.needs_rehash("not a hash"));
    }
}
