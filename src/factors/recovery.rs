//! Recovery codes: ten per account, shown once, each usable once. Ten characters from
//! an alphabet without the usual look-alikes (no 0/O, 1/I/L, U/V pairs to confuse),
//! shown as two groups of five: about 49 bits each, under ASVS 5.0's 112, so they are
//! to be stored as argon2id hashes through the hashing queue, like passwords.

use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Digits 2–9 and the letters but I, L, O, U: 30 characters.
pub const ALPHABET: &[u8; 30] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Codes an account gets.
pub const COUNT: usize = 10;
/// Characters per code, not counting the dash between its two groups.
pub const LEN: usize = 10;

/// One new code, `XXXXX-XXXXX`: each character drawn uniformly (bytes of 240 and above
/// are redrawn, so no character is likelier).
fn one() -> String {
    let mut code = String::with_capacity(LEN + 1);
    while code.len() < LEN + 1 {
        let mut byte = [0u8; 1];
        rand::fill(&mut byte);
        if byte[0] >= 240 {
            continue;
        }
        if code.len() == LEN / 2 {
            code.push('-');
        }
        code.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
    }
    code
}

/// A new set of codes.
pub fn generate() -> Vec<SecretString> {
    (0..COUNT).map(|_| SecretString::from(one())).collect()
}

/// Finds the one stored code a presented code can be: 16 bits of an HMAC of the
/// normalized code, so a check runs one argon2 verification, never one per code. Keyed,
/// so a copy of the table without the configured key narrows nothing.
pub struct LookupKey(SecretBox<[u8; 32]>);

impl LookupKey {
    pub fn from_key(material: &[u8]) -> Self {
        Self(crate::secret::derive_key(material, b"authgraph recovery code lookup v1"))
    }

    /// The lookup of a normalized code (see `normalize`).
    pub fn of(&self, normalized: &str) -> i32 {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length");
        mac.update(normalized.as_bytes());
        let digest = mac.finalize().into_bytes();
        i32::from(u16::from_be_bytes([digest[0], digest[1]]))
    }
}

/// A new set whose lookups under `key` are distinct, so each lookup names one code.
pub fn generate_distinct(key: &LookupKey) -> Vec<(SecretString, i32)> {
    loop {
        let set: Vec<_> = generate()
            .into_iter()
            .map(|code| {
                let lookup = key.of(&normalize(code.expose_secret()).expect("a generated code is well formed"));
                (code, lookup)
            })
            .collect();
        let distinct: std::collections::HashSet<i32> = set.iter().map(|(_, l)| *l).collect();
        if distinct.len() == set.len() {
            return set;
        }
    }
}

/// A code as typed (any case, spaces or dashes anywhere) in the form it is hashed in,
/// or `None` if it cannot be one of ours.
pub fn normalize(input: &str) -> Option<String> {
    let code: String =
        input.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Whether `input` is shaped like a recovery code rather than a 6-digit TOTP code.
pub fn looks_like_one(input: &SecretString) -> bool {
    normalize(input.expose_secret()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_distinct_and_read_back_however_typed() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let mut seen = std::collections::HashSet::new();
        for code in &codes {
            let text = code.expose_secret();
            assert_eq!(text.len(), LEN + 1);
            assert_eq!(&text[5..6], "-", "{text}");
            assert!(seen.insert(text.to_owned()), "duplicate {text}");
            assert_eq!(normalize(text).unwrap(), text.replace('-', ""));
            assert_eq!(
                normalize(&format!(" {} ", text.to_lowercase().replace('-', " "))).unwrap(),
                text.replace('-', "")
            );
        }
        for look_alike in ["O0000-11111", "ILILI-UUUUU", "ABCDE-FGHJ", "123456"] {
            assert_eq!(normalize(look_alike), None, "{look_alike}");
        }
        assert!(!looks_like_one(&SecretString::from("123456")));
    }

    #[test]
    fn lookups_are_keyed_and_distinct_within_a_set() {
        let key = LookupKey::from_key(b"one key");
        let set = generate_distinct(&key);
        let lookups: std::collections::HashSet<_> = set.iter().map(|(_, l)| *l).collect();
        assert_eq!(lookups.len(), COUNT);
        for (code, lookup) in &set {
            assert!((0..=0xffff).contains(lookup));
            let typed = code.expose_secret().to_lowercase();
            assert_eq!(key.of(&normalize(&typed).unwrap()), *lookup, "found however typed");
        }
        let other = LookupKey::from_key(b"another key");
        let (code, _) = &set[0];
        let normalized = normalize(code.expose_secret()).unwrap();
        assert_ne!(
            (0..4).map(|i| key.of(&format!("{normalized}{i}"))).collect::<Vec<_>>(),
            (0..4).map(|i| other.of(&format!("{normalized}{i}"))).collect::<Vec<_>>()
        );
    }
}
