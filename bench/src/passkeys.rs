//! What a passkey sign-in costs: every connection has an account of its own with a
//! passkey on a software authenticator (the integration tests' `Device`), and each round
//! is what a browser does: `startPasskeySignIn`, the authenticator's signature,
//! `finishPasskeySignIn`. The round's latency includes the client's ECDSA signature
//! (made on this machine, by this process); the server's CPU per sign-in does not.
//! Printed beside one argon2id verification measured in the same run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{PASSWORD, Row, SIGNUP, Target};

#[allow(dead_code)]
#[path = "../../tests/it/support/authenticator.rs"]
mod authenticator;

use authenticator::Device;

/// The server the harness starts is in development: its relying party is localhost,
/// on any port.
const ORIGIN: &str = "http://localhost";
const START_REGISTRATION: &str = "mutation { startPasskeyRegistration { challengeId optionsJson } }";
const FINISH_REGISTRATION: &str =
    "mutation($c: ID!, $j: String!) { finishPasskeyRegistration(challengeId: $c, credentialJson: $j) { id } }";
const START_SIGN_IN: &str = "mutation { startPasskeySignIn { challengeId optionsJson } }";
const FINISH_SIGN_IN: &str =
    "mutation($c: ID!, $j: String!) { finishPasskeySignIn(challengeId: $c, credentialJson: $j) { accessToken } }";

fn field<'a>(res: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    let value = &res["data"][name];
    anyhow::ensure!(value.is_object(), "{name}: {res}");
    Ok(value)
}

fn text(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name].as_str().map(str::to_owned).with_context(|| format!("{name} in {value}"))
}

/// An account with a passkey on `device`.
async fn enrolled(target: &Target, username: &str, device: &mut Device) -> anyhow::Result<()> {
    let res = target.gql(None, SIGNUP, json!({ "u": username, "p": PASSWORD })).await?;
    let access = text(field(&res, "signup")?, "accessToken")?;
    let started = target.gql(Some(&access), START_REGISTRATION, json!({})).await?;
    let started = field(&started, "startPasskeyRegistration")?;
    let credential = device.create(ORIGIN, &text(started, "optionsJson")?).await;
    let vars = json!({ "c": text(started, "challengeId")?, "j": credential });
    field(&target.gql(Some(&access), FINISH_REGISTRATION, vars).await?, "finishPasskeyRegistration")?;
    Ok(())
}

/// One sign-in, as a browser makes it.
async fn sign_in(target: &Target, device: &mut Device) -> anyhow::Result<()> {
    let started = target.gql(None, START_SIGN_IN, json!({})).await?;
    let started = field(&started, "startPasskeySignIn")?;
    let credential = device.get(ORIGIN, &text(started, "optionsJson")?, |_| {}).await;
    let vars = json!({ "c": text(started, "challengeId")?, "j": credential });
    field(&target.gql(None, FINISH_SIGN_IN, vars).await?, "finishPasskeySignIn")?;
    Ok(())
}

/// Runs `connections` sign-in loops for `duration` after `warmup`; `cpu` reads the
/// server's CPU seconds.
pub async fn measure(
    target: Arc<Target>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    cpu: impl Fn() -> Option<f64>,
) -> anyhow::Result<Row> {
    let (recording, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        let (target, recording, stop) = (target.clone(), recording.clone(), stop.clone());
        let username = format!("pk{}_{index}", std::process::id());
        tasks.spawn(async move {
            let mut device = Device::on_localhost();
            enrolled(&target, &username, &mut device).await?;
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = sign_in(&target, &mut device).await;
                if recording.load(Ordering::Relaxed) {
                    let _ = latency.record((started.elapsed().as_micros() as u64).max(1));
                    if let Err(e) = result {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("passkey_signin: {e:#}");
                        }
                    }
                }
            }
            anyhow::Ok((latency, errors))
        });
    }
    tokio::time::sleep(warmup).await;
    let before = cpu();
    recording.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    recording.store(false, Ordering::Relaxed);
    let (elapsed, after) = (started.elapsed().as_secs_f64(), cpu());
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (latency, failed) = done??;
        all.add(&latency)?;
        errors += failed;
    }
    let cpu_ms = match (before, after) {
        (Some(b), Some(a)) => Some((a - b) * 1000.0 / all.len().max(1) as f64),
        _ => None,
    };
    let name = format!("passkey_signin ({connections})");
    Ok(Row { cpu_ms_per_req: cpu_ms, ..Row::of(name, "passkey_signin", &all, elapsed, errors) })
}
