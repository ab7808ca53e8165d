//! Input rules for accounts. Each failure is `BAD_USER_INPUT` naming the input field.

use std::{collections::HashSet, sync::LazyLock};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    email_address::EmailAddress,
    error::{AppError, AppResult},
};

/// Refused as passwords whatever their length; compared case-insensitively.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt").lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect()
});

/// Characters that change how the text around them is shown without being shown
/// themselves: bidirectional overrides and isolates (which can make "Ada" render as
/// "adA", or reverse a name shown next to a role), and zero-width characters (which
/// make two different names look the same).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width space, joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{061C}'              // Arabic letter mark
        | '\u{180E}'              // Mongolian vowel separator
        | '\u{FEFF}'              // zero-width no-break space
    )
}

/// 1–100 characters after trimming, without control, bidi-override or zero-width
/// characters; returns the trimmed name in Unicode NFC, so one name has one spelling.
pub fn name(name: &str) -> AppResult<String> {
    use unicode_normalization::UnicodeNormalization;
    let normalized: String = name.trim().nfc().collect();
    let len = normalized.chars().count();
    if !(1..=100).contains(&len) {
        return Err(AppError::bad_input("name", "Name must be 1 to 100 characters"));
    }
    if normalized.chars().any(char::is_control) {
        return Err(AppError::bad_input("name", "Name must not contain control characters"));
    }
    if normalized.chars().any(is_invisible_format) {
        return Err(AppError::bad_input("name", "Name must not contain invisible formatting characters"));
    }
    Ok(normalized)
}

/// 3–32 of letters, digits, `_`, `.`, `-` (ASCII, so case-folding is unambiguous).
pub fn username(username: &str) -> AppResult<&str> {
    let ok_chars = username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !(3..=32).contains(&username.len()) || !ok_chars {
        return Err(AppError::bad_input("username", "Username must be 3 to 32 letters, digits, '_', '.' or '-'"));
    }
    Ok(username)
}

/// 8–128 characters, not one of the most common passwords. No composition rules
/// (NIST SP 800-63B): length and a blocklist do more than forced symbols.
pub fn password(field: &'static str, password: &SecretString) -> AppResult<()> {
    let pw = password.expose_secret();
    let len = pw.chars().count();
    if !(8..=128).contains(&len) {
        return Err(AppError::bad_input(field, "Password must be 8 to 128 characters"));
    }
    if COMMON_PASSWORDS.contains(pw.to_lowercase().as_str()) {
        return Err(AppError::bad_input(field, "Password is too common; choose another"));
    }
    Ok(())
}

/// An email address in its canonical form (see `email_address`): what is stored,
/// keyed and delivered. `field` is the input that carried it.
pub fn email(field: &'static str, address: &str) -> AppResult<EmailAddress> {
    EmailAddress::parse(address).map_err(|why| AppError::bad_input(field, why.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nfc_and_free_of_invisible_formatting() {
        // "é" as e + combining acute becomes the one precomposed character.
        assert_eq!(name("  Jose\u{0301}  ").unwrap(), "Jos\u{00E9}");
        for bad in ["Ada\u{202E}ecalevol", "A\u{200B}da", "Ada\u{2066}x\u{2069}", "\u{FEFF}Ada", "Ada\u{0007}"] {
            assert_eq!(field(name(bad).unwrap_err()), "name", "{bad:?}");
        }
        assert_eq!(name("Ada Lovelace").unwrap(), "Ada Lovelace");
        assert_eq!(name("محمد").unwrap(), "محمد", "right-to-left scripts are fine");
    }

    fn field(err: AppError) -> &'static str {
        match err {
            AppError::BadUserInput { field, .. } => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(field(name("   ").unwrap_err()), "name");
        assert_eq!(field(name(&"x".repeat(101)).unwrap_err()), "name");
        assert!(name(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn usernames_allow_only_the_documented_characters() {
        for ok in ["ada", "ada.lovelace", "ADA_1815", "a-b", &"x".repeat(32)] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "ada lovelace", "adä", "ada@x", &"x".repeat(33)] {
            assert_eq!(field(username(bad).unwrap_err()), "username", "{bad}");
        }
    }

    #[test]
    fn passwords_need_length_and_must_not_be_common() {
        let pw = |s: &str| SecretString::from(s.to_owned());
        assert!(password("password", &pw("correct horse battery")).is_ok());
        assert_eq!(field(password("password", &pw("short")).unwrap_err()), "password");
        assert_eq!(field(password("newPassword", &pw(&"x".repeat(129))).unwrap_err()), "newPassword");
        assert_eq!(field(password("password", &pw("PASSWORD1")).unwrap_err()), "password");
        assert_eq!(field(password("password", &pw("iloveyou")).unwrap_err()), "password");
    }

    #[test]
    fn email_addresses_are_canonical_or_refused_on_their_field() {
        assert_eq!(super::email("email", "  Ada.Lovelace@Example.com ").unwrap().as_str(), "Ada.Lovelace@example.com");
        assert_eq!(field(super::email("newEmail", "\"ada\"@example.com").unwrap_err()), "newEmail");
    }
}
