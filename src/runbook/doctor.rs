//! `doctor`'s checks: an environment examined layer by layer, from AWS credentials down to the
//! instance's webhook, each OK / WARN / FAIL / SKIP with the evidence and the fix. A layer that
//! fails stops the layers that need it (no exec checks without a running agent; nothing at all
//! without credentials, cluster and service); the AWS-only layers at the end (conflict lines,
//! isolation rules) always run when the service could be read.

use crate::aws::secrets::SecretValue;
use crate::aws::{Aws, Fleet, sdk_failure};
use crate::config::{Config, Environment};
use crate::error::{Error, Result};
use crate::evolution::api::{WebhookRequest, WebhookRow};
use crate::evolution::probe;
use crate::evolution::{Driver, logs};
use crate::exec::envelope::RunSpec;
use crate::exec::run::{Collected, RunOptions};
use crate::exec::target::ExecTarget;
use crate::guard::compared::ApiKey;
use crate::guard::facts::{self, EnvFacts, WebhookSecret};
use crate::guard::{self, CONFLICT_WINDOW};
use serde::Serialize;
use std::time::Duration;

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not checked: a layer it needs failed.
    Skip,
}

/// One layer's check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub layer: Layer,
    pub status: Status,
    pub evidence: String,
    pub fix: Option<String>,
}

/// Every layer in order.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub env: String,
    pub checks: Vec<Check>,
}

impl Diagnosis {
    /// No task runs and none is meant to (desired 0 within the configured scaling): the
    /// environment is parked, which is healthy.
    pub fn parked(&self) -> bool {
        self.checks.iter().any(|c| c.layer == Layer::Tasks && c.status == Status::Ok && c.evidence.starts_with(PARKED))
    }

    /// The first layer that failed, if any.
    pub fn first_broken(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == Status::Fail)
    }
}

/// How the tasks layer starts its evidence for a parked environment.
const PARKED: &str = "parked";

/// A layer of the diagnosis; the order of the variants is the order they are checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Credentials,
    Cluster,
    Service,
    Scaling,
    Tasks,
    TaskStatus,
    Platform,
    ExecEnabled,
    ExecAgent,
    ExecTrial,
    Evolution,
    ApiKey,
    WhatsappReach,
    Instance,
    InstanceHealth,
    Webhook,
    WebhookDelivery,
    Conflicts,
    Isolation,
}

impl Layer {
    /// Every layer, in the order they are checked.
    pub const ALL: [Layer; 19] = [
        Layer::Credentials,
        Layer::Cluster,
        Layer::Service,
        Layer::Scaling,
        Layer::Tasks,
        Layer::TaskStatus,
        Layer::Platform,
        Layer::ExecEnabled,
        Layer::ExecAgent,
        Layer::ExecTrial,
        Layer::Evolution,
        Layer::ApiKey,
        Layer::WhatsappReach,
        Layer::Instance,
        Layer::InstanceHealth,
        Layer::Webhook,
        Layer::WebhookDelivery,
        Layer::Conflicts,
        Layer::Isolation,
    ];

    /// The layer's name as reports show it (`exec-agent`).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Credentials => "credentials",
            Layer::Cluster => "cluster",
            Layer::Service => "service",
            Layer::Scaling => "scaling",
            Layer::Tasks => "tasks",
            Layer::TaskStatus => "task-status",
            Layer::Platform => "platform",
            Layer::ExecEnabled => "exec-enabled",
            Layer::ExecAgent => "exec-agent",
            Layer::ExecTrial => "exec-trial",
            Layer::Evolution => "evolution",
            Layer::ApiKey => "api-key",
            Layer::WhatsappReach => "whatsapp-reach",
            Layer::Instance => "instance",
            Layer::InstanceHealth => "instance-health",
            Layer::Webhook => "webhook",
            Layer::WebhookDelivery => "webhook-delivery",
            Layer::Conflicts => "conflicts",
            Layer::Isolation => "isolation",
        }
    }

    /// The layer checked after this one.
    fn next(self) -> Option<Layer> {
        Layer::ALL.iter().copied().find(|layer| *layer > self)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn ok(&mut self, layer: Layer, evidence: impl Into<String>) {
        self.0.push(Check { layer, status: Status::Ok, evidence: evidence.into(), fix: None });
    }
    fn warn(&mut self, layer: Layer, evidence: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check { layer, status: Status::Warn, evidence: evidence.into(), fix: Some(fix.into()) });
    }
    /// A warning that needs no action (something that was wrong and has recovered).
    fn warn_only(&mut self, layer: Layer, evidence: impl Into<String>) {
        self.0.push(Check { layer, status: Status::Warn, evidence: evidence.into(), fix: None });
    }
    fn fail(&mut self, layer: Layer, evidence: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check { layer, status: Status::Fail, evidence: evidence.into(), fix: Some(fix.into()) });
    }
    fn error(&mut self, layer: Layer, err: &Error) {
        let fix = err.fix().unwrap_or("see the message").to_owned();
        self.fail(layer, err.to_string(), fix);
    }
    /// Mark every layer from `from` (inclusive) up to `until` (exclusive) as skipped.
    fn skip(&mut self, from: Layer, until: Option<Layer>, why: &str) {
        for layer in Layer::ALL.into_iter().filter(|l| *l >= from && until.is_none_or(|until| *l < until)) {
            self.0.push(Check { layer, status: Status::Skip, evidence: why.to_owned(), fix: None });
        }
    }
    fn failed(&self) -> bool {
        self.0.last().is_some_and(|c| c.status == Status::Fail)
    }
}

/// Examine `env` (the other environments of the config are read for the isolation layer).
pub async fn diagnose(fleet: &Fleet, config: &Config, env: &Environment) -> Diagnosis {
    let mut checks = Checks(Vec::new());
    let aws = fleet.of(env);
    let ecs = aws.ecs();

    match aws.sts().get_caller_identity().send().await {
        Ok(me) => checks.ok(
            Layer::Credentials,
            format!("account {} as {} in {}", me.account().unwrap_or("?"), me.arn().unwrap_or("?"), aws.region()),
        ),
        Err(err) => checks.error(Layer::Credentials, &sdk_failure("GetCallerIdentity", err).into_error()),
    }
    if !checks.failed() {
        match ecs.describe_clusters().clusters(&env.cluster).send().await {
            Ok(out) => match out.clusters().iter().find(|c| c.status() == Some("ACTIVE")) {
                Some(_) => checks.ok(Layer::Cluster, format!("{} is ACTIVE", env.cluster)),
                None => checks.fail(
                    Layer::Cluster,
                    format!("cluster {} not found in {}", env.cluster, aws.region()),
                    "check `cluster` for this environment in evoctl.toml and the region",
                ),
            },
            Err(err) => checks.error(Layer::Cluster, &sdk_failure("DescribeClusters", err).into_error()),
        }
    }
    if checks.failed() {
        let why = "needs the layers above";
        checks.skip(Layer::ALL[checks.0.len()], None, why);
        return Diagnosis { env: env.name.clone(), checks: checks.0 };
    }
    let everyone = facts::collect_all(fleet, &config.environments, CONFLICT_WINDOW).await;
    let index = config.environments.iter().position(|e| e.name == env.name).expect("env is in the config");
    let mine = match &everyone[index] {
        Ok(facts) => facts.clone(),
        Err(err) => {
            checks.error(Layer::Service, err);
            checks.skip(Layer::Scaling, None, "needs the service");
            return Diagnosis { env: env.name.clone(), checks: checks.0 };
        }
    };
    let service = &mine.service;
    checks.ok(
        Layer::Service,
        format!(
            "{} desired {}, running {}, pending {} ({})",
            env.service,
            service.desired_count,
            service.running_count,
            service.pending_count,
            service.task_definition.as_deref().unwrap_or("no task definition")
        ),
    );
    scaling_layer(&mut checks, env, &mine);
    let reachable = task_layers(&mut checks, env, &mine);
    match reachable {
        Some(target) => evolution_layers(&mut checks, aws, env, &mine, &target).await,
        None if checks.0.iter().any(|c| c.layer == Layer::ExecTrial) => {}
        None => {
            checks.skip(Layer::ExecTrial, Some(Layer::Conflicts), "needs one running task with a running exec agent")
        }
    }
    match &mine.conflicts {
        Some(evidence) if evidence.is_loop && !evidence.goes_on_with(&mine.tasks) => checks.warn_only(
            Layer::Conflicts,
            format!(
                "a conflict/replaced loop ended at {} ({} lines in the last 15 minutes)",
                evidence.last_seen.as_deref().unwrap_or("-"),
                evidence.events
            ),
        ),
        Some(evidence) if evidence.is_loop => checks.fail(
            Layer::Conflicts,
            format!(
                "{} conflict/replaced lines in the last 15 minutes{}, the last at {}",
                evidence.events,
                evidence.period_seconds.map(|p| format!(", about every {p:.1} s per task")).unwrap_or_default(),
                evidence.last_seen.as_deref().unwrap_or("-")
            ),
            conflict_fix(config, env, &everyone),
        ),
        Some(evidence) => {
            checks.ok(Layer::Conflicts, format!("{} conflict/replaced lines in the last 15 minutes", evidence.events))
        }
        None => {
            checks.warn(Layer::Conflicts, "the container has no awslogs group", "configure awslogs for the container")
        }
    }
    isolation_layer(&mut checks, config, env, &everyone);
    Diagnosis { env: env.name.clone(), checks: checks.0 }
}

/// The audit's fix for the loop (the extra task to stop, or the other environment of the
/// number to bring down), when every environment could be read.
fn conflict_fix(config: &Config, env: &Environment, everyone: &[Result<EnvFacts>]) -> String {
    let all: Option<Vec<EnvFacts>> = everyone.iter().map(|f| f.as_ref().ok().cloned()).collect();
    let rule = guard::rules::find("conflict-loop").expect("a catalogue rule");
    all.and_then(|all| guard::evaluate(&config.environments, &all, &[rule], &[env]).into_iter().next())
        .map(|finding| finding.fix)
        .unwrap_or_else(|| format!("`evoctl audit {}` names what holds the number", env.name))
}

fn scaling_layer(checks: &mut Checks, env: &Environment, mine: &EnvFacts) {
    let range = mine.target.map(|t| format!("{}/{}", t.min_capacity, t.max_capacity)).unwrap_or_else(|| "none".into());
    let evidence = format!("target {range}, desired {}", mine.service.desired_count);
    match env.scaling {
        Some(want)
            if mine.target.map(|t| (t.min_capacity, t.max_capacity)) != Some((want.min as i32, want.max as i32))
                || mine.service.desired_count < want.min as i32
                || mine.service.desired_count > want.max as i32 =>
        {
            checks.fail(
                Layer::Scaling,
                format!("{evidence}; configured {want}"),
                format!("evoctl scale {} --apply", env.name),
            )
        }
        Some(want) => checks.ok(Layer::Scaling, format!("{evidence} (configured {want})")),
        None => checks.ok(Layer::Scaling, format!("{evidence} (no scaling configured)")),
    }
}

/// The task layers; the exec target when every one passed.
fn task_layers(checks: &mut Checks, env: &Environment, mine: &EnvFacts) -> Option<ExecTarget> {
    let tasks = &mine.tasks;
    let desired = mine.service.desired_count;
    if tasks.is_empty() && desired == 0 && env.scaling.is_none_or(|s| s.min == 0) {
        // Parked: nothing runs and nothing is meant to; the in-task layers have nothing to examine.
        let configured =
            env.scaling.map(|s| format!("configured {s}")).unwrap_or_else(|| "no scaling configured".into());
        checks.ok(Layer::Tasks, format!("{PARKED}: no live task, desired 0 ({configured})"));
        checks.skip(Layer::TaskStatus, Some(Layer::Conflicts), "parked: no task to examine");
        return None;
    }
    if tasks.len() != 1 {
        let listed: Vec<String> = tasks.iter().map(|t| format!("{} {}", t.id, t.last_status)).collect();
        let (evidence, fix) = if tasks.is_empty() && desired == 0 {
            (
                format!("no live task, desired 0 ({} is configured to run one)", env.name),
                format!("`evoctl scale {} --apply`", env.name),
            )
        } else if tasks.is_empty() {
            (
                format!("no live task, desired {desired}"),
                format!("ECS has not started it yet: `evoctl status {}` shows the service's tasks", env.name),
            )
        } else {
            (
                format!("{} live tasks: {} (two connections on one number)", tasks.len(), listed.join(", ")),
                crate::aws::discovery::stop_extra_fix(&env.name, tasks, 1)
                    .unwrap_or_else(|| format!("`evoctl status {}`", env.name)),
            )
        };
        checks.fail(Layer::Tasks, evidence, fix);
        checks.skip(Layer::TaskStatus, Some(Layer::ExecTrial), "needs exactly one live task");
        return None;
    }
    let task = &tasks[0];
    checks.ok(Layer::Tasks, format!("one live task {}", task.id));
    let layers: [(Layer, bool, String, String); 4] = [
        (
            Layer::TaskStatus,
            task.last_status == "RUNNING",
            format!("lastStatus {}", task.last_status),
            format!("wait until it runs; `evoctl status {}`", env.name),
        ),
        (
            Layer::Platform,
            task.platform_version.as_deref().is_none_or(guard::rules::platform_ok),
            format!("platform version {}", task.platform_version.as_deref().unwrap_or("unknown")),
            "ECS Exec needs Fargate platform 1.4.0 or later: redeploy on LATEST".into(),
        ),
        (
            Layer::ExecEnabled,
            task.enable_execute_command,
            format!("enableExecuteCommand {} on the task", task.enable_execute_command),
            format!(
                "`aws ecs update-service --cluster {} --service {} --enable-execute-command --force-new-deployment`",
                env.cluster, env.service
            ),
        ),
        (
            Layer::ExecAgent,
            task.exec_agent(&env.container) == Some("RUNNING"),
            format!("ExecuteCommandAgent {}", task.exec_agent(&env.container).unwrap_or("missing")),
            "replace the task (`--force-new-deployment`); if the agent stops again check the task role's ssmmessages permissions and its route to ssmmessages".into(),
        ),
    ];
    for (layer, ok, evidence, fix) in layers {
        if ok {
            checks.ok(layer, evidence);
        } else {
            checks.fail(layer, evidence, fix);
            if let Some(next) = layer.next() {
                checks.skip(next, Some(Layer::ExecTrial), "needs the layer above");
            }
            return None;
        }
    }
    Some(ExecTarget {
        env: env.name.clone(),
        cluster: env.cluster.clone(),
        task: task.clone(),
        container: env.container.clone(),
    })
}

async fn evolution_layers(checks: &mut Checks, aws: &Aws, env: &Environment, mine: &EnvFacts, target: &ExecTarget) {
    let options = RunOptions::new(Duration::from_secs(60));
    let mut collected = Collected::default();
    let spec = RunSpec::argv(vec!["node".into(), "-v".into()]);
    match crate::exec::run::run(aws, target, &spec, &options, &mut collected).await {
        Ok(0) => checks
            .ok(Layer::ExecTrial, format!("`node -v` answered {}", String::from_utf8_lossy(&collected.stdout).trim())),
        Ok(status) => checks.fail(
            Layer::ExecTrial,
            format!("`node -v` exited {status}: {}", String::from_utf8_lossy(&collected.stderr).trim()),
            "the image needs node (Evolution's image has it)",
        ),
        Err(err) => checks.error(Layer::ExecTrial, &err),
    }
    if checks.failed() {
        checks.skip(Layer::Evolution, Some(Layer::Conflicts), "needs a working exec session");
        return;
    }
    let driver = Driver { aws, target, options };
    match driver.server_info().await {
        Ok(info) => {
            checks.ok(Layer::Evolution, format!("Evolution API {} (client {})", info.version, info.client_name))
        }
        Err(err) => checks.error(Layer::Evolution, &err),
    }
    if checks.failed() {
        checks.skip(Layer::ApiKey, Some(Layer::Conflicts), "needs the Evolution API");
        return;
    }
    match (driver.verify_creds().await, &mine.settings.api_key) {
        (Err(err), _) => checks.error(Layer::ApiKey, &err),
        (Ok(false), _) => checks.fail(
            Layer::ApiKey,
            "the key in the container is refused by POST /verify-creds",
            "check AUTHENTICATION_API_KEY in the task definition",
        ),
        (Ok(true), ApiKey::Unset | ApiKey::PublicDefault) => checks.fail(
            Layer::ApiKey,
            "the global key works but it is the image's public default from .env.example",
            "set a long random AUTHENTICATION_API_KEY for this environment and deploy",
        ),
        (Ok(true), ApiKey::CodeDefault) => checks.fail(
            Layer::ApiKey,
            "the global key works but AUTHENTICATION_API_KEY is set to \"\", so 2.3.7 uses its code default BQYHJGJHJ (public in its source)",
            "set a long random AUTHENTICATION_API_KEY for this environment and deploy",
        ),
        (Ok(true), ApiKey::Set) => checks.ok(Layer::ApiKey, "the container's own key is accepted (verify-creds)"),
    }
    if checks.failed() {
        checks.skip(Layer::WhatsappReach, Some(Layer::Conflicts), "needs a working API key");
        return;
    }
    match driver.whatsapp_reach(probe::REACH_TIMEOUT).await {
        Ok(reach) => match reach.problem() {
            None => checks.ok(
                Layer::WhatsappReach,
                format!("TLS to {}:{} from the task in {} ms", reach.host, reach.port, reach.ms),
            ),
            Some((problem, fix)) => checks.fail(Layer::WhatsappReach, problem, fix),
        },
        Err(err) => checks.error(Layer::WhatsappReach, &err),
    }
    // Linking needs the route to WhatsApp: without it, a link is not the fix.
    let no_route = checks.0.iter().any(|c| c.layer == Layer::WhatsappReach && c.status == Status::Fail);
    let link = |what: &str| {
        if no_route {
            format!("{what} once the task reaches WhatsApp (whatsapp-reach above)")
        } else {
            format!("{what}: `evoctl connect {}`", env.name)
        }
    };
    let state = driver.connection_state(&env.instance).await;
    let exists = match &state {
        Ok(state) if state == "open" => {
            checks.ok(Layer::Instance, format!("{} is open", env.instance));
            true
        }
        Ok(state) if runs_nothing(env) => {
            checks.ok(
                Layer::Instance,
                format!("{} is {state} ({} is configured to run no task)", env.instance, env.name),
            );
            true
        }
        Ok(state) => {
            checks.warn(Layer::Instance, format!("{} is {state}", env.instance), link("link it"));
            true
        }
        Err(Error::Evolution { status: 404, .. }) if runs_nothing(env) => {
            checks.ok(
                Layer::Instance,
                format!("no instance {} ({} is configured to run no task)", env.instance, env.name),
            );
            false
        }
        Err(Error::Evolution { status: 404, .. }) => {
            checks.warn(Layer::Instance, format!("no instance {}", env.instance), link("create and link it"));
            false
        }
        Err(err) => {
            checks.error(Layer::Instance, err);
            false
        }
    };
    instance_health_layer(checks, env, &driver, exists, no_route).await;
    // The configured webhook secret, read once for the webhook layer and the delivery probe.
    let secret = match env.webhook.as_ref().and_then(|w| w.jwt_secret.as_ref()) {
        Some(reference) if exists => Some(crate::aws::secrets::fetch(aws, reference).await),
        _ => None,
    };
    let row = webhook_layer(checks, env, mine, &driver, exists, secret.as_ref()).await;
    webhook_delivery_layer(checks, aws, env, mine, &driver, row.as_ref(), secret.as_ref()).await;
}

/// Configured to run no task (scaling max 0): nothing there is to be linked.
fn runs_nothing(env: &Environment) -> bool {
    env.scaling.is_some_and(|s| s.max == 0)
}

/// 2.3.7's report of instances created but stuck in `close` (evolution-foundation/evolution-api#2419):
/// an instance that is `close` and was never linked nor disconnected since it was created.
async fn instance_health_layer(
    checks: &mut Checks,
    env: &Environment,
    driver: &Driver<'_>,
    exists: bool,
    no_route: bool,
) {
    if !exists {
        return checks.skip(Layer::InstanceHealth, Some(Layer::Webhook), "needs the instance");
    }
    match driver.fetch_instances(Some(&env.instance)).await {
        Ok(rows) => match rows.first() {
            Some(row)
                if row.connection_status.as_deref() == Some("close")
                    && row.owner_jid.is_none()
                    && row.disconnection_at.is_none()
                    && !runs_nothing(env) =>
            {
                let evidence = format!(
                    "{} is close and has never been linked or disconnected since it was created{}",
                    env.instance,
                    row.created_at.as_deref().map(|at| format!(" ({at})")).unwrap_or_default()
                );
                if no_route {
                    return checks.warn(
                        Layer::InstanceHealth,
                        evidence,
                        "no QR can come while the task cannot reach WhatsApp (whatsapp-reach above): link it once it can",
                    );
                }
                checks.warn(
                    Layer::InstanceHealth,
                    evidence,
                    format!(
                        "`evoctl connect {}`; if no QR ever comes while whatsapp-reach is OK, this is 2.3.7's report of new instances stuck in close (evolution-foundation/evolution-api#2419): delete and re-create it (`evoctl instance delete {} --yes`, then `evoctl connect {}`)",
                        env.name, env.name, env.name
                    ),
                );
            }
            Some(row) => checks.ok(
                Layer::InstanceHealth,
                format!(
                    "{} is {}{}",
                    env.instance,
                    row.connection_status.as_deref().unwrap_or("?"),
                    row.number().map(|n| format!(", linked to {n}")).unwrap_or_default()
                ),
            ),
            None => checks.skip(Layer::InstanceHealth, Some(Layer::Webhook), "fetchInstances does not list it"),
        },
        Err(err) => checks.error(Layer::InstanceHealth, &err),
    }
}

/// What Evolution's own log says about this instance's webhook deliveries of the last
/// [`CONFLICT_WINDOW`] (its URL and its sends; another instance's records, which one server logs
/// beside them, are not counted). Failures followed by a delivery that worked are a warning that
/// says when it recovered; failures with nothing after them are checked with a probe from the
/// task (a probe that gets 2xx is that recovery). On a clean log, the probe.
async fn webhook_delivery_layer(
    checks: &mut Checks,
    aws: &Aws,
    env: &Environment,
    mine: &EnvFacts,
    driver: &Driver<'_>,
    row: Option<&WebhookRow>,
    secret: Option<&Result<SecretValue>>,
) {
    let minutes = CONFLICT_WINDOW.as_secs() / 60;
    let reference = env.webhook.as_ref().and_then(|w| w.jwt_secret.clone());
    let scope = logs::Scope {
        instance: &env.instance,
        url: row.map(|r| r.url.as_str()),
        by_events: row.is_some_and(|r| r.by_events),
        jwt_fails: row.is_some_and(|r| r.headers.get("jwt_key").is_some_and(|k| k.as_str().is_none_or(str::is_empty))),
    };
    // The same streams the conflict layer read: this environment's, not the whole group's.
    let failures = match mine.conflicts.as_ref().map(|c| &c.source) {
        Some(source) => {
            let read_at = crate::aws::logs::now_ms();
            let start_ms = read_at - CONFLICT_WINDOW.as_millis() as i64;
            let window = crate::aws::logs::Window { source, pattern: logs::WEBHOOK_PATTERN, start_ms, limit: 10_000 };
            match crate::aws::logs::read(&aws.logs(), window).await {
                Ok(read) => {
                    Some(logs::WebhookFailures::of_instance(&logs::webhook_events(&read.lines), scope, read_at))
                }
                Err(err) => return checks.error(Layer::WebhookDelivery, &err),
            }
        }
        None => None,
    };
    let logged = match &failures {
        Some(f) if f.failures() > 0 => {
            let last = f
                .last_status
                .map(|s| format!("last status {s}"))
                .unwrap_or_else(|| "no HTTP status (timeouts or network errors)".into());
            let message = f.last_message.as_deref().unwrap_or("");
            if f.jwt > 0 {
                format!(
                    "{} JWT generation failures of {} in the last {minutes} minutes: its jwt_key cannot sign, so nothing of the instance is delivered ({message})",
                    f.jwt, env.instance
                )
            } else {
                format!(
                    "Evolution's log, last {minutes} minutes: {} deliveries of {} lost ({} refused without retry), {} failed tries, {} recovered; {last} ({message})",
                    f.lost(),
                    env.instance,
                    f.not_retryable,
                    f.retries,
                    f.recovered
                )
            }
        }
        Some(f) if f.recovered > 0 => {
            format!("{} deliveries recovered after retries in the last {minutes} minutes", f.recovered)
        }
        Some(_) => format!("no delivery failures of {} in Evolution's log in the last {minutes} minutes", env.instance),
        None => "no awslogs group to read".into(),
    };
    let failed = failures.as_ref().filter(|f| f.failures() > 0);
    if let Some(at) = failed.and_then(|f| f.recovered_at_ms) {
        return checks.warn_only(
            Layer::WebhookDelivery,
            format!("{logged}; recovered at {}: a later delivery got through", stamp(at)),
        );
    }
    let log_fix = |f: &logs::WebhookFailures| match f.last_status {
        _ if f.jwt > 0 => format!("`evoctl webhook set {}` writes a usable jwt_key", env.name),
        Some(401 | 403) => probe::rejected_jwt_fix(&env.name, None, reference.as_ref()),
        Some(404) => format!(
            "check url (and by_events) under [env.{}.webhook], then `evoctl webhook set {}`",
            env.name, env.name
        ),
        _ => format!("check the receiver's health and logs; `evoctl webhook test {}` probes it now", env.name),
    };
    if row.is_none() || env.webhook.is_none() {
        return match failed {
            Some(f) => checks.fail(Layer::WebhookDelivery, logged, log_fix(f)),
            None => checks.ok(Layer::WebhookDelivery, format!("{logged} (no instance webhook to probe)")),
        };
    }
    // A secret that cannot be read only means the probe does not say which side differs.
    let expected = match secret {
        Some(Ok(SecretValue::Value(value))) if !value.is_empty() => Some(value.as_str()),
        _ => None,
    };
    match driver.webhook_probe(&env.instance, expected, PROBE_TIMEOUT).await {
        Ok(answer) => match answer.verdict(&env.name, None, reference.as_ref()) {
            probe::Verdict::Delivered { status, ms } if failed.is_some() => checks.warn_only(
                Layer::WebhookDelivery,
                format!(
                    "{logged}; recovered at {}: a probe to {} got {status} in {ms} ms",
                    stamp(crate::aws::logs::now_ms()),
                    answer.target.as_deref().unwrap_or("")
                ),
            ),
            probe::Verdict::Delivered { status, ms } => checks.ok(
                Layer::WebhookDelivery,
                format!("{logged}; a probe to {} got {status} in {ms} ms", answer.target.as_deref().unwrap_or("")),
            ),
            probe::Verdict::Broken { problem, fix } => {
                checks.fail(Layer::WebhookDelivery, format!("{logged}; a probe: {problem}"), fix)
            }
        },
        Err(err) => match failed {
            Some(f) => checks.fail(Layer::WebhookDelivery, format!("{logged}; the probe failed: {err}"), log_fix(f)),
            None => checks.error(Layer::WebhookDelivery, &err),
        },
    }
}

/// A time (ms since the Unix epoch) as RFC 3339 UTC.
fn stamp(ms: i64) -> String {
    guard::conflicts::stamp(ms).unwrap_or_else(|| "-".into())
}

/// How long doctor's webhook probe waits for the receiver.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook layer; the instance's webhook row as read (for the delivery layer).
async fn webhook_layer(
    checks: &mut Checks,
    env: &Environment,
    mine: &EnvFacts,
    driver: &Driver<'_>,
    exists: bool,
    secret: Option<&Result<SecretValue>>,
) -> Option<WebhookRow> {
    let set_fix = format!("`evoctl webhook set {}` after fixing jwt_secret under [env.{}.webhook]", env.name, env.name);
    // The row, whatever the config says (the delivery layer counts the records of its URL).
    let row = if exists {
        match driver.webhook_find(&env.instance).await {
            Ok(row) => row,
            Err(err) => {
                checks.error(Layer::Webhook, &err);
                return None;
            }
        }
    } else {
        None
    };
    let Some(config) = &env.webhook else {
        checks.ok(Layer::Webhook, "no webhook configured");
        return row;
    };
    match &mine.webhook_secret {
        WebhookSecret::Present | WebhookSecret::NoWebhook => {}
        WebhookSecret::NotConfigured => {
            checks.fail(Layer::Webhook, "the webhook has no jwt_secret", set_fix);
            return row;
        }
        WebhookSecret::Missing(reference) => {
            checks.fail(Layer::Webhook, format!("{reference} does not exist"), set_fix);
            return row;
        }
        WebhookSecret::Empty(reference) => {
            checks.fail(
                Layer::Webhook,
                format!("{reference} is blank: an empty jwt_key breaks every webhook"),
                set_fix,
            );
            return row;
        }
    }
    if !exists {
        checks.ok(Layer::Webhook, "configured with a jwt_secret (no instance yet to compare with)");
        return row;
    }
    let secret = match secret {
        Some(Ok(SecretValue::Value(value))) => Some(value.clone()),
        Some(Ok(SecretValue::Missing)) | None => None,
        Some(Err(err)) => {
            checks.error(Layer::Webhook, err);
            return row;
        }
    };
    match &row {
        Some(found) if found.matches(&WebhookRequest::from_config(config), secret.as_deref()) => {
            checks.ok(Layer::Webhook, format!("{} with jwt_key, as configured", found.url))
        }
        Some(found) if found.headers.get("jwt_key").and_then(|k| k.as_str()).is_none_or(str::is_empty) => checks.fail(
            Layer::Webhook,
            format!("{} has no or an empty jwt_key", found.url),
            format!("`evoctl webhook set {}`", env.name),
        ),
        Some(found) => checks.warn(
            Layer::Webhook,
            format!("{} differs from evoctl.toml", found.url),
            format!("`evoctl webhook set {}`", env.name),
        ),
        None => {
            checks.warn(Layer::Webhook, "the instance has no webhook", format!("`evoctl webhook set {}`", env.name))
        }
    }
    row
}

fn isolation_layer(checks: &mut Checks, config: &Config, env: &Environment, everyone: &[Result<EnvFacts>]) {
    let mut all = Vec::new();
    for (other, facts) in config.environments.iter().zip(everyone) {
        match facts {
            Ok(facts) => all.push(facts.clone()),
            Err(err) => {
                return checks.fail(
                    Layer::Isolation,
                    format!("could not read {}: {err}", other.name),
                    err.fix().unwrap_or("check that environment's settings").to_owned(),
                );
            }
        }
    }
    let rules: Vec<&guard::rules::Rule> = guard::rules::RULES.iter().collect();
    let findings = guard::evaluate(&config.environments, &all, &rules, &[env]);
    if findings.is_empty() {
        checks.ok(Layer::Isolation, format!("{} audit rules hold", rules.len()));
    } else {
        let listed: Vec<String> = findings.iter().map(|f| format!("{} ({})", f.rule, f.envs.join(","))).collect();
        checks.fail(
            Layer::Isolation,
            format!("audit findings: {}", listed.join(", ")),
            format!("`evoctl audit {}` lists each with its fix", env.name),
        );
    }
}
