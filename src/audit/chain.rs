//! The chain: `hmac = HMAC-SHA256(key, prev_hmac ‖ canonical(row))`, where the
//! canonical form covers the row's position, id, time, kind, accounts, session,
//! network, user agent and detail, each length-prefixed (an absent value differs from
//! an empty one). Whoever can write the table but lacks AUDIT_CHAIN_KEY cannot change,
//! delete, insert, reorder or re-chain a chained row without `verify` naming it: a
//! changed field or a recomputed unkeyed hash fails the row's own HMAC, a deleted row
//! leaves a gap in the positions, a forged one cannot carry a valid HMAC. Truncating
//! the newest rows leaves a chain that verifies, so the newest link is also written to
//! the log (`run`), where it can be compared.
//!
//! Keys rotate: each row names its key (`key_id`, a fingerprint), and the verifier
//! knows the current key and AUDIT_CHAIN_KEY_PREVIOUS.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::{
    db::{
        DbPool,
        audit::{self, AuditRow, Head, Link},
    },
    secret::KeyChain,
};

type HmacSha256 = Hmac<Sha256>;

/// The link before the first row.
const GENESIS: [u8; 32] = [0; 32];
/// Rows chained per transaction.
const BATCH: i64 = 1000;
/// Rows read per query while verifying.
const VERIFY_BATCH: i64 = 5000;
/// How often the chainer looks for rows, and writes the newest link to the log.
const INTERVAL: Duration = Duration::from_millis(500);
const HEAD_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The chain's keys: the current one links new rows; earlier ones still verify theirs.
pub struct ChainKeys {
    current: (String, Vec<u8>),
    previous: Vec<(String, Vec<u8>)>,
}

impl ChainKeys {
    pub fn new(keys: &KeyChain) -> Self {
        let with_id = |key: &[u8]| (fingerprint(key), key.to_vec());
        Self {
            current: with_id(keys.current.expose_secret()),
            previous: keys.previous.iter().map(|k| with_id(k.expose_secret())).collect(),
        }
    }

    fn key(&self, id: &str) -> Option<&[u8]> {
        std::iter::once(&self.current).chain(&self.previous).find(|(kid, _)| kid == id).map(|(_, k)| k.as_slice())
    }
}

/// A key's public name: the first 8 bytes of its HMAC of a fixed label, in hex.
fn fingerprint(key: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"authgraph audit chain key id");
    mac.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// What the HMAC covers of a row at position `seq`.
fn canonical(seq: i64, row: &AuditRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + row.detail.len());
    let uuid = |u: &Option<uuid::Uuid>| u.map(|u| u.to_string());
    field(&mut out, Some(seq.to_string().as_bytes()));
    field(&mut out, Some(row.id.to_string().as_bytes()));
    field(&mut out, Some(row.at.timestamp_micros().to_string().as_bytes()));
    field(&mut out, Some(row.kind.as_bytes()));
    field(&mut out, uuid(&row.actor_id).as_deref().map(str::as_bytes));
    field(&mut out, uuid(&row.subject_id).as_deref().map(str::as_bytes));
    field(&mut out, uuid(&row.session_id).as_deref().map(str::as_bytes));
    field(&mut out, row.network.as_deref().map(str::as_bytes));
    field(&mut out, row.user_agent.as_deref().map(str::as_bytes));
    field(&mut out, Some(row.detail.as_bytes()));
    out
}

fn mac(key: &[u8], prev: &[u8], seq: i64, row: &AuditRow) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(prev);
    mac.update(&canonical(seq, row));
    mac.finalize().into_bytes().to_vec()
}

/// Links the rows waiting to be chained, oldest first; returns how many. None are
/// linked while another chainer (another instance) holds the chain.
pub async fn chain_pending(pool: &DbPool, keys: &ChainKeys) -> anyhow::Result<usize> {
    let mut conn = pool.get().await?;
    let mut total = 0;
    loop {
        let linked = audit::chain_pending(&mut conn, BATCH, |head: Option<&Head>, row| {
            let (seq, prev) = match head {
                Some(head) => (head.chain_seq + 1, head.hmac.clone()),
                None => (1, GENESIS.to_vec()),
            };
            let (key_id, key) = &keys.current;
            Link {
                id: row.id,
                chain_seq: seq,
                key_id: key_id.clone(),
                hmac: mac(key, &prev, seq, row),
                prev_hmac: prev,
            }
        })
        .await?;
        total += linked;
        if linked < BATCH as usize {
            return Ok(total);
        }
    }
}

/// The chainer: links new rows every `INTERVAL` until `stop`, and writes the newest link
/// to the log every minute (a truncation of the newest rows then shows against it).
pub async fn run(pool: DbPool, keys: std::sync::Arc<ChainKeys>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut last_head_log = tokio::time::Instant::now();
    loop {
        if let Err(err) = chain_pending(&pool, &keys).await {
            tracing::warn!(error = format!("{err:#}"), "audit rows not chained yet");
        }
        if last_head_log.elapsed() >= HEAD_LOG_INTERVAL {
            last_head_log = tokio::time::Instant::now();
            if let Ok(mut conn) = pool.get().await
                && let Ok(Some((_, last))) = audit::chain_bounds(&mut conn).await
                && let Ok(rows) = audit::chained_after(&mut conn, last - 1, 1).await
                && let Some(hmac) = rows.first().and_then(|r| r.hmac.as_ref())
            {
                let hex: String = hmac.iter().map(|b| format!("{b:02x}")).collect();
                tracing::info!(chain_seq = last, hmac = hex, "audit chain head");
            }
        }
        let stopping = tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => false,
            changed = stop.changed() => changed.is_err() || *stop.borrow(),
        };
        if stopping {
            // The last rows of a clean stop are linked before it ends.
            let _ = chain_pending(&pool, &keys).await;
            return;
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Every checked row's HMAC and link verify.
    pub intact: bool,
    pub checked: i64,
    /// The first row, in chain order, whose HMAC or link does not verify.
    pub first_broken_id: Option<i64>,
    /// Rows written and not chained yet (not checked).
    pub pending: i64,
}

/// Verifies the chain: the whole kept trail, or its newest `last` rows. The first
/// checked row's own link is taken as it is (rows before it were pruned or are not
/// asked for), unless it is the chain's first.
pub async fn verify(pool: &DbPool, keys: &ChainKeys, last: Option<i64>) -> anyhow::Result<ChainStatus> {
    let mut conn = pool.get().await?;
    let pending = audit::pending(&mut conn).await?;
    let Some((first, newest)) = audit::chain_bounds(&mut conn).await? else {
        return Ok(ChainStatus { intact: true, checked: 0, first_broken_id: None, pending });
    };
    let start = match last {
        Some(n) => (newest - n.max(1) + 1).max(first),
        None => first,
    };
    let mut after = start - 1;
    let mut previous: Option<(i64, Vec<u8>)> = None;
    let mut checked = 0;
    loop {
        let rows = audit::chained_after(&mut conn, after, VERIFY_BATCH).await?;
        let Some(last_row) = rows.last() else { break };
        after = last_row.chain_seq.unwrap_or(after);
        for row in &rows {
            checked += 1;
            if !row_verifies(keys, previous.as_ref(), row) {
                return Ok(ChainStatus { intact: false, checked, first_broken_id: Some(row.id), pending });
            }
            previous = Some((row.chain_seq.unwrap_or_default(), row.hmac.clone().unwrap_or_default()));
        }
    }
    Ok(ChainStatus { intact: true, checked, first_broken_id: None, pending })
}

fn row_verifies(keys: &ChainKeys, previous: Option<&(i64, Vec<u8>)>, row: &AuditRow) -> bool {
    let (Some(seq), Some(key_id), Some(prev), Some(hmac)) = (row.chain_seq, &row.key_id, &row.prev_hmac, &row.hmac)
    else {
        return false;
    };
    let linked = match previous {
        Some((prev_seq, prev_hmac)) => seq == prev_seq + 1 && prev == prev_hmac,
        None => seq != 1 || prev.as_slice() == GENESIS,
    };
    let Some(key) = keys.key(key_id) else { return false };
    let expected = mac(key, prev, seq, row);
    // Constant time is not needed (nothing secret is compared), but costs nothing.
    linked && expected.len() == hmac.len() && expected.iter().zip(hmac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
