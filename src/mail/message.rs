//! The texts of the messages: plain text and HTML, each with the application's name,
//! what happened, the code and the link (when there is one), how long they work, and
//! what to do if it was not you.

use std::time::Duration;

/// What a message is about.
pub enum Content<'a> {
    /// Confirms an address: a link (works signed out) and a code (signed in).
    Verify { link: &'a str, code: &'a str, valid_for: Duration },
    /// Resets a password: a link, or the code with the address.
    Reset { link: &'a str, code: &'a str, valid_for: Duration },
    /// To the old address when a change to `new_address` is asked for.
    EmailChanging { new_address: &'a str },
    /// The password was changed (or reset) and other sessions were ended.
    PasswordChanged,
    /// An account created through another provider was given a password.
    PasswordSet,
    /// A second factor was turned on.
    MfaEnabled,
    /// A recovery code was used to sign in; `left` remain.
    RecoveryCodeUsed { left: i64 },
    /// The second factor was turned off (by the account, or by an operator), the
    /// account's other sessions ended or not.
    MfaDisabled { sessions_ended: bool },
    /// A passkey was registered; `first`: it is the account's first second factor.
    PasskeyAdded { first: bool },
    /// An identity at another provider (`provider`, its display name) was linked: it
    /// signs in to the account from now on.
    IdentityLinked { provider: &'a str },
    /// To a verified address that someone just named at sign-up: the new account
    /// keeps it as an unverified claim, and the answer did not tell them it was taken.
    SignupWithYourAddress,
    /// To an address that another account had verified first, when keys made the two
    /// one mailbox (the migration that introduced them): it is unverified here now.
    AddressUnverified,
}

/// A rendered message.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// "30 minutes", "24 hours", "1 hour".
fn human(d: Duration) -> String {
    let mins = d.as_secs().div_ceil(60);
    let (n, unit) = if mins.is_multiple_of(1440) && mins >= 1440 {
        (mins / 1440, "day")
    } else if mins.is_multiple_of(60) && mins >= 60 {
        (mins / 60, "hour")
    } else {
        (mins, "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NOT_YOU: &str =
    "If this wasn't you, you can ignore this message: nothing changes until the link or code is used.";
const NOT_YOU_EMAIL: &str = "If this wasn't you, reset your password from this address now: that ends every \
     session, and the new address is never confirmed unless someone opens the message sent to it.";
const NOT_YOU_CHANGED: &str =
    "If this wasn't you, reset your password now and check your account's sessions: someone may have your password.";

pub fn render(app: &str, content: &Content<'_>) -> Rendered {
    let (subject, lead, secret, advice) = match content {
        Content::Verify { link, code, valid_for } => (
            format!("Confirm your email address for {app}"),
            format!("Confirm this address for your {app} account."),
            Some((*link, *code, *valid_for, "Confirm the address")),
            NOT_YOU,
        ),
        Content::Reset { link, code, valid_for } => (
            format!("Reset your {app} password"),
            format!("Someone asked to reset the password of the {app} account with this address."),
            Some((*link, *code, *valid_for, "Choose a new password")),
            NOT_YOU,
        ),
        Content::EmailChanging { new_address } => (
            format!("Your {app} email address is being changed"),
            format!(
                "Someone signed in to your {app} account asked to change its email address to {new_address}. \
                 The change takes effect when the new address is confirmed; until then this address \
                 stays the account's, and a password reset sent to it still works."
            ),
            None,
            NOT_YOU_EMAIL,
        ),
        Content::PasswordChanged => (
            format!("Your {app} password was changed"),
            format!("The password of your {app} account was just changed, and its other sessions were signed out."),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::PasswordSet => (
            format!("Your {app} account has a password now"),
            format!("A password was set on your {app} account: it signs in with your username and it from now on."),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::MfaEnabled => (
            format!("Two-step sign-in is on for your {app} account"),
            format!(
                "An authenticator app was set up as a second factor for your {app} account. Sign-ins now \
                 ask for its code, or for one of the recovery codes shown when it was set up."
            ),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::RecoveryCodeUsed { left } => (
            format!("A recovery code was used for your {app} account"),
            format!(
                "A recovery code was just used to sign in to your {app} account; {left} unused {} left. \
                 If your authenticator is lost, set up a new one and make new recovery codes.",
                if *left == 1 { "code is" } else { "codes are" }
            ),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::SignupWithYourAddress => (
            format!("Someone signed up for {app} with your email address"),
            format!(
                "A new {app} account was just created with this address, which already belongs to your \
                 {app} account. Your account keeps it: the new account cannot use it unless this \
                 address confirms it. If it was you and you have forgotten your password, ask for a \
                 password reset instead."
            ),
            None,
            "If this wasn't you, you need do nothing.",
        ),
        Content::AddressUnverified => (
            format!("Your {app} email address needs confirming again"),
            format!(
                "Two {app} accounts had confirmed this mailbox under different spellings. The account \
                 that confirmed it first keeps it; on your other account the address is now \
                 unconfirmed, and password resets are no longer sent to it from there. Sign in to \
                 that account and give it an address of its own."
            ),
            None,
            "If you have only one account, nothing changes for it.",
        ),
        Content::MfaDisabled { sessions_ended } => (
            format!("Two-step sign-in is off for your {app} account"),
            format!(
                "The second factor of your {app} account was turned off{}. Sign-ins now ask for the \
                 password only.",
                if *sessions_ended { ", and its other sessions were signed out" } else { "" }
            ),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::PasskeyAdded { first } => (
            format!("A passkey was added to your {app} account"),
            format!(
                "A passkey was added to your {app} account: it signs in without the password.{}",
                if *first {
                    " It is also the account's second factor: sign-ins with the password now ask for a \
                     passkey too."
                } else {
                    ""
                }
            ),
            None,
            NOT_YOU_CHANGED,
        ),
        Content::IdentityLinked { provider } => (
            format!("{provider} sign-in was linked to your {app} account"),
            format!(
                "A {provider} account was linked to your {app} account: \"Continue with {provider}\" signs in to \
                 it from now on. Unlink it under your account's sign-in methods if you do not know it."
            ),
            None,
            NOT_YOU_CHANGED,
        ),
    };
    let mut text = format!("{lead}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
         <h2>{}</h2><p>{}</p>",
        escape(&subject),
        escape(&lead)
    );
    if let Some((link, code, valid_for, action)) = secret {
        let valid = human(valid_for);
        text.push_str(&format!(
            "{action}: open this link\n\n{link}\n\nor enter this code: {code}\n\nThe link and the code work once, for {valid}.\n\n"
        ));
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p><p>Or enter this code: <strong style=\"font-size:1.4em;letter-spacing:.2em\">{}</strong></p>\
             <p>The link and the code work once, for {}.</p>",
            escape(link),
            escape(action),
            escape(code),
            escape(&valid)
        ));
    }
    text.push_str(advice);
    text.push_str(&format!("\n\n-- \n{app}\n"));
    html.push_str(&format!("<p style=\"color:#555\">{}</p><p>{}</p></body></html>", escape(advice), escape(app)));
    Rendered { subject, text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_names_the_app_the_code_the_link_and_the_expiry() {
        let m = render(
            "Acme <Notes>",
            &Content::Reset {
                link: "https://a.example/r?token=t&x=1",
                code: "042517",
                valid_for: Duration::from_secs(1800),
            },
        );
        assert_eq!(m.subject, "Reset your Acme <Notes> password");
        for part in ["042517", "https://a.example/r?token=t&x=1", "30 minutes", "If this wasn't you"] {
            assert!(m.text.contains(part), "{part}: {}", m.text);
        }
        assert!(m.html.contains("href=\"https://a.example/r?token=t&amp;x=1\""), "{}", m.html);
        assert!(m.html.contains("Acme &lt;Notes&gt;") && !m.html.contains("<Notes>"), "{}", m.html);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human(Duration::from_secs(5400)), "90 minutes");
        assert_eq!(human(Duration::from_secs(60)), "1 minute");
    }
}
