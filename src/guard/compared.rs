//! What the isolation rules compare: a container's environment, read as Evolution 2.3.7 reads
//! it (image defaults for unset variables, code defaults for empty ones), reduced to SHA-256
//! fingerprints so settings can be compared across environments without keeping or printing
//! them.
//!
//! A fact is only shared when it means the same thing in both places:
//! - A `secrets` entry is compared by the value ECS would inject, not by the text of its
//!   `valueFrom`: a bare parameter name is local to the task's account and region, so two
//!   accounts that use one name hold two parameters. Where the caller may read the parameter its
//!   value is fingerprinted like a plain one; where it may not, the parameter's full ARN (partition,
//!   account, region, name) stands in for the value, and the finding says so.
//! - A database or Redis on a loopback host (`localhost`, `127.0.0.0/8`, `::1`, `0.0.0.0`) is the
//!   task's own: every task has its own network namespace on Fargate (awsvpc), so `localhost` is a
//!   sidecar of that one task, and two environments that both use one are not sharing anything.
//!   Such a URI is never reported as shared.

use indexmap::{IndexMap, IndexSet};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The key in the image's `.env.example`: live whenever a task sets no key of its own.
pub const PUBLIC_DEFAULT_API_KEY: &str = "429683C4C977415CAAFCCE10F7D57E11";
/// 2.3.7's code default key (`env.config.ts`), live when the variable is set to "".
pub const CODE_DEFAULT_API_KEY: &str = "BQYHJGJHJ";

/// The variables the isolation rules compare by value: a `secrets` entry for one of these is read
/// (`ssm:GetParameter`) so it can be; other secrets are never read.
pub const COMPARED_VARIABLES: &[&str] = &[
    "DATABASE_CONNECTION_URI",
    "DATABASE_CONNECTION_CLIENT_NAME",
    "CACHE_REDIS_ENABLED",
    "CACHE_REDIS_URI",
    "CACHE_REDIS_PREFIX_KEY",
    "AUTHENTICATION_API_KEY",
    "SERVER_URL",
    "CONFIG_SESSION_PHONE_CLIENT",
];

/// One variable of the container's environment, as the audit knows it.
#[derive(Clone, PartialEq, Eq)]
pub enum Known {
    /// From `environment[]`: the value itself.
    Plain(String),
    /// From `secrets[]`, read with the caller's credentials: the value and the secret's full ARN.
    Read { value: String, arn: String },
    /// From `secrets[]`, not read: the secret's full ARN (or its `valueFrom` when it has none),
    /// and why it was not read.
    Unread { arn: String, why: String },
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Known::Plain(value) => write!(f, "Plain(<{} characters>)", value.chars().count()),
            Known::Read { value, arn } => write!(f, "Read(<{} characters> from {arn})", value.chars().count()),
            Known::Unread { arn, why } => write!(f, "Unread({arn}: {why})"),
        }
    }
}

/// A SHA-256 of what a setting is compared by.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint(..)")
    }
}

/// One setting reduced to what it is compared by, and how it came to be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    pub print: Fingerprint,
    /// Some part of it is a value (plain, read from a secret, or a default).
    pub by_value: bool,
    /// The secrets (full ARNs) a value of it was read from.
    pub read_from: Vec<String>,
    /// The secrets whose value could not be read, so their ARN stands in for it: (ARN, why).
    pub by_arn: Vec<(String, String)>,
}

/// One piece of a setting: a value (and the secret it came from), or a secret known by ARN only.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Value { text: String, from: Option<String> },
    Arn { arn: String, why: String },
}

impl Part {
    fn value(text: impl Into<String>) -> Part {
        Part::Value { text: text.into(), from: None }
    }

    fn map_text(self, change: impl FnOnce(String) -> String) -> Part {
        match self {
            Part::Value { text, from } => Part::Value { text: change(text), from },
            arn => arn,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Part::Value { text, .. } => Some(text),
            Part::Arn { .. } => None,
        }
    }
}

impl Compared {
    /// The fingerprint of `parts` under `kind` (a value and an ARN never hash alike).
    fn of(kind: &str, parts: &[&Part]) -> Compared {
        let mut hash = Sha256::new();
        hash.update(kind.as_bytes());
        let (mut by_value, mut read_from, mut by_arn) = (false, Vec::new(), Vec::new());
        for part in parts {
            hash.update([0]);
            match part {
                Part::Value { text, from } => {
                    hash.update(b"v");
                    hash.update(text.as_bytes());
                    by_value = true;
                    read_from.extend(from.clone());
                }
                Part::Arn { arn, why } => {
                    hash.update(b"a");
                    hash.update(arn.as_bytes());
                    by_arn.push((arn.clone(), why.clone()));
                }
            }
        }
        Compared { print: Fingerprint(hash.finalize().into()), by_value, read_from, by_arn }
    }

    /// How a group of equal settings was compared, for the evidence: "compared by SHA-256 of the
    /// values[, read from ARN and ARN]" and/or "by ARN: ARN (why)", secrets in the group's order.
    pub fn how(group: &[&Compared]) -> String {
        let read_from: IndexSet<&str> = group.iter().flat_map(|c| c.read_from.iter().map(String::as_str)).collect();
        let by_arn: IndexSet<(&str, &str)> =
            group.iter().flat_map(|c| c.by_arn.iter().map(|(arn, why)| (arn.as_str(), why.as_str()))).collect();
        let mut ways = Vec::new();
        if group.iter().any(|c| c.by_value) {
            ways.push(match read_from.is_empty() {
                true => "compared by SHA-256 of the values".to_owned(),
                false => format!(
                    "compared by SHA-256 of the values, read from {}",
                    read_from.into_iter().collect::<Vec<_>>().join(" and ")
                ),
            });
        }
        if !by_arn.is_empty() {
            let listed: Vec<String> = by_arn.into_iter().map(|(arn, why)| format!("{arn} ({why})")).collect();
            let lead = if ways.is_empty() { "compared by ARN" } else { "by ARN" };
            ways.push(format!("{lead}, the value not being readable: {}", listed.join(" and ")));
        }
        ways.join("; ")
    }
}

/// The global API key as the container will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKey {
    /// Not set: the image's public default key (from its `.env`) is live.
    Unset,
    /// Set to the empty string: 2.3.7's code default (`BQYHJGJHJ`, public in its source) is live.
    CodeDefault,
    /// Set to the public default key from `.env.example`.
    PublicDefault,
    /// Set to a key of its own (or a secret that could not be read).
    Set,
}

/// The settings that decide whether two environments share state, by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationSettings {
    /// host, port, database and schema of DATABASE_CONNECTION_URI (credentials left out);
    /// `None` when unset or on a loopback host.
    pub database: Option<Compared>,
    pub client_name: Compared,
    /// CACHE_REDIS_URI (host, port, db) + CACHE_REDIS_PREFIX_KEY; `None` with the cache off or on
    /// a loopback host.
    pub redis: Option<Compared>,
    pub api_key: ApiKey,
    /// The key in effect (the public or code default when it is one of them).
    pub api_key_value: Compared,
    pub server_url: Compared,
    pub phone_client: Compared,
    /// Not secret: kept as is for the evidence (a secret's ARN, never its value).
    pub database_provider: Option<String>,
    pub del_instance: Option<String>,
    /// LOG_BAILEYS as set (plain text; `None` unset or from a secret).
    pub log_baileys: Option<String>,
    /// CONFIG_SESSION_PHONE_VERSION as set (2.3.7 reads it no more).
    pub phone_version: Option<String>,
}

impl IsolationSettings {
    /// Reduce a container's environment to fingerprints, applying the 2.3.7 image defaults.
    pub fn from_environment(environment: &IndexMap<String, Known>) -> IsolationSettings {
        // As 2.3.7 reads a variable: an unset one comes from the image's `.env`; a set one wins
        // even when empty (dotenv never overrides it), and then the code's `x || default` makes
        // "" the code default.
        let read = |name: &str, image_default: &str, code_default: &str| -> Part {
            let or_code = |value: &str| (if value.is_empty() { code_default } else { value }).to_owned();
            match environment.get(name) {
                None => Part::value(image_default),
                Some(Known::Plain(value)) => Part::value(or_code(value)),
                Some(Known::Read { value, arn }) => Part::Value { text: or_code(value), from: Some(arn.clone()) },
                Some(Known::Unread { arn, why }) => Part::Arn { arn: arn.clone(), why: why.clone() },
            }
        };
        // A variable kept for the evidence: a plain value as it is, a secret by its ARN only.
        let shown = |name: &str| match environment.get(name) {
            None => None,
            Some(Known::Plain(value)) => Some(value.clone()),
            Some(Known::Read { arn, .. } | Known::Unread { arn, .. }) => Some(format!("(from {arn})")),
        };
        let set = |part: &Part| part.text() != Some("");
        let database = Some(read("DATABASE_CONNECTION_URI", "", ""))
            .filter(set)
            .filter(|uri| !uri.text().is_some_and(on_loopback))
            .map(|uri| Compared::of("database", &[&uri.map_text(|uri| location(&uri))]));
        // Booleans are `=== 'true'`: case-sensitive. An empty URI creates no cache engine. A
        // switch known by ARN only may be on.
        let cache_on = read("CACHE_REDIS_ENABLED", "true", "false").text().is_none_or(|on| on == "true");
        let uri = read("CACHE_REDIS_URI", "redis://localhost:6379/6", "");
        let redis = (cache_on && set(&uri) && !uri.text().is_some_and(on_loopback)).then(|| {
            let prefix = read("CACHE_REDIS_PREFIX_KEY", "evolution", "evolution-cache");
            Compared::of("redis", &[&uri.map_text(|uri| location(&uri)), &prefix])
        });
        let api_key = match environment.get("AUTHENTICATION_API_KEY") {
            None => ApiKey::Unset,
            Some(Known::Plain(key) | Known::Read { value: key, .. }) if key.is_empty() => ApiKey::CodeDefault,
            Some(Known::Plain(key) | Known::Read { value: key, .. }) if key == PUBLIC_DEFAULT_API_KEY => {
                ApiKey::PublicDefault
            }
            Some(_) => ApiKey::Set,
        };
        let server_url =
            read("SERVER_URL", "http://localhost:8080", "").map_text(|url| url.trim_end_matches('/').into());
        IsolationSettings {
            database,
            client_name: Compared::of(
                "client",
                &[&read("DATABASE_CONNECTION_CLIENT_NAME", "evolution_exchange", "evolution")],
            ),
            redis,
            api_key,
            api_key_value: Compared::of(
                "apikey",
                &[&read("AUTHENTICATION_API_KEY", PUBLIC_DEFAULT_API_KEY, CODE_DEFAULT_API_KEY)],
            ),
            server_url: Compared::of("url", &[&server_url]),
            phone_client: Compared::of(
                "phone",
                &[&read("CONFIG_SESSION_PHONE_CLIENT", "Evolution API", "Evolution API")],
            ),
            database_provider: shown("DATABASE_PROVIDER").filter(|v| !v.is_empty()),
            del_instance: shown("DEL_INSTANCE"),
            log_baileys: match environment.get("LOG_BAILEYS") {
                Some(Known::Plain(value)) => Some(value.clone()),
                _ => None,
            },
            phone_version: shown("CONFIG_SESSION_PHONE_VERSION"),
        }
    }
}

/// Where a connection URI points: lower-cased host and port, the path (database / Redis db) and
/// the `schema` query parameter (`public` when absent); user, password and other options are
/// left out, so two URIs with different credentials for one database compare equal.
/// Anything that does not parse as `scheme://…` is compared whole.
pub fn location(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_owned() };
    let (authority_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = authority_and_path.split_once('/').unwrap_or((authority_and_path, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
    let schema =
        query.split('&').find_map(|pair| pair.strip_prefix("schema=")).filter(|s| !s.is_empty()).unwrap_or("public");
    let scheme = scheme.to_ascii_lowercase();
    let scheme = if scheme == "postgres" { "postgresql".to_owned() } else { scheme };
    format!("{scheme}://{host}/{path}?schema={schema}")
}

/// Whether a connection URI's host is the task's own loopback: `localhost`, `127.0.0.0/8`, `::1`
/// or `0.0.0.0` (which connects to the local host). A URI that does not parse is not.
pub fn on_loopback(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    match url.host() {
        // Database and Redis schemes are not "special" to the URL standard, so their hosts stay
        // text: an address literal is parsed here.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(local)
        }
        Some(url::Host::Ipv4(ip)) => local(ip.into()),
        Some(url::Host::Ipv6(ip)) => local(ip.into()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_ignores_credentials_and_options_but_not_database_or_schema() {
        let a = location("postgresql://u:p1@DB.example:5432/evolution?schema=evolution_api&sslmode=require");
        let b = location("postgres://other:p2@db.example:5432/evolution?schema=evolution_api");
        assert_eq!(a, b);
        assert_ne!(a, location("postgresql://u:p1@db.example:5432/evolution_prod?schema=evolution_api"));
        assert_ne!(a, location("postgresql://u:p1@db.example:5432/evolution"));
        assert_eq!(location("postgresql://db:5432/e"), "postgresql://db:5432/e?schema=public");
        assert_ne!(location("redis://r:6379/1"), location("redis://r:6379/2"));
    }

    #[test]
    fn loopback_hosts_are_recognised_and_others_are_not() {
        for uri in [
            "postgresql://u:p@localhost:5432/evolution",
            "postgresql://u:p@LOCALHOST/evolution",
            "redis://127.0.0.1:6379/1",
            "redis://127.8.9.10:6379/1",
            "postgresql://u:p@[::1]:5432/evolution",
            "redis://0.0.0.0:6379",
        ] {
            assert!(on_loopback(uri), "{uri}");
        }
        for uri in [
            "postgresql://u:p@db.internal:5432/evolution",
            "redis://10.0.0.1:6379",
            "postgresql://u:p@localhost.example.com/evolution",
            "redis://128.0.0.1:6379",
            "not a uri",
        ] {
            assert!(!on_loopback(uri), "{uri}");
        }
    }

    fn plain(pairs: &[(&str, &str)]) -> IndexMap<String, Known> {
        pairs.iter().map(|(k, v)| (k.to_string(), Known::Plain(v.to_string()))).collect()
    }

    #[test]
    fn unset_settings_take_the_image_defaults_so_two_bare_tasks_compare_equal() {
        let bare = IsolationSettings::from_environment(&plain(&[]));
        assert_eq!(bare, IsolationSettings::from_environment(&plain(&[("CACHE_REDIS_PREFIX_KEY", "evolution")])));
        assert_eq!(bare.api_key, ApiKey::Unset);
        assert_eq!(bare.redis, None, "the image's default Redis is on localhost: the task's own");
        let remote = IsolationSettings::from_environment(&plain(&[("CACHE_REDIS_URI", "redis://r:6379/6")]));
        assert!(remote.redis.is_some(), "the image enables the Redis cache by default");
        let off = IsolationSettings::from_environment(&plain(&[
            ("CACHE_REDIS_URI", "redis://r:6379/6"),
            ("CACHE_REDIS_ENABLED", "false"),
        ]));
        assert_eq!(off.redis, None);
        let public = IsolationSettings::from_environment(&plain(&[("AUTHENTICATION_API_KEY", PUBLIC_DEFAULT_API_KEY)]));
        assert_eq!(public.api_key, ApiKey::PublicDefault);
        assert_eq!(public.api_key_value, bare.api_key_value, "unset is the public key");
    }

    /// 2.3.7's parser: "" is the code default, not the image's `.env`; booleans are case-sensitive.
    #[test]
    fn empty_and_miscased_settings_read_as_the_real_parser() {
        let remote = ("CACHE_REDIS_URI", "redis://r:6379/6");
        let bare = IsolationSettings::from_environment(&plain(&[remote]));
        let empty = IsolationSettings::from_environment(&plain(&[
            ("AUTHENTICATION_API_KEY", ""),
            ("DATABASE_CONNECTION_CLIENT_NAME", ""),
            ("CACHE_REDIS_ENABLED", ""),
            remote,
        ]));
        assert_eq!(empty.api_key, ApiKey::CodeDefault);
        let named = IsolationSettings::from_environment(&plain(&[("DATABASE_CONNECTION_CLIENT_NAME", "evolution")]));
        assert_eq!(empty.client_name, named.client_name);
        assert_ne!(empty.client_name, bare.client_name, "unset is evolution_exchange, from the image's .env");
        assert_eq!(empty.redis, None, "an empty CACHE_REDIS_ENABLED is the code default: off");
        let upper = IsolationSettings::from_environment(&plain(&[("CACHE_REDIS_ENABLED", "TRUE"), remote]));
        assert_eq!(upper.redis, None, "`=== 'true'`: TRUE is off");
        let prefix = IsolationSettings::from_environment(&plain(&[("CACHE_REDIS_PREFIX_KEY", ""), remote]));
        let code_prefix =
            IsolationSettings::from_environment(&plain(&[("CACHE_REDIS_PREFIX_KEY", "evolution-cache"), remote]));
        assert_eq!(prefix.redis, code_prefix.redis);
        assert_ne!(prefix.redis, bare.redis);
    }

    #[test]
    fn a_secret_compares_by_its_value_when_read_and_by_its_arn_when_not() {
        let arn = "arn:aws:ssm:us-east-1:111111111111:parameter/alinhou/evolution-api-key";
        let read = |value: &str| {
            IsolationSettings::from_environment(&IndexMap::from([(
                "AUTHENTICATION_API_KEY".to_owned(),
                Known::Read { value: value.into(), arn: arn.into() },
            )]))
        };
        let plain_key = IsolationSettings::from_environment(&plain(&[("AUTHENTICATION_API_KEY", "k1")]));
        assert_eq!(read("k1").api_key_value.print, plain_key.api_key_value.print, "one value, wherever it is kept");
        assert_ne!(read("k2").api_key_value.print, plain_key.api_key_value.print);
        assert_eq!(read("k1").api_key_value.read_from, [arn]);
        assert_eq!(read(PUBLIC_DEFAULT_API_KEY).api_key, ApiKey::PublicDefault, "a secret can hold the public key");
        let unread = |arn: &str| {
            IsolationSettings::from_environment(&IndexMap::from([(
                "AUTHENTICATION_API_KEY".to_owned(),
                Known::Unread { arn: arn.into(), why: "ssm:GetParameter answered AccessDeniedException".into() },
            )]))
        };
        assert_eq!(unread(arn).api_key, ApiKey::Set);
        assert_eq!(unread(arn).api_key_value, unread(arn).api_key_value);
        let other = "arn:aws:ssm:sa-east-1:222222222222:parameter/alinhou/evolution-api-key";
        assert_ne!(unread(arn).api_key_value.print, unread(other).api_key_value.print, "one name, two accounts");
        assert_ne!(unread(arn).api_key_value.print, read(arn).api_key_value.print, "an ARN never equals a value");
        assert_eq!(
            Compared::how(&[&unread(arn).api_key_value, &unread(arn).api_key_value]),
            format!(
                "compared by ARN, the value not being readable: {arn} (ssm:GetParameter answered AccessDeniedException)"
            )
        );
        assert_eq!(
            Compared::how(&[&read("k1").api_key_value, &plain_key.api_key_value]),
            format!("compared by SHA-256 of the values, read from {arn}")
        );
    }

    #[test]
    fn loopback_databases_and_caches_are_never_compared() {
        let sidecar = IsolationSettings::from_environment(&plain(&[
            ("DATABASE_CONNECTION_URI", "postgresql://u:p@localhost:5432/evolution"),
            ("CACHE_REDIS_URI", "redis://127.0.0.1:6379/1"),
        ]));
        assert_eq!((sidecar.database, sidecar.redis), (None, None));
    }

    #[test]
    fn no_setting_value_survives_in_debug_output() {
        let settings = IsolationSettings::from_environment(&IndexMap::from([
            ("AUTHENTICATION_API_KEY".to_owned(), Known::Plain("canary-key-123".into())),
            ("DATABASE_CONNECTION_URI".to_owned(), Known::Plain("postgresql://u:canary-pass@h/d".into())),
            ("SERVER_URL".to_owned(), Known::Read { value: "canary-url".into(), arn: "arn:x".into() }),
        ]));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("canary"), "{debug}");
        let known = format!("{:?}", Known::Read { value: "canary-secret".into(), arn: "arn:x".into() });
        assert!(!known.contains("canary"), "{known}");
    }
}
