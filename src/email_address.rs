//! What an email address is here: one parser, one canonical form, one key.
//!
//! Every use of an address goes through [`EmailAddress::parse`]: validation at the API,
//! the key that limits, uniqueness and lookups use, and the mailbox the sender delivers
//! to. Nothing else parses, folds or compares addresses, so no spelling of a mailbox
//! can pass one check as a different mailbox than another check saw.
//!
//! Accepted: a dot-atom local part (RFC 5322 `atext`, or letters and digits of any
//! script, RFC 6531) of at most 64 bytes, `@`, and a domain name of at least two labels
//! whose last one is not all digits. Refused, because what would be stored is not what
//! would be delivered, or could not be delivered at all: quoted local parts
//! (`"ada"@…`, `"a@evil.com"@…`), address literals (`ada@[127.0.0.1]`), RFC 2047 encoded
//! words (`=?utf-8?q?…?=`), comments, display names, and any control, space, separator
//! or invisible formatting character.
//!
//! The canonical address is the local part in Unicode NFC, as typed, with the domain
//! in lowercase ASCII (IDNA: `münchen.de` becomes `xn--mnchen-3ya.de`, what mail
//! servers see). The key is the canonical address with its local part also lowercased
//! (Unicode, independent of any locale, then NFC again): `ÄDA@Example.COM` and
//! `äda@example.com` are one mailbox. Sub-addresses (`ada+news@`) and dots are kept:
//! whether a provider delivers them to one inbox is its own rule, not the standard's.

use unicode_normalization::UnicodeNormalization;

/// Why an address was refused; the text is shown to the person who typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    TooLong,
    Quoted,
    Literal,
    EncodedWord,
    Character,
    Domain,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "Enter an email address like ada@example.com",
            Self::TooLong => "The email address is too long",
            Self::Quoted => "Quoted email addresses are not accepted",
            Self::Literal => "Email addresses at an IP address are not accepted; use a domain name",
            Self::EncodedWord => "Encoded words (=?…?=) are not accepted in an email address",
            Self::Character => "The email address contains a character that cannot be delivered",
            Self::Domain => "The email address's domain is not a valid domain name",
        }
    }
}

/// A deliverable address in its canonical form, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    address: String,
    key: String,
    at: usize,
}

/// RFC 5322 `atext` besides letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

fn local_char_ok(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || c == '.' } else { c.is_alphanumeric() }
}

fn label_ok(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl EmailAddress {
    /// Parses what a person typed (surrounding whitespace is ignored).
    pub fn parse(input: &str) -> Result<Self, Refused> {
        let input: String = input.trim().nfc().collect();
        if input.len() > 320 {
            return Err(Refused::TooLong);
        }
        if input.contains('"') {
            return Err(Refused::Quoted);
        }
        if input.contains('[') || input.contains(']') {
            return Err(Refused::Literal);
        }
        if input.contains("=?") {
            return Err(Refused::EncodedWord);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(Refused::Malformed)?;
        if local.is_empty() || domain.is_empty() {
            return Err(Refused::Malformed);
        }
        if input.chars().any(char::is_control) {
            return Err(Refused::Character);
        }
        // A second `@`, a comment's parentheses, a display name's `<`: not one address.
        if local.contains(['@', '(', ')', '<', '>', ',', ';', ':', '\\']) {
            return Err(Refused::Malformed);
        }
        if !local.chars().all(local_char_ok) || domain.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Refused::Character);
        }
        if local.len() > 64 {
            return Err(Refused::TooLong);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(Refused::Malformed);
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| Refused::Domain)?;
        let labels: Vec<&str> = domain.split('.').collect();
        let top_is_name = labels.last().is_some_and(|l| l.bytes().any(|b| b.is_ascii_alphabetic()));
        if labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) || !top_is_name {
            return Err(Refused::Domain);
        }
        let address = format!("{local}@{domain}");
        if address.len() > 254 {
            return Err(Refused::TooLong);
        }
        let folded: String = local.to_lowercase().nfc().collect();
        Ok(Self { key: format!("{folded}@{domain}"), at: local.len(), address })
    }

    /// The address to store, show and deliver to.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The key of the mailbox: what limits, uniqueness and lookups compare.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The local part, as typed (NFC).
    pub fn local(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain, in lowercase ASCII.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// Whether two addresses name one mailbox.
    pub fn same_mailbox(&self, other: &str) -> bool {
        Self::parse(other).is_ok_and(|o| o.key == self.key)
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        EmailAddress::parse(s).unwrap().key().to_owned()
    }

    #[test]
    fn spellings_of_one_mailbox_have_one_key() {
        let one = key("ada@example.com");
        for spelling in ["Ada@Example.com", "ADA@EXAMPLE.COM", "  ada@example.com\t", "ada@EXAMPLE.com"] {
            assert_eq!(key(spelling), one, "{spelling:?}");
        }
        // Unicode case and normalization: precomposed, decomposed, upper and lower case.
        let umlaut = key("äda.x@example.com");
        for spelling in ["ÄDA.x@example.com", "a\u{0308}da.x@example.com", "A\u{0308}DA.X@EXAMPLE.COM"] {
            assert_eq!(key(spelling), umlaut, "{spelling:?}");
        }
        assert_eq!(key("ada@münchen.de"), key("ADA@XN--MNCHEN-3YA.DE"));
        assert_eq!(EmailAddress::parse("ada@MÜNCHEN.de").unwrap().as_str(), "ada@xn--mnchen-3ya.de");
    }

    #[test]
    fn the_address_keeps_its_local_part_as_typed() {
        let a = EmailAddress::parse(" Ada.Lovelace+news@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Ada.Lovelace+news@example.com");
        assert_eq!(a.key(), "ada.lovelace+news@example.com");
        assert_eq!((a.local(), a.domain()), ("Ada.Lovelace+news", "example.com"));
        assert!(a.same_mailbox("ADA.LOVELACE+NEWS@example.com"));
        assert!(!a.same_mailbox("ada.lovelace@example.com"), "sub-addresses are other mailboxes");
    }

    #[test]
    fn what_cannot_be_delivered_as_stored_is_refused() {
        let cases = [
            ("\"ada\"@example.com", Refused::Quoted),
            ("\"a@evil.com\"@example.com", Refused::Quoted),
            ("\"a\tb\"@example.com", Refused::Quoted),
            ("a@[127.0.0.1]", Refused::Literal),
            ("a@[IPv6:::1]", Refused::Literal),
            ("=?utf-8?q?ada?=@example.com", Refused::EncodedWord),
            ("ada@=?utf-8?q?example?=.com", Refused::EncodedWord),
            ("a\u{200B}da@example.com", Refused::Character),
            ("ada\u{202E}@example.com", Refused::Character),
            ("a da@example.com", Refused::Character),
            ("ada\r\nBcc: x@example.com", Refused::Character),
            ("Ada <ada@example.com>", Refused::Malformed),
            ("ada(comment)@example.com", Refused::Malformed),
            ("a@b@example.com", Refused::Malformed),
            ("ada", Refused::Malformed),
            ("@example.com", Refused::Malformed),
            ("ada@", Refused::Malformed),
            (".ada@example.com", Refused::Malformed),
            ("a..da@example.com", Refused::Malformed),
            ("ada@localhost", Refused::Domain),
            ("ada@127.0.0.1", Refused::Domain),
            ("ada@.example.com", Refused::Domain),
            ("ada@example..com", Refused::Domain),
            ("ada@-example.com", Refused::Domain),
            ("ada@exa_mple.com", Refused::Domain),
        ];
        for (input, why) in cases {
            assert_eq!(EmailAddress::parse(input), Err(why), "{input:?}");
        }
        assert_eq!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))), Err(Refused::TooLong));
        assert_eq!(EmailAddress::parse(&format!("ada@{}.com", "a".repeat(64))), Err(Refused::Domain));
        let long_domain = vec!["a".repeat(60); 5].join(".") + ".com";
        assert_eq!(EmailAddress::parse(&format!("ada@{long_domain}")), Err(Refused::TooLong));
    }

    #[test]
    fn ordinary_addresses_pass() {
        for ok in ["ada@example.com", "o'brien@example.ie", "a.b-c_d+e@sub.example.co.uk", "用户@例子.广告", "x@a1.io"]
        {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok:?}");
        }
    }
}
