//! `doctor`'s checks: an environment examined layer by layer, from AWS credentials down to the
//! instance's webhook, each OK / WARN / FAIL / SKIP with the evidence and the fix, each handed
//! to an observer the moment it is made (so a terminal shows it while the next runs). A layer
//! that fails stops the layers that need it (no exec checks without a running agent; nothing at
//! all without credentials, cluster and service); the AWS-only layers at the end (conflict
//! lines, isolation rules) always run when the service could be read. Every in-task layer
//! (exec-trial to webhook-delivery) runs in one exec session ([`crate::evolution::checkup`]).

use crate::aws::secrets::SecretValue;
use crate::aws::{Aws, Fleet, sdk_failure};
use crate::config::{Config, Environment};
use crate::error::{Error, Result};
use crate::evolution::api::{self, InstanceInfo, ServerInfo, WebhookRequest, WebhookRow};
use crate::evolution::checkup::{BaileysSeen, Checkup, CheckupEnd, MountSeen, ProbeSettings, Step};
use crate::evolution::probe::{self, WebhookProbe};
use crate::evolution::reasons::{Connection, RowFacts};
use crate::evolution::{Driver, logs};
use crate::exec::run::RunOptions;
use crate::exec::target::ExecTarget;
use crate::guard::auth_state::{self, AuthState};
use crate::guard::compared::ApiKey;
use crate::guard::facts::{self, EnvFacts, WebhookSecret};
use crate::guard::{self, CONFLICT_WINDOW};
use crate::output::sanitize::quote_line;
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
    SessionStore,
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
    pub const ALL: [Layer; 20] = [
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
        Layer::SessionStore,
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
            Layer::SessionStore => "session-store",
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

/// Something that sees each check the moment it is made.
pub type Observer<'o> = &'o mut (dyn FnMut(&Check) + Send);

/// The checks so far, each handed to the observer as it is made.
struct Checks<'o> {
    list: Vec<Check>,
    observer: Observer<'o>,
}

impl Checks<'_> {
    fn push(&mut self, check: Check) {
        (self.observer)(&check);
        self.list.push(check);
    }
    fn ok(&mut self, layer: Layer, evidence: impl Into<String>) {
        self.push(Check { layer, status: Status::Ok, evidence: evidence.into(), fix: None });
    }
    fn warn(&mut self, layer: Layer, evidence: impl Into<String>, fix: impl Into<String>) {
        self.push(Check { layer, status: Status::Warn, evidence: evidence.into(), fix: Some(fix.into()) });
    }
    /// A warning that needs no action (something that was wrong and has recovered).
    fn warn_only(&mut self, layer: Layer, evidence: impl Into<String>) {
        self.push(Check { layer, status: Status::Warn, evidence: evidence.into(), fix: None });
    }
    fn fail(&mut self, layer: Layer, evidence: impl Into<String>, fix: impl Into<String>) {
        self.push(Check { layer, status: Status::Fail, evidence: evidence.into(), fix: Some(fix.into()) });
    }
    fn error(&mut self, layer: Layer, err: &Error) {
        let fix = err.fix().unwrap_or("see the message").to_owned();
        self.fail(layer, err.to_string(), fix);
    }
    /// Mark every layer from `from` (inclusive) up to `until` (exclusive) as skipped.
    fn skip(&mut self, from: Layer, until: Option<Layer>, why: &str) {
        for layer in Layer::ALL.into_iter().filter(|l| *l >= from && until.is_none_or(|until| *l < until)) {
            self.push(Check { layer, status: Status::Skip, evidence: why.to_owned(), fix: None });
        }
    }
    fn failed(&self) -> bool {
        self.list.last().is_some_and(|c| c.status == Status::Fail)
    }
    /// The layer after the last one checked.
    fn next_layer(&self) -> Option<Layer> {
        match self.list.last() {
            Some(check) => check.layer.next(),
            None => Some(Layer::ALL[0]),
        }
    }
}

/// Examine `env` (the other environments of the config are read for the isolation layer),
/// handing each check to `observer` as it is made.
pub async fn diagnose(
    fleet: &Fleet,
    config: &Config,
    env: &Environment,
    options: &Options,
    observer: Observer<'_>,
) -> Diagnosis {
    let mut checks = Checks { list: Vec::new(), observer };
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
        checks.skip(Layer::ALL[checks.list.len()], None, why);
        return Diagnosis { env: env.name.clone(), checks: checks.list };
    }
    let everyone = facts::collect_all(fleet, &config.environments, CONFLICT_WINDOW).await;
    let index = config.environments.iter().position(|e| e.name == env.name).expect("env is in the config");
    let mine = match &everyone[index] {
        Ok(facts) => facts.clone(),
        Err(err) => {
            checks.error(Layer::Service, err);
            checks.skip(Layer::Scaling, None, "needs the service");
            return Diagnosis { env: env.name.clone(), checks: checks.list };
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
        Some(target) => in_task_layers(&mut checks, aws, env, &mine, &target, options).await,
        // Parked: the task layers said so and skipped every in-task layer.
        None if checks.list.iter().any(|c| c.layer == Layer::ExecTrial) => {}
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
    Diagnosis { env: env.name.clone(), checks: checks.list }
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

fn scaling_layer(checks: &mut Checks<'_>, env: &Environment, mine: &EnvFacts) {
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
fn task_layers(checks: &mut Checks<'_>, env: &Environment, mine: &EnvFacts) -> Option<ExecTarget> {
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

/// What `doctor` is asked to do beyond its layers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Probe the webhook receiver even when Evolution's log shows deliveries.
    pub probe: bool,
}

/// The in-task layers (exec-trial to webhook-delivery): what the AWS side says first (Evolution's
/// log of webhook deliveries, the configured webhook secret), then one exec session that runs
/// every check in the container, each layer judged and shown the moment its answer arrives.
async fn in_task_layers(
    checks: &mut Checks<'_>,
    aws: &Aws,
    env: &Environment,
    mine: &EnvFacts,
    target: &ExecTarget,
    options: &Options,
) {
    let reference = env.webhook.as_ref().and_then(|w| w.jwt_secret.clone());
    let secret = async {
        match &reference {
            Some(reference) => Some(crate::aws::secrets::fetch(aws, reference).await),
            None => None,
        }
    };
    let (deliveries, secret) = tokio::join!(delivery_window(aws, mine), secret);
    // The probe only when the log cannot say that deliveries work: it holds none at all, or
    // its latest record is a failure (a probe says whether it lasts).
    let log_says_nothing_works =
        deliveries.as_ref().is_ok_and(|d| d.as_ref().is_none_or(DeliveryWindow::nothing_shown_to_work));
    let probing = env.webhook.is_some() && (options.probe || log_says_nothing_works);
    let expected = match &secret {
        Some(Ok(SecretValue::Value(value))) if !value.is_empty() => Some(value.as_str()),
        _ => None,
    };
    let plan = Checkup {
        instance: &env.instance,
        key_is_a_default: !matches!(mine.settings.api_key, ApiKey::Set),
        // The row, whatever the config says: the delivery layer counts the records of its URL.
        webhook: true,
        probe: probing.then_some(ProbeSettings { expected, timeout: PROBE_TIMEOUT }),
        session_dir: mine.auth_state.volume_path(),
    };
    let mut judge = InTask {
        checks,
        env,
        mine,
        secret: secret.as_ref(),
        deliveries: &deliveries,
        plan: &plan,
        exists: false,
        no_route: false,
        memory: None,
        row: None,
        done: false,
    };
    let options = RunOptions {
        timeout_fix: Some(format!(
            "the container is slow to answer: check its errors (`evoctl logs {} --kind error`), then run doctor again",
            env.name
        )),
        ..RunOptions::new(IN_TASK_TIMEOUT)
    };
    let driver = Driver { aws, target, options };
    let ended = driver.checkup(&plan, &mut |step| judge.step(step)).await;
    judge.end(ended);
}

/// The bound on the one in-task session (the reach check takes up to 5 s, the probe up to 10 s).
const IN_TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// How long doctor's webhook probe waits for the receiver.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Evolution's own log of webhook deliveries over the last [`CONFLICT_WINDOW`], every
/// instance's: whose they are is decided once the instance's webhook row is read.
#[derive(Debug)]
struct DeliveryWindow {
    events: Vec<logs::WebhookEvent>,
    read_at_ms: i64,
}

impl DeliveryWindow {
    /// Nothing logged at all, or a failure as the latest word: the log alone cannot say that
    /// deliveries work now.
    fn nothing_shown_to_work(&self) -> bool {
        self.events
            .last()
            .is_none_or(|e| matches!(&e.logged, logs::Logged::Step(step) if step.outcome != logs::Outcome::Recovered))
    }
}

/// The webhook events of the streams the conflict layer read (this environment's, not the whole
/// group's); `None` without an awslogs group.
async fn delivery_window(aws: &Aws, mine: &EnvFacts) -> Result<Option<DeliveryWindow>> {
    let Some(source) = mine.conflicts.as_ref().map(|c| &c.source) else { return Ok(None) };
    let read_at_ms = crate::aws::logs::now_ms();
    let start_ms = read_at_ms - CONFLICT_WINDOW.as_millis() as i64;
    let window = crate::aws::logs::Window { source, pattern: logs::WEBHOOK_PATTERN, start_ms, limit: 10_000 };
    let read = crate::aws::logs::read(&aws.logs(), window).await?;
    Ok(Some(DeliveryWindow { events: logs::webhook_events(&read.lines), read_at_ms }))
}

/// The in-task layers judged as the checkup's steps arrive, in layer order: each step makes its
/// layer's check, and the layers a step decides without a call of their own (no instance: no
/// row to read, no webhook to compare or probe) follow it at once.
struct InTask<'c, 'o, 'a> {
    checks: &'c mut Checks<'o>,
    env: &'a Environment,
    mine: &'a EnvFacts,
    secret: Option<&'a Result<SecretValue>>,
    deliveries: &'a Result<Option<DeliveryWindow>>,
    plan: &'a Checkup<'a>,
    /// The instance exists and this Evolution process holds it.
    exists: bool,
    /// The whatsapp-reach layer failed: no fix offers a link.
    no_route: bool,
    /// The instance's live state (the process's memory), once read.
    memory: Option<String>,
    /// The instance's webhook row, once read.
    row: Option<WebhookRow>,
    /// Every in-task layer is judged.
    done: bool,
}

impl InTask<'_, '_, '_> {
    fn step(&mut self, step: Step) {
        if self.done {
            return;
        }
        let checks = &mut *self.checks;
        match step {
            Step::Trial { node } => {
                checks.ok(Layer::ExecTrial, format!("node {node} runs in the task's container"));
                if self.plan.session_dir.is_none() {
                    session_store_check(checks, self.env, &self.mine.auth_state, None);
                }
            }
            Step::SessionStore(seen) => session_store_check(checks, self.env, &self.mine.auth_state, Some(seen)),
            Step::Evolution(Ok(info), baileys) => checks.ok(Layer::Evolution, evolution_evidence(&info, &baileys)),
            Step::EvolutionWaiting { waited } => checks.warn(
                Layer::Evolution,
                format!(
                    "GET / has not answered in {:.1} s: Evolution 2.3.7 fetches WhatsApp Web's version on every GET / with no timeout, and the task cannot reach WhatsApp (whatsapp-reach below)",
                    waited.as_secs_f64()
                ),
                "give the task its route to WhatsApp (whatsapp-reach below); GET / answers again once it has one",
            ),
            Step::Evolution(Err(err), _) => {
                checks.error(Layer::Evolution, &err);
                self.stop("needs the Evolution API");
            }
            Step::ApiKey(result) => {
                api_key_check(checks, result, &self.mine.settings.api_key);
                if checks.failed() {
                    self.stop("needs a working API key");
                }
            }
            Step::Reach(Ok(reach)) => match reach.problem() {
                None => checks.ok(
                    Layer::WhatsappReach,
                    format!("TLS to {}:{} from the task in {} ms", reach.host, reach.port, reach.ms),
                ),
                Some((problem, fix)) => {
                    self.no_route = true;
                    checks.fail(Layer::WhatsappReach, problem, fix)
                }
            },
            Step::Reach(Err(err)) => checks.error(Layer::WhatsappReach, &err),
            Step::Instance(state) => {
                self.memory = state.as_ref().ok().cloned();
                self.exists = instance_check(checks, self.env, state, self.no_route);
                if !self.exists {
                    checks.skip(Layer::InstanceHealth, Some(Layer::Webhook), "needs the instance");
                    self.webhook(None);
                    self.delivery(None);
                }
            }
            Step::InstanceRow(rows) => {
                let seen = Seen { memory: self.memory.as_deref(), mine: self.mine, no_route: self.no_route };
                instance_health_check(checks, self.env, rows, seen);
                if !self.plan.webhook {
                    self.webhook(None);
                    if self.plan.probe.is_none() {
                        self.delivery(None);
                    }
                }
            }
            Step::Webhook(row) => {
                self.webhook(Some(row));
                if self.plan.probe.is_none() {
                    self.delivery(None);
                }
            }
            Step::Probe(answer) => self.delivery(Some(answer)),
        }
    }

    /// Skip every in-task layer after the one just judged.
    fn stop(&mut self, why: &str) {
        if let Some(next) = self.checks.next_layer() {
            self.checks.skip(next, Some(Layer::Conflicts), why);
        }
        self.done = true;
    }

    fn webhook(&mut self, row: Option<Result<Option<WebhookRow>>>) {
        if let Some(Ok(Some(found))) = &row {
            self.row = Some(found.clone());
        }
        webhook_check(self.checks, self.env, self.mine, self.exists, self.secret, row);
    }

    fn delivery(&mut self, probe: Option<Result<WebhookProbe>>) {
        match self.deliveries {
            Ok(window) => webhook_delivery_check(self.checks, self.env, window.as_ref(), self.row.as_ref(), probe),
            Err(err) => self.checks.error(Layer::WebhookDelivery, err),
        }
        self.done = true;
    }

    /// The session has ended: whatever layer it did not reach is said, and why.
    fn end(mut self, ended: Result<CheckupEnd>) {
        if self.done {
            return;
        }
        let Some(next) = self.checks.next_layer().filter(|l| *l < Layer::Conflicts) else { return };
        match ended {
            Err(err) if next == Layer::ExecTrial => {
                self.checks.error(Layer::ExecTrial, &err);
                self.stop("needs a working exec session");
            }
            Err(err) => {
                self.checks.error(next, &err);
                self.stop("needs the layer above");
            }
            Ok(end) => {
                self.checks.fail(
                    next,
                    format!(
                        "the checks in the container ended before this layer (exit {}){}",
                        end.status,
                        if end.stray.is_empty() { String::new() } else { format!(": {}", end.stray) }
                    ),
                    "check that the container has node 18 or later and that Evolution is up (its logs)",
                );
                self.stop("needs the layer above");
            }
        }
    }
}

/// Where the session's keys live (the task definition, as the `session-persistence` rule reads
/// it), and, when that is a volume, whether the task really has a network file system there.
fn session_store_check(
    checks: &mut Checks<'_>,
    env: &Environment,
    auth: &AuthState,
    seen: Option<std::result::Result<MountSeen, String>>,
) {
    if let Some(problem) = auth.problem() {
        return match env.protected {
            true => checks.fail(Layer::SessionStore, problem, auth_state::fix()),
            false => checks.warn(Layer::SessionStore, problem, auth_state::fix()),
        };
    }
    let dir = auth_state::INSTANCES_DIR;
    let fix = "check the container's mountPoints (containerPath /evolution/instances) and the task volume's efsVolumeConfiguration, then deploy";
    match seen {
        None => checks.ok(Layer::SessionStore, auth.short()),
        Some(Ok(mount)) if mount.fs_type.starts_with("nfs") || mount.fs_type == "efs" => checks.ok(
            Layer::SessionStore,
            format!(
                "{}; in the task {dir} is on {} ({} from {})",
                auth.short(),
                mount.mount_point,
                mount.fs_type,
                mount.source
            ),
        ),
        Some(Ok(mount)) => checks.fail(
            Layer::SessionStore,
            format!(
                "the task definition mounts EFS for {dir}, but in the task it is on {} ({} from {}): the task's own storage, lost with the task",
                mount.mount_point, mount.fs_type, mount.source
            ),
            fix,
        ),
        Some(Err(problem)) => {
            checks.warn(Layer::SessionStore, format!("{}; /proc/mounts could not be read in the task: {problem}", auth.short()), fix)
        }
    }
}

fn api_key_check(checks: &mut Checks<'_>, accepted: Result<bool>, key: &ApiKey) {
    match (accepted, key) {
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
}

/// Configured to run no task (scaling max 0): nothing there is to be linked.
fn runs_nothing(env: &Environment) -> bool {
    env.scaling.is_some_and(|s| s.max == 0)
}

/// How a layer's fix offers a link: not while the task cannot reach WhatsApp (`no_route`).
fn link(env: &Environment, no_route: bool, what: &str) -> String {
    if no_route {
        format!("{what} once the task reaches WhatsApp (whatsapp-reach above)")
    } else {
        format!("{what}: `evoctl connect {}`", env.name)
    }
}

/// The instance layer; whether the instance exists (and this process holds it).
fn instance_check(checks: &mut Checks<'_>, env: &Environment, state: Result<String>, no_route: bool) -> bool {
    let link = |what: &str| link(env, no_route, what);
    match state {
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
            checks.error(Layer::Instance, &err);
            false
        }
    }
}

/// The evolution layer's evidence: the release, the WhatsApp Web version `GET /` reported, and
/// the pairing facts: the Baileys the image ships and whether it handles `companion_reg_refresh`
/// (worded as connect's warning, [`crate::runbook::refresh::ignored`]).
fn evolution_evidence(info: &ServerInfo, baileys: &BaileysSeen) -> String {
    let mut evidence = format!("Evolution API {} (client {})", info.version, info.client_name);
    if let Some(web) = &info.whatsapp_web_version {
        evidence.push_str(&format!(", WhatsApp Web {}", quote_line(web, 40)));
    }
    match (&baileys.version, baileys.handles_refresh) {
        (Some(version), Some(true)) => evidence.push_str(&format!(
            "; Baileys {} handles companion_reg_refresh (a patched image)",
            quote_line(version, 40)
        )),
        (Some(version), _) => evidence.push_str(&format!("; {}", crate::runbook::refresh::ignored(version))),
        (None, _) => evidence.push_str("; no Baileys package found in the image"),
    }
    evidence
}

/// 2.3.7's report of instances created but stuck in `close` (evolution-foundation/evolution-api#2419):
/// an instance that is `close` and was never linked nor disconnected since it was created.
/// What the instance-health layer knows besides the row.
struct Seen<'a> {
    /// The live state the instance layer read (the process's memory).
    memory: Option<&'a str>,
    mine: &'a EnvFacts,
    /// No route to WhatsApp (whatsapp-reach failed): no fix offers a link.
    no_route: bool,
}

fn instance_health_check(checks: &mut Checks<'_>, env: &Environment, rows: Result<Vec<InstanceInfo>>, seen: Seen<'_>) {
    let no_route = seen.no_route;
    match rows {
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
            Some(row) => {
                let facts = RowFacts {
                    status: row.connection_status.as_deref(),
                    code: row.disconnection_reason_code,
                    at: row.disconnection_at.as_deref(),
                };
                let replaced = seen.mine.conflicts.as_ref().and_then(|c| c.last_seen_ms).map(|at| (440, at));
                let now = crate::aws::logs::now_ms();
                let connection = Connection::new(seen.memory, Some(facts), replaced, now, &env.name, &env.name);
                let mut evidence = format!(
                    "{} is {} in the process and {} in the database{}",
                    env.instance,
                    seen.memory.unwrap_or("-"),
                    row.connection_status.as_deref().unwrap_or("?"),
                    row.number()
                        .map(|n| match row.connection_status.as_deref() {
                            Some("open") => format!(", linked to {n}"),
                            _ => format!(", last linked to {n}"),
                        })
                        .unwrap_or_default()
                );
                match &connection.row_disconnect {
                    Some(d) => evidence.push_str(&format!("; last disconnect: {}", d.describe())),
                    None => evidence.push_str("; no disconnect recorded in the row"),
                }
                if let Some(d) = &connection.logged_disconnect {
                    evidence.push_str(&format!("; last replaced: {}", d.describe()));
                }
                if let Some(disagreement) = &connection.disagreement {
                    evidence.push_str(&format!("; {disagreement}"));
                }
                match (&connection.fix, connection.disagreement.is_some() || seen.memory != Some("open")) {
                    (Some(fix), true) if !no_route => checks.warn(Layer::InstanceHealth, evidence, fix.clone()),
                    (Some(_), true) => checks.warn(
                        Layer::InstanceHealth,
                        evidence,
                        "the task cannot reach WhatsApp (whatsapp-reach above): fix the route first",
                    ),
                    _ => checks.ok(Layer::InstanceHealth, evidence),
                }
            }
            None => checks.skip(Layer::InstanceHealth, Some(Layer::Webhook), "fetchInstances does not list it"),
        },
        Err(err) => checks.error(Layer::InstanceHealth, &err),
    }
}

/// The webhook layer: the configured secret usable, and the instance's row as evoctl.toml
/// describes it (`row`: what webhook/find answered, when it was read).
fn webhook_check(
    checks: &mut Checks<'_>,
    env: &Environment,
    mine: &EnvFacts,
    exists: bool,
    secret: Option<&Result<SecretValue>>,
    row: Option<Result<Option<WebhookRow>>>,
) {
    let set_fix = format!("`evoctl webhook set {}` after fixing jwt_secret under [env.{}.webhook]", env.name, env.name);
    let Some(config) = &env.webhook else {
        checks.ok(Layer::Webhook, "no webhook configured");
        return;
    };
    match &mine.webhook_secret {
        WebhookSecret::Present | WebhookSecret::NoWebhook => {}
        WebhookSecret::NotConfigured => return checks.fail(Layer::Webhook, "the webhook has no jwt_secret", set_fix),
        WebhookSecret::Missing(reference) => {
            return checks.fail(Layer::Webhook, format!("{reference} does not exist"), set_fix);
        }
        WebhookSecret::Empty(reference) => {
            return checks.fail(
                Layer::Webhook,
                format!("{reference} is blank: an empty jwt_key breaks every webhook"),
                set_fix,
            );
        }
    }
    if !exists {
        return checks.ok(Layer::Webhook, "configured with a jwt_secret (no instance yet to compare with)");
    }
    let secret = match secret {
        Some(Ok(SecretValue::Value(value))) => Some(value.as_str()),
        Some(Ok(SecretValue::Missing)) | None => None,
        Some(Err(err)) => return checks.error(Layer::Webhook, err),
    };
    let set = format!("`evoctl webhook set {}`", env.name);
    let wanted = WebhookRequest::from_config(config);
    match row {
        None => checks.skip(Layer::Webhook, Some(Layer::WebhookDelivery), "the webhook row was not read"),
        Some(Ok(Some(row))) if row.matches(&wanted, secret) => {
            checks.ok(Layer::Webhook, format!("{} with jwt_key, as configured", row.url))
        }
        Some(Ok(Some(row))) if row.headers.get("jwt_key").and_then(|k| k.as_str()).is_none_or(str::is_empty) => {
            checks.fail(Layer::Webhook, format!("{} has no or an empty jwt_key", row.url), set)
        }
        Some(Ok(Some(row))) => checks.warn(Layer::Webhook, row_differences(&row, &wanted, secret), set),
        Some(Ok(None)) => checks.warn(Layer::Webhook, "the instance has no webhook", set),
        Some(Err(err)) => checks.error(Layer::Webhook, &err),
    }
}

/// What of the instance's webhook row differs from evoctl.toml, by name (never a secret's value).
fn row_differences(row: &WebhookRow, wanted: &WebhookRequest, secret: Option<&str>) -> String {
    let mut differ = Vec::new();
    if row.url != wanted.url {
        differ.push(format!("its url is {} (evoctl.toml: {})", row.url, wanted.url));
    }
    if row.enabled != wanted.enabled {
        differ.push(format!("enabled is {} (evoctl.toml: {})", row.enabled, wanted.enabled));
    }
    if row.by_events != wanted.by_events {
        differ.push(format!("by_events is {} (evoctl.toml: {})", row.by_events, wanted.by_events));
    }
    if row.base64 != wanted.base64 {
        differ.push(format!("base64 is {} (evoctl.toml: {})", row.base64, wanted.base64));
    }
    let (have, want) = (api::event_set(&row.events), api::event_set(&wanted.events));
    if have != want {
        let missing: Vec<&str> = want.difference(&have).copied().collect();
        let extra: Vec<&str> = have.difference(&want).copied().collect();
        let mut said = Vec::new();
        if !missing.is_empty() {
            said.push(format!("it lacks {}", some_of(&missing)));
        }
        if !extra.is_empty() {
            said.push(format!("it also sends {}, which evoctl.toml does not list", some_of(&extra)));
        }
        differ.push(format!("its events differ ({})", said.join("; ")));
    }
    match (row.headers.get("jwt_key").and_then(|k| k.as_str()), secret) {
        (key, Some(secret)) if key != Some(secret) => differ.push("its jwt_key is not the configured secret".into()),
        (Some(_), None) => differ.push("its jwt_key could not be compared (the configured secret was not read)".into()),
        _ => {}
    }
    if differ.is_empty() {
        differ.push("its headers differ".into());
    }
    format!("the webhook of {} differs from evoctl.toml: {}", row.url, differ.join("; "))
}

/// Up to five names, then how many more.
fn some_of(names: &[&str]) -> String {
    match names.len() {
        0..=5 => names.join(", "),
        n => format!("{} and {} more", names[..5].join(", "), n - 5),
    }
}

/// What Evolution's own log says about webhook deliveries of the last [`CONFLICT_WINDOW`]
/// (`window`), and, when the log holds none (or with `--probe`), what a probe from the task got.
fn webhook_delivery_check(
    checks: &mut Checks<'_>,
    env: &Environment,
    window: Option<&DeliveryWindow>,
    row: Option<&WebhookRow>,
    probe: Option<Result<WebhookProbe>>,
) {
    let minutes = CONFLICT_WINDOW.as_secs() / 60;
    let reference = env.webhook.as_ref().and_then(|w| w.jwt_secret.clone());
    let scope = logs::Scope {
        instance: &env.instance,
        url: row.map(|r| r.url.as_str()),
        by_events: row.is_some_and(|r| r.by_events),
        jwt_fails: row.is_some_and(|r| r.headers.get("jwt_key").is_some_and(|k| k.as_str().is_none_or(str::is_empty))),
    };
    let failures = window.map(|w| logs::WebhookFailures::of_instance(&w.events, scope, w.read_at_ms));
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
        Some(f) if f.sends > 0 => format!(
            "{} delivery record(s) of {} in Evolution's log in the last {minutes} minutes, no failure",
            f.sends, env.instance
        ),
        Some(_) => format!("no delivery of {} in Evolution's log in the last {minutes} minutes", env.instance),
        None => "no awslogs group to read".into(),
    };
    let failed = failures.as_ref().filter(|f| f.failures() > 0);
    if let Some(at) = failed.and_then(|f| f.recovered_at_ms) {
        return checks.warn_only(
            Layer::WebhookDelivery,
            format!(
                "{logged}; recovered at {}: a later delivery got through",
                crate::timestamp::to_second(at).unwrap_or_else(|| "-".into())
            ),
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
    match probe {
        None => match failed {
            Some(f) => checks.fail(Layer::WebhookDelivery, logged, log_fix(f)),
            None => checks.ok(
                Layer::WebhookDelivery,
                format!("{logged} (no probe sent: Evolution's log shows deliveries; --probe sends one)"),
            ),
        },
        Some(Ok(answer)) => match answer.verdict(&env.name, None, reference.as_ref()) {
            probe::Verdict::Delivered { status, ms } if failed.is_some() => checks.warn_only(
                Layer::WebhookDelivery,
                format!(
                    "{logged}; recovered at {}: a probe to {} got {status} in {ms} ms",
                    crate::timestamp::to_second(crate::aws::logs::now_ms()).unwrap_or_else(|| "-".into()),
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
        Some(Err(err)) => match failed {
            Some(f) => checks.fail(Layer::WebhookDelivery, format!("{logged}; the probe failed: {err}"), log_fix(f)),
            None => checks.error(Layer::WebhookDelivery, &err),
        },
    }
}

fn isolation_layer(checks: &mut Checks<'_>, config: &Config, env: &Environment, everyone: &[Result<EnvFacts>]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(events: &[&str], jwt_key: Option<&str>) -> WebhookRow {
        let mut headers = serde_json::Map::new();
        if let Some(key) = jwt_key {
            headers.insert("jwt_key".into(), serde_json::Value::String(key.into()));
        }
        WebhookRow {
            url: "https://app.example/hook".into(),
            enabled: true,
            events: events.iter().map(|e| e.to_string()).collect(),
            by_events: true,
            base64: false,
            headers,
        }
    }

    fn wanted(events: &[&str]) -> WebhookRequest {
        WebhookRequest {
            enabled: true,
            url: "https://app.example/hook".into(),
            by_events: true,
            base64: false,
            events: events.iter().map(|e| e.to_string()).collect(),
            headers: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_webhook_whose_events_differ_is_said_to_differ_in_its_events_not_its_url() {
        let said = row_differences(
            &row(&["MESSAGES_UPSERT", "QRCODE_UPDATED"], Some("k")),
            &wanted(&["MESSAGES_UPSERT", "CONNECTION_UPDATE"]),
            Some("k"),
        );
        assert_eq!(
            said,
            "the webhook of https://app.example/hook differs from evoctl.toml: its events differ (it lacks CONNECTION_UPDATE; it also sends QRCODE_UPDATED, which evoctl.toml does not list)"
        );
        let said = row_differences(&row(&[], Some("k")), &wanted(&["MESSAGES_UPSERT"]), Some("other"));
        assert!(said.contains("it also sends APPLICATION_STARTUP, "), "every event, cut: {said}");
        assert!(
            said.ends_with(" more, which evoctl.toml does not list); its jwt_key is not the configured secret"),
            "{said}"
        );
    }

    #[test]
    fn a_claimed_volume_the_task_does_not_have_fails_the_session_store() {
        let mut seen = Vec::new();
        let mut observer = |check: &Check| seen.push((check.status, check.evidence.clone()));
        let mut checks = Checks { list: Vec::new(), observer: &mut observer };
        let env = Environment::for_test("production", "p", 1, 1);
        let auth = AuthState::DatabaseAndVolume { path: "/evolution/instances".into(), file_system: "fs-1".into() };
        let mount =
            |fs_type: &str| MountSeen { source: "overlay".into(), mount_point: "/".into(), fs_type: fs_type.into() };
        session_store_check(&mut checks, &env, &auth, Some(Ok(mount("overlay"))));
        session_store_check(&mut checks, &env, &auth, Some(Ok(mount("nfs4"))));
        drop(checks);
        assert_eq!(seen[0].0, Status::Fail);
        assert_eq!(
            seen[0].1,
            "the task definition mounts EFS for /evolution/instances, but in the task it is on / (overlay from overlay): the task's own storage, lost with the task"
        );
        assert_eq!(seen[1].0, Status::Ok);
    }
}
