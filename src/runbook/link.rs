//! What the link flows of `connect` and `instance connect`/`delete` share: the pairing number's
//! check, the refusal when 2.3.7 would ignore it, an `error` event of the program in the
//! container turned into its error, and the text a program printed outside its events (quoted,
//! as all remote text in an error).

use crate::error::{Error, ExecKind, Result};
use crate::evolution::{Acted, Answer, failure};
use crate::output::sanitize::quote_line;

/// What a program in the container printed that was not an event, for an error message.
pub fn stray_text(bytes: &[u8]) -> String {
    quote_line(&String::from_utf8_lossy(bytes), 300)
}

/// An `error` event of a program in the container (during `what`, on what `acted` names): the
/// API's failure, or no answer at all.
pub fn watch_error(what: &str, status: u16, body: String, acted: Acted<'_>) -> Error {
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    failure(&Answer { status, body: body.clone() }, what, acted).unwrap_or_else(|| {
        Error::exec(
            ExecKind::Container,
            format!("the Evolution API inside the container did not answer: {}", quote_line(&body.to_string(), 300)),
            format!("check that the Evolution process is up in the task (`evoctl doctor {}`)", acted.env),
        )
    })
}

/// A pairing code asked for an instance already in a QR flow: 2.3.7 ignores the number there.
pub fn pairing_ignored(name: &str, env: &str) -> Error {
    Error::refused(
        format!(
            "{name} is already waiting for a QR scan, and Evolution 2.3.7 ignores --pairing-number until that flow ends; nothing was changed"
        ),
        format!("end the QR flow first (`evoctl instance logout {env} {name}`), then ask for the pairing code again"),
    )
}

/// `--pairing-number` must be digits only (with the country code).
pub fn check_pairing_number(number: Option<&str>) -> Result<()> {
    match number.filter(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit())) {
        Some(number) => Err(Error::usage(
            format!("--pairing-number `{number}` must be digits only, with the country code"),
            "e.g. --pairing-number 5511987654321",
        )),
        None => Ok(()),
    }
}
