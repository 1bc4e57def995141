//! Settings: one container's own environment as Evolution 2.3.7 reads it. The global API key is
//! set and not a public default, DATABASE_PROVIDER is set, DEL_INSTANCE is not a number of
//! minutes, LOG_BAILEYS is a level pino knows, and no CONFIG_SESSION_PHONE_VERSION pretends to
//! pin the WhatsApp Web version.

use super::{Found, Subject, one};
use crate::guard::compared::ApiKey;

pub(super) fn default_api_key(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let settings = &s.facts.settings;
        let evidence = match settings.api_key {
            ApiKey::Unset => {
                "AUTHENTICATION_API_KEY is not set in the task definition: the image's public key from .env.example is live"
            }
            ApiKey::PublicDefault => "AUTHENTICATION_API_KEY is the public default key from the image's .env.example",
            ApiKey::CodeDefault => {
                "AUTHENTICATION_API_KEY is set to the empty string: Evolution 2.3.7 then uses its code default key BQYHJGJHJ, public in its source"
            }
            ApiKey::Set => continue,
        };
        // A key from a secret says which one (its ARN; the value is never shown).
        let evidence = match settings.api_key_value.read_from.as_slice() {
            [] => evidence.to_owned(),
            from => format!("{evidence} (read from {})", from.join(" and ")),
        };
        found.push(one(
            s.env,
            evidence,
            "set a long random AUTHENTICATION_API_KEY for this environment (SST: a Secret linked into the service) and deploy".into(),
        ));
    }
    found
}

pub(super) fn database_provider(subjects: &[Subject<'_>]) -> Found {
    subjects
        .iter()
        .filter(|s| s.facts.settings.database_provider.is_none())
        .map(|s| {
            one(
                s.env,
                "DATABASE_PROVIDER is not set: the image's deploy script exits 1 before the API starts".into(),
                "set DATABASE_PROVIDER=postgresql (or mysql / psql_bouncer) in the task environment".into(),
            )
        })
        .collect()
}

pub(super) fn del_instance(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(value) = s.facts.settings.del_instance.as_deref() else { continue };
        if let Some(minutes) = del_instance_minutes(value) {
            found.push(one(
                s.env,
                format!("DEL_INSTANCE is {value}: Evolution 2.3.7 reads {minutes} minutes, and deletes an instance (with its rows) that is not open {minutes} minutes after create"),
                "set DEL_INSTANCE=false".into(),
            ));
        }
    }
    found
}

/// The levels pino 9 knows (2.3.7's type lists all but `silent`, `env.config.ts:22`).
const PINO_LEVELS: &[&str] = &["fatal", "error", "warn", "info", "debug", "trace", "silent"];

pub(super) fn log_baileys(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        // Empty is `|| 'error'` (env.config.ts:738); a level is case-sensitive.
        let Some(value) = s.facts.settings.log_baileys.as_deref().filter(|v| !v.is_empty()) else { continue };
        if PINO_LEVELS.contains(&value) {
            continue;
        }
        found.push(one(
            s.env,
            format!(
                "LOG_BAILEYS is {:?}: Evolution 2.3.7 passes it unchecked to pino as Baileys' log level, and pino throws on a level it does not know, so every connect and reconnect of the instance fails",
                crate::output::sanitize::quote_line(value, 40)
            ),
            "set LOG_BAILEYS to one of fatal, error, warn, info, debug, trace, silent (lower case; unset means error) and deploy".into(),
        ));
    }
    found
}

/// CONFIG_SESSION_PHONE_VERSION was removed in 2.3.1 (`CHANGELOG.md:356` at 2.3.7; nothing in
/// `src/` reads it): every socket start asks web.whatsapp.com for the version
/// (`fetchLatestWaWebVersion`, `whatsapp.baileys.service.ts:594`), so a pin set there holds
/// nothing, and an operator who set it believes otherwise.
pub(super) fn phone_version(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(value) = s.facts.settings.phone_version.as_deref().filter(|v| !v.is_empty()) else { continue };
        found.push(one(
            s.env,
            format!(
                "CONFIG_SESSION_PHONE_VERSION is {:?}, but Evolution 2.3.7 ignores it (removed in 2.3.1): every connect fetches WhatsApp Web's current version instead, so the pin holds nothing",
                crate::output::sanitize::quote_line(value, 40)
            ),
            format!(
                "remove CONFIG_SESSION_PHONE_VERSION from the task definition and deploy; `evoctl doctor {}` shows the WhatsApp Web version in use",
                s.env.name
            ),
        ));
    }
    found
}

/// The minutes 2.3.7 arms its delete timer with: `isBooleanString(v) ? v === 'true' :
/// parseInt(v) || false`, where validator.js's booleans are `true`, `false`, `1` and `0` (so
/// `1` and `0` mean false), and a number only counts when positive.
pub fn del_instance_minutes(value: &str) -> Option<i64> {
    if ["true", "false", "1", "0"].contains(&value) {
        return None;
    }
    // JavaScript's parseInt: leading whitespace, an optional sign, then the leading digits.
    let text = value.trim_start();
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().ok().map(|n| sign * n).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::rules::testing::{self, env, facts, run};

    #[test]
    fn a_log_baileys_level_pino_does_not_know_is_found() {
        let envs = [env("staging", "s", 0, 0), env("production", "p", 1, 1)];
        for (value, found) in
            [("ERROR", true), ("verbose", true), ("error", false), ("silent", false), ("trace", false), ("", false)]
        {
            let facts = [facts("staging", &[]), facts("production", &[("LOG_BAILEYS", value)])];
            let hits = run("log-baileys", &envs, &facts);
            assert_eq!(!hits.is_empty(), found, "{value:?}: {hits:?}");
            if found {
                assert_eq!(hits[0].envs, ["production"]);
                assert!(hits[0].evidence.starts_with(&format!("LOG_BAILEYS is \"{value}\": ")), "{}", hits[0].evidence);
            }
        }
    }

    #[test]
    fn a_phone_version_set_is_found_with_its_value() {
        let envs = [env("staging", "s", 0, 0), env("production", "p", 1, 1)];
        let facts = [
            facts("staging", &[("CONFIG_SESSION_PHONE_VERSION", "")]),
            facts("production", &[("CONFIG_SESSION_PHONE_VERSION", "2.3000.1015901307")]),
        ];
        let hits = run("phone-version", &envs, &facts);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].envs, ["production"]);
        assert_eq!(
            hits[0].evidence,
            "CONFIG_SESSION_PHONE_VERSION is \"2.3000.1015901307\", but Evolution 2.3.7 ignores it (removed in 2.3.1): every connect fetches WhatsApp Web's current version instead, so the pin holds nothing"
        );
    }

    #[test]
    fn del_instance_minutes_and_duplicate_instance_names_are_found() {
        let envs = [env("staging", "same", 0, 0), env("production", "same", 1, 1)];
        let facts = [facts("staging", &[("DEL_INSTANCE", "5")]), facts("production", &[("DEL_INSTANCE", "false")])];
        let found = run("del-instance", &envs, &facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envs, ["staging"]);
        assert!(found[0].evidence.starts_with("DEL_INSTANCE is 5: "));
        let found = run("instance-names", &envs, &facts);
        assert_eq!(found[0].envs, ["staging", "production"]);
        assert_eq!(found[0].evidence, "staging and production use the same instance name `same`");
        // 2.3.7's parser: "1" and "0" are booleans (false), "5m" is 5 minutes, "0m" is off.
        for (value, armed) in [
            ("1", None),
            ("0", None),
            ("true", None),
            ("TRUE", None),
            ("5m", Some(5)),
            ("10min", Some(10)),
            ("0m", None),
            ("", None),
            (" 7", Some(7)),
        ] {
            assert_eq!(del_instance_minutes(value), armed, "{value:?}");
        }
        let parsed = [
            testing::facts("staging", &[("DEL_INSTANCE", "5m")]),
            testing::facts("production", &[("DEL_INSTANCE", "0")]),
        ];
        let found = run("del-instance", &envs, &parsed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envs, ["staging"]);
        assert!(
            found[0].evidence.starts_with("DEL_INSTANCE is 5m: Evolution 2.3.7 reads 5 minutes"),
            "{}",
            found[0].evidence
        );
    }
}
