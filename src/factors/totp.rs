//! TOTP as RFC 6238 specifies it with the parameters every authenticator app uses:
//! HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch. A code is accepted for
//! the current step and one step either side (clock skew), and only for a step later
//! than the last one the account used, so a code seen over a shoulder cannot be
//! replayed inside its window.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one.
pub const SKEW: u64 = 1;
/// Bytes of a new secret: 160 bits, as RFC 4226 recommends for HMAC-SHA-1.
pub const SECRET_LEN: usize = 20;

/// The code of `step` (RFC 4226's HOTP of the step counter, truncated to 6 digits).
pub fn code_at(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary =
        u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:0width$}", binary % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// The step a Unix time falls in.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP
}

/// The step `code` belongs to, if it is the code of the current step or one next to
/// it and that step is later than `last_used` (the replay rule). Compared in constant
/// time per step.
pub fn verify(secret: &[u8], code: &str, unix_secs: u64, last_used: Option<u64>) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(unix_secs);
    let mut found = None;
    for step in now.saturating_sub(SKEW)..=now + SKEW {
        let expected = code_at(secret, step);
        let same = expected.bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same && last_used.is_none_or(|last| step > last) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding: how authenticator apps take a secret by hand.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The bytes of base32 text (any case, padding and spaces ignored), or `None` if a
/// character is outside the alphabet: the reverse of `base32`, as apps read a secret.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !matches!(c, b'=' | b' ')) {
        let value = BASE32.iter().position(|&b| b == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The `otpauth://` URI an authenticator app scans: issuer and account name in the
/// label and the issuer again as a parameter, as Google Authenticator's format asks.
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let (issuer_enc, account_enc) = (percent(issuer), percent(account));
    format!(
        "otpauth://totp/{issuer_enc}:{account_enc}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        base32(secret)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1, its 8-digit values cut to our 6 digits.
    #[test]
    fn the_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, step_of(time)), eight[2..], "T = {time}");
        }
    }

    #[test]
    fn one_step_of_skew_either_side_and_no_replay() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let step = step_of(now);
        for s in [step - 1, step, step + 1] {
            assert_eq!(verify(secret, &code_at(secret, s), now, None), Some(s));
        }
        for far in [step - 2, step + 2] {
            assert_eq!(verify(secret, &code_at(secret, far), now, None), None);
        }
        // A step once used is spent, and so is every earlier one.
        assert_eq!(verify(secret, &code_at(secret, step), now, Some(step)), None);
        assert_eq!(verify(secret, &code_at(secret, step - 1), now, Some(step)), None);
        assert_eq!(verify(secret, &code_at(secret, step + 1), now, Some(step)), Some(step + 1));
        assert_eq!(verify(secret, "12345", now, None), None);
        assert_eq!(verify(secret, "abcdef", now, None), None);
    }

    #[test]
    fn base32_and_the_uri_match_what_apps_expect() {
        // RFC 4648 test vectors, without padding.
        for (raw, encoded) in [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foobar", "MZXW6YTBOI")] {
            assert_eq!(base32(raw.as_bytes()), encoded);
            assert_eq!(from_base32(encoded).unwrap(), raw.as_bytes());
        }
        assert_eq!(from_base32("mzxw 6ytb oi==").unwrap(), b"foobar");
        assert_eq!(from_base32("MZXW1"), None, "1 is not in the alphabet");
        let uri = uri("Acme Notes", "ada@example.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Notes:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Notes&algorithm=SHA1&digits=6&period=30"
        );
    }
}
