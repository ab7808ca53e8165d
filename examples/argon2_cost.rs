//! Time of one argon2id hash and one verification with the configured parameters
//! (ARGON2_* variables, defaults otherwise), on one core. This is the sizing input:
//! an instance signs in at most `cores / verify time` users per second.
//!
//! `cargo run --release --example argon2_cost`

use std::time::Instant;

use authgraph::{
    auth::password::{Lane, PasswordHasher, Ticket},
    config::Config,
};
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = Config::defaults();
    let hasher = PasswordHasher::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        config.argon2_queue_limit,
    )
    .expect("valid parameters");
    let ticket = Ticket::new(Lane::Signin, None);
    let password = SecretString::from("correct horse battery staple");
    let hash = hasher.hash(ticket, &password).await.unwrap();
    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(hasher.hash(ticket, &password).await.unwrap());
    }
    let hash_ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    let start = Instant::now();
    for _ in 0..runs {
        assert!(hasher.verify(ticket, &password, Some(&hash)).await.unwrap());
    }
    let verify_ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "argon2id m={} KiB t={} p={}: hash {hash_ms:.1} ms, verify {verify_ms:.1} ms; \
         {cores} cores → at most {:.0} sign-ins/s",
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
        cores as f64 * 1000.0 / verify_ms
    );
}
