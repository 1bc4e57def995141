//! AWS access: SDK configuration, typed reads of ECS and Application Auto Scaling, and error
//! mapping.
//!
//! Credentials come from the standard chain (env, profiles, SSO, process, IMDS); endpoints honour
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`, which is how tests point evoctl at the
//! lab. The user's retry settings win (`AWS_MAX_ATTEMPTS`/`AWS_RETRY_MODE`, then the profile's
//! `max_attempts`/`retry_mode`, read with the SDK's own resolution); evoctl's higher default
//! applies only when neither sets one. Every call has connect, attempt and operation timeouts
//! ([`Timeouts`]), and the HTTP client honours proxies and `AWS_CA_BUNDLE` ([`trust`]). Every
//! retry is reported as it happens, and an endpoint that refuses connections or does not
//! resolve is given up after a few seconds ([`retries`]). This layer never prints: it returns
//! values or [`crate::error::Error`]s, and hands retry notices to a listener.

pub mod container_secrets;
pub mod credentials;
pub mod discovery;
mod errors;
pub mod fleet;
pub mod kms;
pub mod logs;
pub mod retries;
pub mod scaling;
pub mod secrets;
pub mod task_stop;
pub mod taskdef;
pub mod trust;

pub use errors::{AwsFailure, sdk_failure};
pub use fleet::Fleet;

use crate::env_vars::{EnvVars, ProfileKeys};
use crate::error::{Error, Result};
use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::env_config::EnvConfigValue;
use aws_runtime::env_config::section::EnvConfigSections;
use aws_types::os_shim_internal::{Env, Fs};
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Attempts per AWS call when neither `AWS_MAX_ATTEMPTS` nor the profile's `max_attempts` says
/// (the SDK's own default is 3): an audit under heavy throttling then still completes instead of
/// failing on one unlucky call.
pub const MAX_ATTEMPTS: u32 = 8;

/// At most this many environments are read at once (each read is a handful of concurrent
/// calls); larger fleets go in waves. Together with the SDK's adaptive retry mode (a client-side
/// token bucket that engages at the first throttling answer and then follows the rate AWS
/// allows) this keeps a fleet-wide read fast without hammering the account's API quotas.
pub const MAX_ENVS_IN_FLIGHT: usize = 100;

/// Run `read` for every item, at most [`MAX_ENVS_IN_FLIGHT`] at once, results in input order;
/// the first error wins.
pub async fn for_each_env<T, R, F, Fut>(items: impl IntoIterator<Item = T>, read: F) -> Result<Vec<R>>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(items).map(read).buffered(MAX_ENVS_IN_FLIGHT).try_collect().await
}

/// One credential chain and region: what an environment is read with (flags, then
/// `env.NAME.aws`, then `[aws]`, then the SDK's own chain). Environments with equal settings
/// share one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Where `profile` was named (for messages).
    pub profile_named_by: credentials::ProfileNamedBy,
    /// A role assumed on top of the profile's (or the default chain's) credentials.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
}

/// The assumed role's session name when the config names none (CloudTrail shows it).
pub const DEFAULT_SESSION_NAME: &str = "evoctl";

/// The bounds on every AWS call, each overridable by its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a TCP (and TLS) connection to an endpoint.
    pub connect: Duration,
    /// One attempt of a call (a stalled connection is given up and retried).
    pub attempt: Duration,
    /// A call with all its attempts and back-off.
    pub operation: Duration,
}

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        attempt: Duration::from_secs(30),
        operation: Duration::from_secs(120),
    };

    /// The defaults, with each environment variable that is set taking its place.
    pub fn from_env() -> Result<Timeouts> {
        let read = crate::duration::from_env;
        Ok(Timeouts {
            connect: read(EnvVars::EVOCTL_AWS_CONNECT_TIMEOUT, Self::DEFAULT.connect)?,
            attempt: read(EnvVars::EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT, Self::DEFAULT.attempt)?,
            operation: read(EnvVars::EVOCTL_AWS_OPERATION_TIMEOUT, Self::DEFAULT.operation)?,
        })
    }

    fn sdk(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// The retry configuration: the user's mode and attempts where the environment or profile set
/// them (validated: a bad value is a usage error naming its source), evoctl's default attempts
/// otherwise.
pub fn retry_config(env: &Env, profiles: Option<&EnvConfigSections>) -> Result<RetryConfig> {
    let invalid = |error: String, fix: &str| Error::usage(format!("invalid AWS retry setting: {error}"), fix);
    let attempts = EnvConfigValue::new()
        .env(EnvVars::AWS_MAX_ATTEMPTS)
        .profile(ProfileKeys::MAX_ATTEMPTS)
        .validate(env, profiles, |value| match value.trim().parse::<u32>() {
            Ok(0) => Err(SettingError("max attempts must be at least 1".into())),
            Ok(n) => Ok(n),
            Err(e) => Err(SettingError(format!("`{value}` is not a number of attempts ({e})"))),
        })
        .map_err(|e| {
            invalid(
                e.to_string(),
                "set AWS_MAX_ATTEMPTS (or max_attempts in the profile) to a whole number of at least 1, or unset it",
            )
        })?;
    let mode = EnvConfigValue::new()
        .env(EnvVars::AWS_RETRY_MODE)
        .profile(ProfileKeys::RETRY_MODE)
        .validate(env, profiles, |value| {
            RetryMode::from_str(value.trim()).map_err(|e| SettingError(format!("`{value}`: {e}")))
        })
        .map_err(|e| {
            invalid(
                e.to_string(),
                "set AWS_RETRY_MODE (or retry_mode in the profile) to standard or adaptive, or unset it",
            )
        })?;
    let base = match mode {
        Some(RetryMode::Adaptive) => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    };
    Ok(base.with_max_attempts(attempts.unwrap_or(MAX_ATTEMPTS)))
}

/// A bad value in the environment or profile, before its source is attached.
#[derive(Debug)]
struct SettingError(String);

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingError {}

/// A client of `$service` for `config`, with evoctl's retry classifier added to the SDK's and
/// its retries made visible ([`retries`]).
macro_rules! client {
    ($service:ident, $config:expr) => {
        $service::Client::from_conf(
            $service::config::Builder::from($config)
                .retry_classifier(trust::UntrustedCertificate)
                .interceptor(retries::RetryNotice)
                .build(),
        )
    };
}

/// A loaded SDK configuration and the clients built from it (each built once, then shared).
#[derive(Debug, Clone)]
pub struct Aws {
    config: SdkConfig,
    settings: AwsSettings,
    /// The account id the settings name (a role ARN), if any.
    account_hint: Option<String>,
    clients: Clients,
    ca_bundle: trust::CaBundle,
    websocket_tls: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

#[derive(Debug, Clone, Default)]
struct Clients {
    ecs: OnceLock<aws_sdk_ecs::Client>,
    autoscaling: OnceLock<aws_sdk_applicationautoscaling::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    logs: OnceLock<aws_sdk_cloudwatchlogs::Client>,
    sts: OnceLock<aws_sdk_sts::Client>,
    lambda: OnceLock<aws_sdk_lambda::Client>,
    kms: OnceLock<aws_sdk_kms::Client>,
}

impl Aws {
    /// Resolve credentials/region/endpoints once; clients share the result.
    pub async fn load(settings: &AwsSettings) -> Result<Aws> {
        let (env, fs) = (Env::real(), Fs::real());
        // The profile files as the SDK reads them; a file that does not parse is left for the
        // SDK's own credential chain to report.
        let loaded =
            aws_config::profile::load(&fs, &env, &Default::default(), settings.profile.clone().map(Cow::Owned)).await;
        // A profile named on purpose (settings or AWS_PROFILE) must exist: checked before any call.
        let named = credentials::named_profile(&env, settings.profile.as_deref(), &settings.profile_named_by);
        if let Some((name, named_by)) = &named {
            credentials::check_profile(&env, loaded.as_ref().map_err(|err| err as _), name, named_by)?;
        }
        let profiles = loaded.ok();
        let retry = retry_config(&env, profiles.as_ref())?;
        let timeouts = Timeouts::from_env()?;
        let ca_bundle = trust::CaBundle::resolve(&env, profiles.as_ref())?;
        let http = ca_bundle.sdk_http_client()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // `app/evoctl` in every call's User-Agent: CloudTrail's userAgent names the tool.
            .app_name(aws_config::AppName::new("evoctl").expect("a valid app name"))
            .retry_config(retry.clone())
            .timeout_config(timeouts.sdk())
            .http_client(http.clone());
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let mut config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::usage(
                "no AWS region configured",
                "pass --region, set region under [aws] (or env.NAME.aws) in evoctl.toml, or export AWS_REGION",
            ));
        }
        if let Some(profile) = &settings.profile {
            // As `aws --profile NAME`: a profile named on purpose supplies the credentials, not
            // keys left in the environment (its role_arn/source_profile, SSO or
            // credential_process included).
            let provider_config = aws_config::provider_config::ProviderConfig::without_region()
                .with_region(config.region().cloned())
                .with_http_client(http.clone())
                .with_retry_config(retry.clone())
                .with_timeout_config(timeouts.sdk());
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .configure(&provider_config)
                .profile_name(profile)
                .build();
            config = config.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
        }
        // A chain that finds nothing says where it looked.
        if let Some(chain) = config.credentials_provider() {
            let explained = credentials::SaysWhereItLooked::wrap(&env, chain, named);
            config = config.into_builder().credentials_provider(SharedCredentialsProvider::new(explained)).build();
        }
        if let Some(role) = &settings.role_arn {
            let mut assume = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(settings.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME))
                .configure(&config);
            if let Some(external_id) = &settings.external_id {
                assume = assume.external_id(external_id);
            }
            let provider = assume.build().await;
            config = config.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
        }
        // The account the credentials act in, when the settings say (a role ARN, evoctl's or
        // the profile's own); otherwise it is learnt from the ARNs AWS answers with.
        let role_account = settings.role_arn.clone().or_else(|| {
            let (profiles, name) = (profiles.as_ref()?, settings.profile.as_deref()?);
            profiles.get_profile(name)?.get("role_arn").map(str::to_owned)
        });
        let account_hint = role_account.and_then(|arn| arn.split(':').nth(4).map(str::to_owned));
        tracing::info!(
            region = config.region().map(Region::as_ref),
            profile = settings.profile.as_deref(),
            endpoint_override = config.endpoint_url(),
            max_attempts = retry.max_attempts(),
            retry_mode = ?retry.mode(),
            ?timeouts,
            "AWS configuration loaded"
        );
        Ok(Aws {
            config,
            settings: settings.clone(),
            account_hint,
            clients: Clients::default(),
            ca_bundle,
            websocket_tls: Arc::default(),
        })
    }

    /// The TLS settings for the data-channel websocket: the roots the SDK trusts.
    pub fn websocket_tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(config) = self.websocket_tls.get() {
            return Ok(Arc::clone(config));
        }
        let config = self.ca_bundle.websocket_tls()?;
        Ok(Arc::clone(self.websocket_tls.get_or_init(|| config)))
    }

    /// The region requests go to.
    pub fn region(&self) -> &str {
        self.config.region().map(Region::as_ref).unwrap_or_default()
    }

    /// The profile named by flag or config file, if any.
    pub fn profile(&self) -> Option<&str> {
        self.settings.profile.as_deref()
    }

    /// The account id the settings name (the role ARN's, evoctl's or the profile's), if any.
    pub fn account_hint(&self) -> Option<&str> {
        self.account_hint.as_deref()
    }

    /// How these credentials were configured, for messages: e.g. "account 111111111111
    /// (profile alinhou-staging, us-east-1)".
    pub fn describe(&self) -> String {
        let mut how = Vec::new();
        if let Some(profile) = &self.settings.profile {
            how.push(format!("profile {profile}"));
        }
        if let Some(role) = &self.settings.role_arn {
            how.push(format!("role {role}"));
        }
        if how.is_empty() {
            how.push("the default credential chain".to_owned());
        }
        how.push(self.region().to_owned());
        match &self.account_hint {
            Some(account) => format!("account {account} ({})", how.join(", ")),
            None => how.join(", "),
        }
    }

    /// The ECS endpoint the SDK's own endpoint resolution gives for this configuration: the
    /// override when one is set, otherwise the partition's (China, GovCloud), FIPS and
    /// dual-stack rules for the region.
    pub fn ecs_endpoint(&self) -> Result<String> {
        let override_url = std::env::var(EnvVars::AWS_ENDPOINT_URL_ECS)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| self.config.endpoint_url().map(str::to_owned));
        ecs_endpoint(
            self.region(),
            self.config.use_fips().unwrap_or(false),
            self.config.use_dual_stack().unwrap_or(false),
            override_url,
        )
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        self.clients.ecs.get_or_init(|| client!(aws_sdk_ecs, &self.config)).clone()
    }

    pub fn autoscaling(&self) -> aws_sdk_applicationautoscaling::Client {
        self.clients.autoscaling.get_or_init(|| client!(aws_sdk_applicationautoscaling, &self.config)).clone()
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        self.clients.ssm.get_or_init(|| client!(aws_sdk_ssm, &self.config)).clone()
    }

    /// An SSM client for `region` with these credentials (the shared one when it is this
    /// configuration's own region): a parameter is read in the region its ARN names.
    pub fn ssm_in(&self, region: &str) -> aws_sdk_ssm::Client {
        if region == self.region() {
            return self.ssm();
        }
        aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&self.config)
                .region(Region::new(region.to_owned()))
                .retry_classifier(trust::UntrustedCertificate)
                .interceptor(retries::RetryNotice)
                .build(),
        )
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        self.clients.logs.get_or_init(|| client!(aws_sdk_cloudwatchlogs, &self.config)).clone()
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        self.clients.sts.get_or_init(|| client!(aws_sdk_sts, &self.config)).clone()
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        self.clients.lambda.get_or_init(|| client!(aws_sdk_lambda, &self.config)).clone()
    }

    pub fn kms(&self) -> aws_sdk_kms::Client {
        self.clients.kms.get_or_init(|| client!(aws_sdk_kms, &self.config)).clone()
    }
}

/// ECS's endpoint for `region`, from the SDK's endpoint rules.
pub fn ecs_endpoint(region: &str, fips: bool, dual_stack: bool, override_url: Option<String>) -> Result<String> {
    use aws_sdk_ecs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    let params = Params::builder()
        .region(region)
        .use_fips(fips)
        .use_dual_stack(dual_stack)
        .set_endpoint(override_url)
        .build()
        .map_err(|e| Error::usage(format!("cannot resolve the ECS endpoint: {e}"), "check the region"))?;
    let resolver = DefaultResolver::new();
    let endpoint = futures::executor::block_on(resolver.resolve_endpoint(&params)).map_err(|e| {
        Error::usage(
            format!("no ECS endpoint for region {region} (FIPS {fips}, dual-stack {dual_stack}): {e}"),
            "check --region and AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT",
        )
    })?;
    Ok(endpoint.url().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ecs_endpoint_follows_the_partition_fips_and_dual_stack() {
        let cases = [
            ("us-east-1", false, false, "https://ecs.us-east-1.amazonaws.com"),
            ("cn-north-1", false, false, "https://ecs.cn-north-1.amazonaws.com.cn"),
            ("us-east-1", true, false, "https://ecs-fips.us-east-1.amazonaws.com"),
            ("us-east-1", false, true, "https://ecs.us-east-1.api.aws"),
            ("us-gov-west-1", false, false, "https://ecs.us-gov-west-1.amazonaws.com"),
        ];
        for (region, fips, dual, want) in cases {
            assert_eq!(ecs_endpoint(region, fips, dual, None).unwrap(), want, "{region} fips {fips} dual {dual}");
        }
        assert_eq!(
            ecs_endpoint("us-east-1", false, false, Some("http://127.0.0.1:9".into())).unwrap(),
            "http://127.0.0.1:9",
            "an override wins"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_slice(pairs)
    }

    fn profiles(text: &str) -> EnvConfigSections {
        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        let files = EnvConfigFiles::builder().with_file(EnvConfigFileKind::Config, &path).build();
        let env = Env::from_slice(&[]);
        futures::executor::block_on(aws_config::profile::load(&Fs::real(), &env, &files, None)).unwrap()
    }

    #[test]
    fn the_users_retry_settings_win_and_bad_ones_are_usage_errors() {
        let none = retry_config(&env(&[]), None).unwrap();
        assert_eq!((none.max_attempts(), none.mode()), (MAX_ATTEMPTS, RetryMode::Standard));
        let profile = profiles("[default]\nmax_attempts = 2\n");
        assert_eq!(retry_config(&env(&[]), Some(&profile)).unwrap().max_attempts(), 2);
        let both = retry_config(&env(&[("AWS_MAX_ATTEMPTS", "5")]), Some(&profile)).unwrap();
        assert_eq!(both.max_attempts(), 5, "the environment before the profile");
        let adaptive = retry_config(&env(&[("AWS_RETRY_MODE", "adaptive")]), None).unwrap();
        assert_eq!((adaptive.max_attempts(), adaptive.mode()), (MAX_ATTEMPTS, RetryMode::Adaptive));

        let err = retry_config(&env(&[("AWS_MAX_ATTEMPTS", "abc")]), None).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(err.to_string().contains("AWS_MAX_ATTEMPTS"), "{err}");
        let err = retry_config(&env(&[("AWS_RETRY_MODE", "bogus")]), None).unwrap_err();
        assert!(err.to_string().contains("AWS_RETRY_MODE"), "{err}");
        let err = retry_config(&env(&[]), Some(&profiles("[default]\nmax_attempts = 0\n"))).unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }
}
