//! Everything the rules look at, read once per environment with every independent AWS call in
//! flight at the same time: the service, its live tasks, the scalable target with its scheduled
//! actions and policies, the container's settings from the task definition (reduced to
//! fingerprints, so no secret value is kept), the app Lambda's environment, the webhook secret's
//! presence, and the conflict lines of the environment's own streams of the log group.
//!
//! Any read that fails makes that environment's collection fail (and every environment of a
//! chain whose shared reads failed): an audit must never report "clean" from partial facts.

use super::conflicts::{self, ConflictEvidence};
use crate::aws::discovery::{self, LiveTask, ScalableRange, ServiceRef, ServiceState};
use crate::aws::scaling::{self, ScheduledAction};
use crate::aws::secrets::{self, SecretValue};
use crate::aws::taskdef::{self, ContainerSettings, EnvValue};
use crate::aws::{Aws, Fleet, sdk_failure};
use crate::config::{Environment, SecretRef};
use crate::error::{Error, Result};
use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The key in the image's `.env.example`: live whenever a task sets no key of its own.
pub const PUBLIC_DEFAULT_API_KEY: &str = "429683C4C977415CAAFCCE10F7D57E11";
/// 2.3.7's code default key (`env.config.ts`), live when the variable is set to "".
pub const CODE_DEFAULT_API_KEY: &str = "BQYHJGJHJ";

/// What one environment looks like right now.
#[derive(Debug, Clone)]
pub struct EnvFacts {
    pub env: String,
    /// Where it was read: the account id (from the service's ARN, else the configured role's)
    /// and the region.
    pub account: String,
    pub region: String,
    pub service: ServiceState,
    pub tasks: Vec<LiveTask>,
    pub target: Option<ScalableRange>,
    pub scheduled_actions: Vec<ScheduledAction>,
    pub scaling_policies: Vec<String>,
    pub settings: IsolationSettings,
    pub app: Option<AppFacts>,
    pub webhook_secret: WebhookSecret,
    /// `None` when the container has no awslogs group.
    pub conflicts: Option<ConflictEvidence>,
}

/// A SHA-256 of a setting's effective value, so settings can be compared across environments
/// without keeping or printing them.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(super) fn of(kind: &str, value: &str) -> Fingerprint {
        let mut hash = Sha256::new();
        hash.update(kind.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        Fingerprint(hash.finalize().into())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint(..)")
    }
}

/// The fingerprint every environment without a key of its own shares.
pub fn public_default_fingerprint() -> Fingerprint {
    Fingerprint::of("apikey", PUBLIC_DEFAULT_API_KEY)
}

/// The global API key as the container will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKey {
    /// Not set: the image's public default key (from its `.env`) is live.
    Unset,
    /// Set to the empty string: 2.3.7's code default (`BQYHJGJHJ`, public in its source) is live.
    CodeDefault,
    /// Set to the public default key from `.env.example`.
    PublicDefault,
    Set(Fingerprint),
}

/// The settings that decide whether two environments share state, by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationSettings {
    /// host, port, database and schema of DATABASE_CONNECTION_URI (credentials left out).
    pub database: Option<Fingerprint>,
    pub client_name: Fingerprint,
    /// CACHE_REDIS_URI (host, port, db) + CACHE_REDIS_PREFIX_KEY; `None` with the cache off.
    pub redis: Option<Fingerprint>,
    pub api_key: ApiKey,
    pub server_url: Fingerprint,
    pub phone_client: Fingerprint,
    /// Not secret: kept as is for the evidence.
    pub database_provider: Option<String>,
    pub del_instance: Option<String>,
}

impl IsolationSettings {
    /// Reduce a container's environment to fingerprints, applying the 2.3.7 image defaults.
    pub fn from_container(container: &ContainerSettings) -> IsolationSettings {
        // As 2.3.7 reads a variable: an unset one comes from the image's `.env`; a set one wins
        // even when empty (dotenv never overrides it), and then the code's `x || default` makes
        // "" the code default.
        let read = |name: &str, image_default: &str, code_default: &str| -> String {
            match container.environment.get(name) {
                None => image_default.to_owned(),
                Some(EnvValue::Plain(value)) if value.is_empty() => code_default.to_owned(),
                Some(EnvValue::Plain(value)) => value.clone(),
                // A reference is compared by where it points: two envs reading one secret share it.
                Some(EnvValue::Reference(from)) => format!("valueFrom:{from}"),
            }
        };
        let value = |name: &str| -> Option<String> { Some(read(name, "", "")).filter(|v| !v.is_empty()) };
        let plain = |name: &str| match container.environment.get(name) {
            Some(EnvValue::Plain(value)) => Some(value.clone()),
            Some(EnvValue::Reference(from)) => Some(format!("(from {from})")),
            None => None,
        };
        // Booleans are `=== 'true'`: case-sensitive. An empty URI creates no cache engine.
        let cache_on = read("CACHE_REDIS_ENABLED", "true", "false") == "true";
        let uri = read("CACHE_REDIS_URI", "redis://localhost:6379/6", "");
        let redis = (cache_on && !uri.is_empty()).then(|| {
            let prefix = read("CACHE_REDIS_PREFIX_KEY", "evolution", "evolution-cache");
            Fingerprint::of("redis", &format!("{}\n{prefix}", location(&uri)))
        });
        let api_key = match container.environment.get("AUTHENTICATION_API_KEY") {
            None => ApiKey::Unset,
            Some(EnvValue::Plain(key)) if key.is_empty() => ApiKey::CodeDefault,
            Some(EnvValue::Plain(key)) if key == PUBLIC_DEFAULT_API_KEY => ApiKey::PublicDefault,
            Some(_) => ApiKey::Set(Fingerprint::of("apikey", &read("AUTHENTICATION_API_KEY", "", ""))),
        };
        IsolationSettings {
            database: value("DATABASE_CONNECTION_URI").map(|uri| Fingerprint::of("database", &location(&uri))),
            client_name: Fingerprint::of(
                "client",
                &read("DATABASE_CONNECTION_CLIENT_NAME", "evolution_exchange", "evolution"),
            ),
            redis,
            api_key,
            server_url: Fingerprint::of("url", read("SERVER_URL", "http://localhost:8080", "").trim_end_matches('/')),
            phone_client: Fingerprint::of(
                "phone",
                &read("CONFIG_SESSION_PHONE_CLIENT", "Evolution API", "Evolution API"),
            ),
            database_provider: value("DATABASE_PROVIDER"),
            del_instance: plain("DEL_INSTANCE"),
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

/// The app Lambda's environment, reduced to the variables the config expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppFacts {
    /// The function does not exist.
    Missing { lambda: String },
    /// The expected variables with their actual values (`None` = not set).
    Found { lambda: String, values: IndexMap<String, Option<String>> },
}

/// Whether the configured webhook secret can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSecret {
    /// No webhook in the config: nothing to check.
    NoWebhook,
    /// A webhook without `jwt_secret`: the receiver cannot authenticate deliveries.
    NotConfigured,
    Missing(SecretRef),
    Empty(SecretRef),
    Present,
}

/// Read every environment's facts, each with its own account's credentials;
/// `conflict_window` is how far back to look for conflict lines. The Application Auto Scaling
/// side is read once per credential chain for all of its environments (a few calls in all);
/// each environment's result stands alone so a caller can tell which one could not be read
/// (one account's failure never hides another's environments).
pub async fn collect_all(fleet: &Fleet, envs: &[Environment], conflict_window: Duration) -> Vec<Result<EnvFacts>> {
    use futures::StreamExt;
    let services: Vec<ServiceRef<'_>> =
        envs.iter().map(|env| ServiceRef { cluster: &env.cluster, service: &env.service }).collect();
    let each = futures::stream::iter(envs)
        .map(|env| collect_env(fleet.of(env), env, conflict_window))
        .buffered(crate::aws::MAX_ENVS_IN_FLIGHT)
        .collect::<Vec<_>>();
    let groups = fleet.partition(envs.iter().map(|env| env.name.as_str()));
    let indexes = futures::future::join_all(groups.iter().map(|(aws, members)| {
        let mine: Vec<ServiceRef<'_>> = members.iter().map(|i| services[*i]).collect();
        async move { scaling::index(&aws.autoscaling(), &mine).await }
    }));
    let (indexes, each) = tokio::join!(indexes, each);
    let index_of = |env: usize| {
        let group = groups.iter().position(|(_, members)| members.contains(&env)).expect("every env is in a group");
        &indexes[group]
    };
    each.into_iter()
        .enumerate()
        .map(|(position, facts)| {
            let index = index_of(position).as_ref().map_err(Error::duplicate)?;
            let service = services[position];
            facts.map(|mut facts| {
                facts.target = index.target(service);
                facts.scheduled_actions = index.actions(service);
                facts.scaling_policies = index.policies(service);
                facts
            })
        })
        .collect()
}

/// One environment's facts without the Application Auto Scaling side (see [`collect_all`]).
async fn collect_env(aws: &Aws, env: &Environment, conflict_window: Duration) -> Result<EnvFacts> {
    let ecs = aws.ecs();
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let service_chain = async {
        let service = discovery::service_state(&ecs, target).await?;
        let container = match &service.task_definition {
            Some(definition) => taskdef::container_settings(&ecs, definition, &env.container).await?,
            None => ContainerSettings::default(),
        };
        let conflicts = match &container.log_group {
            Some(group) => {
                let source = crate::aws::logs::source_of(&ecs, target, &env.container, group).await?;
                Some(conflicts::read(&aws.logs(), &source, conflict_window).await?)
            }
            None => None,
        };
        Ok::<_, crate::error::Error>((service, container, conflicts))
    };
    let ((service, container, conflicts), tasks, app, secret) = tokio::try_join!(
        service_chain,
        discovery::live_tasks(&ecs, target),
        app_facts(aws, env),
        webhook_secret(aws, env),
    )?;
    Ok(EnvFacts {
        env: env.name.clone(),
        account: service.account.clone().or_else(|| aws.account_hint().map(str::to_owned)).unwrap_or_default(),
        region: aws.region().to_owned(),
        service,
        tasks,
        target: None,
        scheduled_actions: Vec::new(),
        scaling_policies: Vec::new(),
        settings: IsolationSettings::from_container(&container),
        app,
        webhook_secret: secret,
        conflicts,
    })
}

async fn app_facts(aws: &Aws, env: &Environment) -> Result<Option<AppFacts>> {
    let Some(app) = &env.app else { return Ok(None) };
    let lambda = app.lambda.clone();
    let out = match aws.lambda().get_function_configuration().function_name(&lambda).send().await {
        Ok(out) => out,
        Err(err) => {
            let failure = sdk_failure("GetFunctionConfiguration", err);
            if failure.code == "ResourceNotFoundException" {
                return Ok(Some(AppFacts::Missing { lambda }));
            }
            return Err(failure.into_error());
        }
    };
    let variables = out.environment().and_then(|e| e.variables());
    let values = app.expect.keys().map(|name| (name.clone(), variables.and_then(|v| v.get(name)).cloned())).collect();
    Ok(Some(AppFacts::Found { lambda, values }))
}

async fn webhook_secret(aws: &Aws, env: &Environment) -> Result<WebhookSecret> {
    let Some(webhook) = &env.webhook else { return Ok(WebhookSecret::NoWebhook) };
    let Some(reference) = &webhook.jwt_secret else { return Ok(WebhookSecret::NotConfigured) };
    Ok(match secrets::fetch(aws, reference).await? {
        SecretValue::Missing => WebhookSecret::Missing(reference.clone()),
        SecretValue::Value(value) if value.trim().is_empty() => WebhookSecret::Empty(reference.clone()),
        SecretValue::Value(_) => WebhookSecret::Present,
    })
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

    fn container(pairs: &[(&str, &str)]) -> ContainerSettings {
        ContainerSettings {
            environment: pairs.iter().map(|(k, v)| (k.to_string(), EnvValue::Plain(v.to_string()))).collect(),
            log_driver: None,
            log_group: None,
        }
    }

    #[test]
    fn unset_settings_take_the_image_defaults_so_two_bare_tasks_compare_equal() {
        let bare = IsolationSettings::from_container(&container(&[]));
        assert_eq!(bare, IsolationSettings::from_container(&container(&[("CACHE_REDIS_PREFIX_KEY", "evolution")])));
        assert_eq!(bare.api_key, ApiKey::Unset);
        assert!(bare.redis.is_some(), "the image enables the Redis cache by default");
        let off = IsolationSettings::from_container(&container(&[("CACHE_REDIS_ENABLED", "false")]));
        assert_eq!(off.redis, None);
        let public =
            IsolationSettings::from_container(&container(&[("AUTHENTICATION_API_KEY", PUBLIC_DEFAULT_API_KEY)]));
        assert_eq!(public.api_key, ApiKey::PublicDefault);
    }

    /// 2.3.7's parser: "" is the code default, not the image's `.env`; booleans are case-sensitive.
    #[test]
    fn empty_and_miscased_settings_read_as_the_real_parser() {
        let bare = IsolationSettings::from_container(&container(&[]));
        let empty = IsolationSettings::from_container(&container(&[
            ("AUTHENTICATION_API_KEY", ""),
            ("DATABASE_CONNECTION_CLIENT_NAME", ""),
            ("CACHE_REDIS_ENABLED", ""),
        ]));
        assert_eq!(empty.api_key, ApiKey::CodeDefault);
        assert_eq!(empty.client_name, Fingerprint::of("client", "evolution"));
        assert_ne!(empty.client_name, bare.client_name, "unset is evolution_exchange, from the image's .env");
        assert_eq!(empty.redis, None, "an empty CACHE_REDIS_ENABLED is the code default: off");
        let upper = IsolationSettings::from_container(&container(&[("CACHE_REDIS_ENABLED", "TRUE")]));
        assert_eq!(upper.redis, None, "`=== 'true'`: TRUE is off");
        let prefix = IsolationSettings::from_container(&container(&[("CACHE_REDIS_PREFIX_KEY", "")]));
        let code_prefix =
            IsolationSettings::from_container(&container(&[("CACHE_REDIS_PREFIX_KEY", "evolution-cache")]));
        assert_eq!(prefix.redis, code_prefix.redis);
        assert_ne!(prefix.redis, bare.redis);
    }

    #[test]
    fn no_setting_value_survives_in_debug_output() {
        let settings = IsolationSettings::from_container(&container(&[
            ("AUTHENTICATION_API_KEY", "canary-key-123"),
            ("DATABASE_CONNECTION_URI", "postgresql://u:canary-pass@h/d"),
        ]));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("canary"), "{debug}");
    }
}
