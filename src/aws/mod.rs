//! AWS access: SDK configuration, typed reads of ECS and Application Auto Scaling, and error
//! mapping.
//!
//! Credentials come from the standard chain (env, profiles, SSO, process, IMDS); endpoints honour
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`, which is how tests point evoctl at the
//! lab. This layer never prints: it returns values or [`crate::error::Error`]s.

pub mod discovery;
mod errors;
pub mod kms;
pub mod logs;
pub mod scaling;
pub mod secrets;
pub mod taskdef;

pub use errors::{AwsFailure, sdk_failure};

use crate::error::{Error, Result};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::sync::OnceLock;

/// Attempts per AWS call unless `AWS_MAX_ATTEMPTS` says otherwise (the SDK's standard retry
/// mode, exponential backoff with jitter; `AWS_RETRY_MODE=adaptive` for the adaptive one). Higher than the SDK's 3 so that an audit under heavy throttling still completes instead of
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

/// Where to take region and profile from, most specific first.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// A loaded SDK configuration and the clients built from it (each built once, then shared).
#[derive(Debug, Clone)]
pub struct Aws {
    config: SdkConfig,
    profile: Option<String>,
    clients: Clients,
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
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let attempts = std::env::var("AWS_MAX_ATTEMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(MAX_ATTEMPTS);
        // AWS_RETRY_MODE=adaptive adds the SDK's client-side token bucket (it engages at the
        // first throttling answer and then follows the rate AWS allows): for large fleets.
        let adaptive = std::env::var("AWS_RETRY_MODE").is_ok_and(|mode| mode.eq_ignore_ascii_case("adaptive"));
        let retry = if adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() };
        loader = loader.retry_config(retry.with_max_attempts(attempts));
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::usage(
                "no AWS region configured",
                "pass --region, set region under [aws] in evoctl.toml, or export AWS_REGION",
            ));
        }
        tracing::info!(
            region = config.region().map(Region::as_ref),
            profile = settings.profile.as_deref(),
            endpoint_override = config.endpoint_url(),
            "AWS configuration loaded"
        );
        Ok(Aws { config, profile: settings.profile.clone(), clients: Clients::default() })
    }

    /// The region requests go to.
    pub fn region(&self) -> &str {
        self.config.region().map(Region::as_ref).unwrap_or_default()
    }

    /// The profile named by flag or config file, if any.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The ECS endpoint in use (an override, or the regional default).
    pub fn ecs_endpoint(&self) -> String {
        let override_url =
            std::env::var("AWS_ENDPOINT_URL_ECS").ok().or_else(|| self.config.endpoint_url().map(str::to_owned));
        override_url.unwrap_or_else(|| format!("https://ecs.{}.amazonaws.com", self.region()))
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        self.clients.ecs.get_or_init(|| aws_sdk_ecs::Client::new(&self.config)).clone()
    }

    pub fn autoscaling(&self) -> aws_sdk_applicationautoscaling::Client {
        self.clients.autoscaling.get_or_init(|| aws_sdk_applicationautoscaling::Client::new(&self.config)).clone()
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        self.clients.ssm.get_or_init(|| aws_sdk_ssm::Client::new(&self.config)).clone()
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        self.clients.logs.get_or_init(|| aws_sdk_cloudwatchlogs::Client::new(&self.config)).clone()
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        self.clients.sts.get_or_init(|| aws_sdk_sts::Client::new(&self.config)).clone()
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        self.clients.lambda.get_or_init(|| aws_sdk_lambda::Client::new(&self.config)).clone()
    }

    pub fn kms(&self) -> aws_sdk_kms::Client {
        self.clients.kms.get_or_init(|| aws_sdk_kms::Client::new(&self.config)).clone()
    }
}
