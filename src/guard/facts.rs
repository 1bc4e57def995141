//! Everything the rules look at, read once per environment with every independent AWS call in
//! flight at the same time: the service, its live tasks, the scalable target with its scheduled
//! actions and policies, the container's settings from the task definition (the secrets the
//! isolation rules compare read with the caller's credentials, then everything reduced to
//! fingerprints by [`super::compared`], so no secret value is kept), the app Lambda's
//! environment, the webhook secret's presence, and the conflict lines of the environment's own
//! streams of the log group.
//!
//! Any read that fails makes that environment's collection fail (and every environment of a
//! chain whose shared reads failed): an audit must never report "clean" from partial facts.

use super::auth_state::{AuthState, STORE_VARIABLES};
use super::compared::{COMPARED_VARIABLES, IsolationSettings, Known};
use super::conflicts::{self, ConflictEvidence};
use crate::aws::container_secrets::{self, Read};
use crate::aws::discovery::{self, LiveTask, ScalableRange, ServiceRef, ServiceState};
use crate::aws::scaling::{self, ScheduledAction};
use crate::aws::secrets::{self, SecretValue};
use crate::aws::taskdef::{self, ContainerSettings, EnvValue};
use crate::aws::{Aws, Fleet, sdk_failure};
use crate::config::{Environment, SecretRef};
use crate::error::{Error, Result};
use indexmap::IndexMap;
use std::time::Duration;

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
    /// Where the WhatsApp session's Signal keys live.
    pub auth_state: AuthState,
    pub app: Option<AppFacts>,
    pub webhook_secret: WebhookSecret,
    /// `None` when the container has no awslogs group.
    pub conflicts: Option<ConflictEvidence>,
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
        let conflicts = async {
            match &container.log_group {
                Some(group) => {
                    let source = crate::aws::logs::source_of(&ecs, target, &env.container, group).await?;
                    Ok::<_, Error>(Some(conflicts::read(&aws.logs(), &source, conflict_window).await?))
                }
                None => Ok(None),
            }
        };
        let (known, conflicts) = tokio::try_join!(known_environment(aws, &container), conflicts)?;
        let auth_state = AuthState::of(&known, &container.mounts);
        Ok::<_, crate::error::Error>((service, IsolationSettings::from_environment(&known), auth_state, conflicts))
    };
    let ((service, settings, auth_state, conflicts), tasks, app, secret) = tokio::try_join!(
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
        settings,
        auth_state,
        app,
        webhook_secret: secret,
        conflicts,
    })
}

/// Where the WhatsApp session of `container` in `task_definition` lives (its environment's
/// deciding secrets read as the audit reads them): what `redeploy` checks before a replacement.
pub async fn auth_state_of(aws: &Aws, task_definition: &str, container: &str) -> Result<AuthState> {
    let settings = taskdef::container_settings(&aws.ecs(), task_definition, container).await?;
    Ok(AuthState::of(&known_environment(aws, &settings).await?, &settings.mounts))
}

/// The container's environment as the audit knows it: plain values as they are; each secret of a
/// variable the rules compare (or that says where the session lives) read with the caller's credentials (in its own region) where they
/// may, and known by its full ARN where they may not; other secrets by ARN, unread.
async fn known_environment(aws: &Aws, container: &ContainerSettings) -> Result<IndexMap<String, Known>> {
    let each = container.environment.iter().map(|(name, value)| async move {
        let known = match value {
            EnvValue::Plain(value) => Known::Plain(value.clone()),
            EnvValue::Reference(from) => {
                match container_secrets::qualify(from, container.task_definition_arn.as_deref()) {
                    None => Known::Unread {
                        arn: from.clone(),
                        why: "not an SSM parameter or Secrets Manager secret ECS can resolve".into(),
                    },
                    Some(secret)
                        if !COMPARED_VARIABLES.contains(&name.as_str())
                            && !STORE_VARIABLES.contains(&name.as_str()) =>
                    {
                        Known::Unread { arn: secret.arn, why: "not compared".into() }
                    }
                    Some(secret) => match container_secrets::read(aws, &secret).await? {
                        Read::Value(value) => Known::Read { value, arn: secret.arn },
                        Read::Unread(why) => Known::Unread { arn: secret.arn, why },
                    },
                }
            }
        };
        Ok::<_, Error>((name.clone(), known))
    });
    Ok(futures::future::try_join_all(each).await?.into_iter().collect())
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
