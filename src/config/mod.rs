//! `evoctl.toml`: the schema, where the file is found, and validation with precise errors.
//!
//! The file names each environment (cluster, instance, scaling, protection, webhook, the app
//! side) and the defaults they share. Parsing is strict (`deny_unknown_fields`), and values that
//! have rules (environment names, scaling ranges, webhook URLs and events, secret references)
//! are checked while deserialising, so every error carries the file, line and column of the
//! offending value plus a fix; a key that was removed ([`REMOVED_KEYS`]) says why it went and
//! that the fix is to delete its line. Resolution turns the file into [`Environment`] values
//! that the rest of the program uses; nothing else reads the raw file.

mod schema;

pub use schema::{
    AppConfig, AwsSection, ConfigFile, EnvAws, EnvName, REMOVED_KEYS, RoleArn, Scaling, SecretRef, ServiceDefaults,
    SessionName, WEBHOOK_EVENTS, WebhookConfig,
};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable that names the config file (same as `--config`).
pub const CONFIG_ENV_VAR: &str = "EVOCTL_CONFIG";
/// The file looked for in the current directory when neither `--config` nor the variable is set.
pub const DEFAULT_FILE: &str = "evoctl.toml";
/// The commented starter file `evoctl init` writes.
pub const STARTER: &str = include_str!("starter.toml");

/// A loaded, validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The AWS region/profile the file asks for, if any.
    pub aws: AwsSection,
    /// Environments in file order.
    pub environments: Vec<Environment>,
}

/// One environment with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    pub cluster: String,
    pub service: String,
    pub container: String,
    pub instance: String,
    pub scaling: Option<Scaling>,
    pub protected: bool,
    /// The WhatsApp number label ([`SHARED_NUMBER`] when the file sets none): environments
    /// with the same label must never run at the same time.
    pub number: String,
    pub webhook: Option<WebhookConfig>,
    pub app: Option<AppConfig>,
    /// This environment's own AWS settings (`env.NAME.aws`).
    pub aws: EnvAws,
}

#[cfg(test)]
impl Environment {
    /// An environment for unit tests: cluster `c-NAME`, service and container `S`.
    pub fn for_test(name: &str, instance: &str, min: u32, max: u32) -> Environment {
        Environment {
            name: name.into(),
            cluster: format!("c-{name}"),
            service: "S".into(),
            container: "S".into(),
            instance: instance.into(),
            scaling: Some(Scaling { min, max }),
            protected: false,
            number: SHARED_NUMBER.into(),
            webhook: None,
            app: None,
            aws: EnvAws::default(),
        }
    }
}

/// The number label of environments that do not set `number`: by default every environment
/// is assumed to share one WhatsApp number.
pub const SHARED_NUMBER: &str = "shared";

impl Config {
    /// Load from an explicit path (flag or `EVOCTL_CONFIG`) or `./evoctl.toml`.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => PathBuf::from(DEFAULT_FILE),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Config {
                    location: path.display().to_string(),
                    message: "config file not found".into(),
                    fix: format!(
                        "run `evoctl init` to write a starter file, or point --config / {CONFIG_ENV_VAR} at yours"
                    ),
                });
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        Config::parse(&path, &text)
    }

    /// Parse and validate the text of a config file; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|err| config_error(path, text, &err))?;
        let environments = file
            .env
            .iter()
            .map(|(name, env)| Environment {
                name: name.as_str().to_owned(),
                cluster: env.cluster.clone(),
                service: env.service.clone().unwrap_or_else(|| file.service.name.clone()),
                container: env.container.clone().unwrap_or_else(|| file.service.container.clone()),
                instance: env.instance.clone().unwrap_or_else(|| name.as_str().to_owned()),
                scaling: env.scaling,
                protected: env.protected,
                number: env.number.clone().unwrap_or_else(|| SHARED_NUMBER.to_owned()),
                webhook: env.webhook.clone(),
                app: env.app.clone(),
                aws: env.aws.clone(),
            })
            .collect::<Vec<_>>();
        if let Some(env) = environments.iter().find(|e| e.aws.role_arn.is_none() && e.aws.external_id.is_some()) {
            return Err(Error::Config {
                location: path.display().to_string(),
                message: format!("env.{}.aws sets external_id without role_arn", env.name),
                fix: format!(
                    "add role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\" to env.{}.aws (the role whose trust policy asks for that ExternalId), or remove external_id",
                    env.name
                ),
            });
        }
        if environments.is_empty() {
            return Err(Error::Config {
                location: path.display().to_string(),
                message: "no environments: the file has no [env.NAME] table".into(),
                fix: "add at least one, e.g. [env.production] with cluster = \"...\" (see `evoctl init`)".into(),
            });
        }
        let aws = AwsSection { file: path.to_path_buf(), ..file.aws };
        Ok(Config { path: path.to_path_buf(), aws, environments })
    }

    /// The environment called `name`, or a usage error listing the known ones.
    pub fn environment(&self, name: &str) -> Result<&Environment> {
        self.environments.iter().find(|env| env.name == name).ok_or_else(|| {
            Error::usage(
                format!("unknown environment `{name}` (known in {}: {})", self.path.display(), self.names().join(", ")),
                format!("use one of the known names, or add [env.{name}] to the config file"),
            )
        })
    }

    /// The environments named, in the order given; all of them when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Environment>> {
        if names.is_empty() {
            return Ok(self.environments.iter().collect());
        }
        names.iter().map(|name| self.environment(name)).collect()
    }

    /// Every environment name, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.environments.iter().map(|env| env.name.as_str()).collect()
    }
}

/// Turn a TOML/serde error into an error naming file:line:col, the problem and a fix.
fn config_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let (line, column) = err.span().map(|span| line_column(text, span.start)).unwrap_or((1, 1));
    let message = err.message().trim().to_owned();
    let location = format!("{}:{line}:{column}", path.display());
    if let Some((key, reason)) = removed_key(&message) {
        return Error::Config {
            location,
            message: format!("`{key}` was removed: {reason}"),
            fix: format!("delete the `{key}` line"),
        };
    }
    let fix = if message.starts_with("unknown field") {
        "remove or rename that key; `evoctl init --force --config /tmp/x.toml` writes a commented reference"
    } else if message.starts_with("invalid type") {
        "give the value the type the message expects (numbers unquoted, strings in quotes, lists in [ ])"
    } else if message.starts_with("missing field") {
        "add the missing key to that table"
    } else if message.starts_with("duplicate key") {
        "keep only one definition of that key"
    } else {
        "correct the value at that position"
    };
    Error::Config { location, message, fix: fix.into() }
}

/// The removed key (and why it went) that an "unknown field" message is about, if any.
fn removed_key(message: &str) -> Option<(&'static str, &'static str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let name = &rest[..rest.find('`')?];
    REMOVED_KEYS.iter().copied().find(|(key, _)| *key == name)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Write the starter file; refuses to replace an existing file unless `force`.
pub fn write_starter(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::usage(
            format!("{} already exists; not overwriting it", path.display()),
            "pass --force to replace it, or --config to write somewhere else",
        ));
    }
    std::fs::write(path, STARTER).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("evoctl.toml"), text)
    }

    #[test]
    fn starter_file_parses_to_the_seed_defaults() {
        let config = parse(STARTER).unwrap();
        assert_eq!(config.names(), ["staging", "production"]);
        let staging = config.environment("staging").unwrap();
        assert_eq!(staging.cluster, "alinhou-staging");
        assert_eq!(staging.service, "EvolutionService");
        assert_eq!(staging.container, "EvolutionService");
        assert_eq!(staging.scaling, Some(Scaling { min: 0, max: 0 }));
        let production = config.environment("production").unwrap();
        assert_eq!(production.scaling, Some(Scaling { min: 1, max: 1 }));
        assert!(production.protected);
        assert_eq!(production.instance, "alinhou-production");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = parse("[env.staging]\ncluster = \"a\"\nclustr = \"b\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("evoctl.toml:3:1: unknown field `clustr`"), "{text}");
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }

    #[test]
    fn removed_server_port_says_why_and_to_delete_the_line() {
        for text in [
            "[service]\nserver_port = 8080\n[env.staging]\ncluster = \"a\"\n",
            "[env.staging]\ncluster = \"a\"\nserver_port = 8080\n",
        ] {
            let err = parse(text).unwrap_err();
            let line = if text.starts_with("[service]") { 2 } else { 3 };
            assert_eq!(
                err.to_string(),
                format!(
                    "evoctl.toml:{line}:1: `server_port` was removed: evoctl calls Evolution on the container's own SERVER_PORT (read inside the task), so the file cannot set it"
                ),
            );
            assert_eq!(err.fix(), Some("delete the `server_port` line"));
            assert_eq!(err.exit_code(), crate::exit::USAGE);
        }
    }

    #[test]
    fn scaling_min_above_max_is_rejected_at_its_value() {
        let err = parse("[env.staging]\ncluster = \"a\"\nscaling = { min = 2, max = 1 }\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("evoctl.toml:3:11:"), "{text}");
        assert!(text.contains("min (2) is greater than max (1)"), "{text}");
    }

    #[test]
    fn bad_env_name_is_rejected() {
        let err = parse("[env.\"pro duction\"]\ncluster = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("`pro duction`"), "{err}");
    }

    #[test]
    fn webhook_rules_are_checked() {
        let base = "[env.p]\ncluster = \"a\"\n[env.p.webhook]\n";
        let err = parse(&format!("{base}url = \"ftp://x\"\nevents = [\"MESSAGES_UPSERT\"]\n")).unwrap_err();
        assert!(err.to_string().contains("http:// or https://"), "{err}");
        let err = parse(&format!("{base}url = \"https://x\"\nevents = [\"MESSAGE_UPSERT\"]\n")).unwrap_err();
        assert!(err.to_string().contains("`MESSAGE_UPSERT` is not a 2.3.7 webhook event"), "{err}");
        let err = parse(&format!("{base}url = \"https://x\"\nevents = []\njwt_secret = \"plain\"\n")).unwrap_err();
        assert!(err.to_string().contains("ssm:/path or env:VAR"), "{err}");
    }

    #[test]
    fn per_environment_aws_settings_are_checked_where_they_are() {
        let base = "[env.staging]\ncluster = \"a\"\n";
        let config = parse(&format!(
            "{base}aws = {{ profile = \"stage\", region = \"us-west-2\", role_arn = \"arn:aws:iam::111111111111:role/Ops\", external_id = \"x\", session_name = \"evoctl-staging\" }}\n"
        ))
        .unwrap();
        let aws = &config.environment("staging").unwrap().aws;
        assert_eq!(aws.role_arn.as_ref().map(RoleArn::account), Some("111111111111"));
        assert_eq!(aws.profile.as_deref(), Some("stage"));
        let err = parse(&format!("{base}aws = {{ role_arn = \"arn:aws:iam::1111:role/Ops\" }}\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("evoctl.toml:3:20: role_arn `arn:aws:iam::1111:role/Ops` is not an IAM role ARN"),
            "{err}"
        );
        let err = parse(&format!(
            "{base}aws = {{ role_arn = \"arn:aws:iam::111111111111:role/Ops\", session_name = \"a b\" }}\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("session_name `a b` is not an STS session name"), "{err}");
        let err = parse(&format!("{base}aws = {{ external_id = \"x\" }}\n")).unwrap_err();
        assert_eq!(err.to_string(), "evoctl.toml: env.staging.aws sets external_id without role_arn");
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        let err = parse(&format!("{base}aws = {{ regoin = \"x\" }}\n")).unwrap_err();
        assert!(err.to_string().contains("unknown field `regoin`"), "{err}");
    }

    #[test]
    fn unknown_environment_lists_known_ones() {
        let config = parse(STARTER).unwrap();
        let err = config.environment("prod").unwrap_err();
        assert!(err.to_string().contains("known in evoctl.toml: staging, production"), "{err}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncé", 4), (2, 2));
    }
}
