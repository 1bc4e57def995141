//! The lab's AWS account: clusters, task definitions, services, tasks, scalable targets,
//! parameters, Lambdas and log events, plus the service scheduler that moves tasks through
//! their lifecycle.
//!
//! Everything is plain data behind one mutex; [`Account::advance`] is called on a short tick
//! and applies every transition whose time has come, so timing is realistic (ECS's task
//! lifecycle: PROVISIONING -> PENDING -> ACTIVATING -> RUNNING, then DEACTIVATING -> STOPPING ->
//! DEPROVISIONING -> STOPPED) yet fast in tests. Every transition is also appended to the
//! account's [`Account::timeline`], the oracle for ordering tests.

use super::scenario::{AccountSpec, ScalingSpec, Scenario};
use indexmap::IndexMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, with the fraction (the journal's timing).
pub fn now_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// What ExecuteCommand (or StartSession with a port document) granted: everything the agent
/// needs to run the session.
#[derive(Debug, Clone)]
pub struct ExecGrant {
    pub session_id: String,
    pub token: String,
    pub task_id: String,
    pub command: String,
    pub environment: IndexMap<String, String>,
    /// The agent's own target id (`ecs:<cluster>_<task>_<runtime id>`).
    pub target_id: String,
    /// The cluster's exec KMS key: the session opens with the KMS handshake.
    pub kms_key_id: Option<String>,
    /// A port-forwarding session (StartSession with a port document) instead of a command.
    pub port: Option<PortRequest>,
}

/// What a port document's StartSession asked for: the session properties the agent gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// `AWS-StartPortForwardingSession` or `AWS-StartPortForwardingSessionToRemoteHost`.
    pub document: String,
    pub port_number: String,
    pub local_port_number: String,
    /// The remote-host document's `host`.
    pub host: Option<String>,
}

/// How long lifecycle steps take.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// PROVISIONING to RUNNING, split evenly over PROVISIONING, PENDING and ACTIVATING.
    pub task_start_ms: u64,
    /// Stop request to STOPPED, split evenly over DEACTIVATING, STOPPING and DEPROVISIONING.
    pub task_stop_ms: u64,
    /// Task RUNNING to ExecuteCommandAgent RUNNING.
    pub agent_start_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub tags: IndexMap<String, String>,
    pub exec_kms_key_id: Option<String>,
    pub exec_logging: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TaskDefinition {
    pub family: String,
    pub revision: u32,
    pub container: String,
    pub image: String,
    pub log_group: Option<String>,
    /// The awslogs stream prefix (`None`: the option is not set).
    pub log_stream_prefix: Option<String>,
    pub log_driver: String,
    pub environment: IndexMap<String, String>,
    /// `secrets`: variable name -> `valueFrom` (a parameter of this account, by name or ARN).
    pub secrets: IndexMap<String, String>,
    pub init_process_enabled: bool,
    pub readonly_root_filesystem: bool,
    pub cpu: String,
    pub memory: String,
    /// Programs the image has beyond the lab's stand-in set (e.g. `script`, which session
    /// logging needs).
    pub image_tools: Vec<String>,
    /// `mountPoints`: container path -> volume name.
    pub mount_points: IndexMap<String, String>,
    /// `volumes`: name -> EFS file system id (`None`: a bind mount on the task's storage).
    pub volumes: IndexMap<String, Option<String>>,
}

impl TaskDefinition {
    /// Each mount's container path with its volume's EFS file system (if it is one).
    pub fn mounts(&self) -> Vec<(String, Option<String>)> {
        self.mount_points
            .iter()
            .map(|(path, volume)| (path.clone(), self.volumes.get(volume).cloned().flatten()))
            .collect()
    }

    pub fn key(&self) -> String {
        format!("{}:{}", self.family, self.revision)
    }

    /// The awslogs stream of the container in task `task_id`, as the driver names it:
    /// `PREFIX/CONTAINER/TASK_ID`, or the container's runtime id without a prefix.
    pub fn log_stream(&self, task_id: &str, runtime_id: &str) -> String {
        match &self.log_stream_prefix {
            Some(prefix) => format!("{prefix}/{}/{task_id}", self.container),
            None => runtime_id.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub task_definition: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub cluster: String,
    pub name: String,
    /// `family:revision` of the primary deployment.
    pub task_definition: String,
    pub desired_count: i32,
    pub maximum_percent: i32,
    pub minimum_healthy_percent: i32,
    pub enable_execute_command: bool,
    pub az_rebalancing: String,
    pub platform_version: String,
    pub circuit_breaker: bool,
    pub tags: IndexMap<String, String>,
    /// Newest first: `[0]` is PRIMARY, the rest ACTIVE (draining).
    pub deployments: Vec<Deployment>,
    pub created_ms: u64,
    /// The scheduler's event log, newest first, at most [`SERVICE_EVENTS`] (DescribeServices
    /// `events`).
    pub events: Vec<ServiceEvent>,
}

/// How many events DescribeServices returns at most (the newest).
pub const SERVICE_EVENTS: usize = 100;

/// One entry of a service's event log, worded as ECS's scheduler words it: `(service NAME) has
/// started 1 tasks: (task ID).`, `(service NAME) has stopped 1 running tasks: (task ID).`,
/// `(service NAME) has reached a steady state.`
#[derive(Debug, Clone)]
pub struct ServiceEvent {
    /// A UUID, as ECS gives each event.
    pub id: String,
    pub created_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub runtime_id: String,
    pub container_id: String,
    pub image: String,
    pub agent_status: Option<String>,
    pub agent_started_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub cluster: String,
    pub service: Option<String>,
    pub group: String,
    /// `family:revision`.
    pub task_definition: String,
    pub deployment_id: Option<String>,
    pub last_status: String,
    pub desired_status: String,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub stopping_ms: Option<u64>,
    pub stopped_ms: Option<u64>,
    pub stopped_reason: Option<String>,
    /// Who stopped it (`stopCode`): `ServiceSchedulerInitiated` or `UserInitiated` (StopTask).
    pub stop_code: Option<String>,
    /// When the current lifecycle step ends.
    pub next_step_ms: u64,
    /// Not managed by the service scheduler (a stuck or manually started task).
    pub pinned: bool,
    pub enable_execute_command: bool,
    pub platform_version: String,
    pub containers: Vec<Container>,
}

impl Task {
    /// Not STOPPED yet.
    pub fn is_live(&self) -> bool {
        self.last_status != "STOPPED"
    }
}

/// Every lastStatus an ECS task goes through, in order.
pub const LIFECYCLE: [&str; 8] =
    ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"];

/// One lifecycle transition of one task (its creation included), as the lab applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// When the lab applied it (ms since the Unix epoch; a seeded task's creation time).
    pub t_ms: u64,
    /// The account and region the task runs in.
    pub account: String,
    pub region: String,
    pub task_id: String,
    pub cluster: String,
    pub service: Option<String>,
    pub last_status: String,
    pub desired_status: String,
}

#[derive(Debug, Clone)]
pub struct ScalableTarget {
    pub resource_id: String,
    pub min: i32,
    pub max: i32,
    pub suspended: [bool; 3],
    pub created_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ScheduledAction {
    pub name: String,
    pub resource_id: String,
    pub schedule: String,
    pub min: Option<i32>,
    pub max: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub kind: String,
    pub value: String,
    /// The lab's callers may not read it (AccessDeniedException); tasks still get its value.
    pub read_denied: bool,
}

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub stream: String,
    pub timestamp_ms: u64,
    pub message: String,
}

/// The whole account.
#[derive(Debug)]
pub struct Account {
    pub account: String,
    pub region: String,
    pub timing: Timing,
    pub clusters: IndexMap<String, Cluster>,
    /// Keyed `family:revision`.
    pub task_definitions: IndexMap<String, TaskDefinition>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub scalable_targets: IndexMap<String, ScalableTarget>,
    pub scheduled_actions: Vec<ScheduledAction>,
    pub parameters: IndexMap<String, Parameter>,
    pub lambdas: IndexMap<String, IndexMap<String, String>>,
    /// Each Lambda's tags, by function name.
    pub lambda_tags: IndexMap<String, IndexMap<String, String>>,
    pub log_groups: IndexMap<String, Vec<LogEvent>>,
    /// Roles the lab's user may assume, by name, with the ExternalId each requires.
    pub roles: IndexMap<String, Option<String>>,
    /// Open ECS Exec sessions by session id.
    pub exec_sessions: IndexMap<String, ExecGrant>,
    /// The lab's own base URL (`http://127.0.0.1:PORT`), for stream URLs.
    pub endpoint: String,
    /// The host name stream URLs use instead of the endpoint's (`--stream-host`).
    pub stream_host: Option<String>,
    /// Every exec session token and KMS data key (base64 and hex) issued: tests check none leaks.
    pub issued_tokens: Vec<String>,
    /// The lab KMS's own key, under which it seals data keys.
    pub kms_master_key: [u8; 32],
    /// Every task's every lifecycle transition, in the order applied (`GET /_lab/timeline`).
    pub timeline: Vec<TimelineEntry>,
    id_counter: u64,
    id_seed: String,
}

impl Account {
    /// Build the primary account a scenario describes (its top-level tables).
    pub fn from_scenario(scenario: &Scenario, timing: Timing) -> Result<Account, String> {
        let (id, spec) = scenario.account_specs().swap_remove(0);
        Account::from_spec(&id, &spec, timing, &scenario.description)
    }

    /// An account-region with nothing in it (as every region of a real account starts).
    pub fn empty(account: &str, region: &str, timing: Timing, id_seed: &str) -> Account {
        Account {
            account: account.to_owned(),
            region: region.to_owned(),
            timing,
            clusters: IndexMap::new(),
            task_definitions: IndexMap::new(),
            services: Vec::new(),
            tasks: Vec::new(),
            scalable_targets: IndexMap::new(),
            scheduled_actions: Vec::new(),
            parameters: IndexMap::new(),
            lambdas: IndexMap::new(),
            lambda_tags: IndexMap::new(),
            log_groups: IndexMap::new(),
            roles: IndexMap::new(),
            exec_sessions: IndexMap::new(),
            endpoint: String::new(),
            stream_host: None,
            issued_tokens: Vec::new(),
            kms_master_key: {
                let mut key = [0u8; 32];
                aws_lc_rs::rand::fill(&mut key).expect("system randomness");
                key
            },
            timeline: Vec::new(),
            id_counter: 0,
            id_seed: id_seed.to_owned(),
        }
    }

    /// Build one account-region from its scenario tables, with its services already at their
    /// desired count. `id_seed` makes its ids reproducible (and distinct between accounts).
    pub fn from_spec(id: &str, scenario: &AccountSpec, timing: Timing, id_seed: &str) -> Result<Account, String> {
        let now = now_ms();
        let mut account = Account::empty(id, &scenario.region, timing, id_seed);
        account.roles = scenario.roles.iter().map(|(name, role)| (name.clone(), role.external_id.clone())).collect();
        for (name, spec) in &scenario.clusters {
            account.clusters.insert(
                name.clone(),
                Cluster {
                    name: name.clone(),
                    tags: spec.tags.clone(),
                    exec_kms_key_id: spec.exec_kms_key_id.clone(),
                    exec_logging: spec.exec_logging.clone(),
                },
            );
        }
        for (family, spec) in &scenario.task_definitions {
            let def = TaskDefinition {
                family: family.clone(),
                revision: spec.revision,
                container: spec.container.clone(),
                image: spec.image.clone(),
                log_group: spec.log_group.clone(),
                log_stream_prefix: match &spec.log_stream_prefix {
                    None => Some(spec.container.clone()),
                    Some(prefix) if prefix.is_empty() => None,
                    Some(prefix) => Some(prefix.clone()),
                },
                log_driver: spec.log_driver.clone(),
                environment: spec.environment.clone(),
                secrets: spec.secrets.clone(),
                init_process_enabled: spec.init_process_enabled,
                readonly_root_filesystem: spec.readonly_root_filesystem,
                cpu: spec.cpu.clone(),
                memory: spec.memory.clone(),
                image_tools: spec.image_tools.clone(),
                mount_points: spec.mount_points.clone(),
                volumes: spec.volumes.iter().map(|(name, v)| (name.clone(), v.efs.clone())).collect(),
            };
            if let Some(group) = &def.log_group {
                account.log_groups.entry(group.clone()).or_default();
            }
            account.task_definitions.insert(def.key(), def);
        }
        for (key, spec) in &scenario.services {
            let (cluster, name) =
                key.split_once('/').ok_or_else(|| format!("service key `{key}` must be \"cluster/name\""))?;
            if !account.clusters.contains_key(cluster) {
                return Err(format!("service `{key}`: no cluster `{cluster}` in the scenario"));
            }
            let task_definition = account
                .latest_task_definition(&spec.task_definition)
                .ok_or_else(|| format!("service `{key}`: no task definition family `{}`", spec.task_definition))?
                .key();
            let deployment = Deployment {
                id: account.deployment_id(),
                task_definition: task_definition.clone(),
                created_ms: now - 86_400_000,
            };
            account.services.push(Service {
                cluster: cluster.to_owned(),
                name: name.to_owned(),
                task_definition,
                desired_count: spec.desired_count as i32,
                maximum_percent: spec.maximum_percent as i32,
                minimum_healthy_percent: spec.minimum_healthy_percent as i32,
                enable_execute_command: spec.enable_execute_command,
                az_rebalancing: spec.az_rebalancing.clone(),
                platform_version: spec.platform_version.clone(),
                circuit_breaker: spec.circuit_breaker,
                tags: spec.tags.clone(),
                deployments: vec![deployment],
                created_ms: now - 30 * 86_400_000,
                events: Vec::new(),
            });
            if let Some(ScalingSpec { min, max }) = spec.scaling {
                let resource_id = format!("service/{key}");
                account.scalable_targets.insert(
                    resource_id.clone(),
                    ScalableTarget { resource_id, min, max, suspended: [false; 3], created_ms: now - 30 * 86_400_000 },
                );
            }
            let index = account.services.len() - 1;
            let agent = spec.agent_status.clone().unwrap_or_else(|| "RUNNING".into());
            for _ in 0..spec.desired_count {
                account.start_task(index, now - 7_200_000, Some(&agent), false);
            }
            for _ in 0..spec.extra_tasks {
                account.start_task(index, now - 600_000, Some(&agent), true);
            }
        }
        for (name, spec) in &scenario.scheduled_actions {
            account.scheduled_actions.push(ScheduledAction {
                name: name.clone(),
                resource_id: spec.resource_id.clone(),
                schedule: spec.schedule.clone(),
                min: spec.min,
                max: spec.max,
            });
        }
        for (name, spec) in &scenario.parameters {
            account.parameters.insert(
                name.clone(),
                Parameter { kind: spec.kind.clone(), value: spec.value.clone(), read_denied: spec.read_denied },
            );
        }
        for (name, spec) in &scenario.lambdas {
            account.lambdas.insert(name.clone(), spec.environment.clone());
            account.lambda_tags.insert(name.clone(), spec.tags.clone());
        }
        for (group, spec) in &scenario.log_groups {
            let events = account.log_groups.entry(group.clone()).or_default();
            for event in &spec.events {
                events.push(LogEvent {
                    stream: event.stream.clone(),
                    timestamp_ms: now.saturating_sub(event.age_seconds * 1000),
                    message: event.message.clone(),
                });
            }
            if let Some(generate) = &spec.generate {
                let total = u64::from(generate.streams) * u64::from(generate.lines);
                let span = generate.age_seconds * 1000;
                for n in 0..total {
                    let stream = n % u64::from(generate.streams.max(1));
                    let at = now.saturating_sub(span) + span * n / total.max(1);
                    events.push(LogEvent {
                        stream: format!("EvolutionService/EvolutionService/busy{stream:028x}"),
                        timestamp_ms: at,
                        message: format!(
                            "[Evolution API]    {} - Tue Dec 01 2026 20:44:34   VERBOSE  [ChannelStartupService] [string] busy line {n} of {total}: {}",
                            100 + stream,
                            "x".repeat(120)
                        ),
                    });
                }
                events.sort_by_key(|e| e.timestamp_ms);
            }
        }
        // Seeded tasks were created at different times in the past: keep the timeline in time order.
        account.timeline.sort_by_key(|entry| entry.t_ms);
        account.check_secrets()?;
        Ok(account)
    }

    /// What RegisterTaskDefinition and the ECS agent would refuse: a variable in both
    /// `environment` and `secrets`, and a secret whose parameter this account-region lacks (every
    /// task would stop with ResourceInitializationError).
    fn check_secrets(&self) -> Result<(), String> {
        for definition in self.task_definitions.values() {
            for (name, from) in &definition.secrets {
                if definition.environment.contains_key(name) {
                    return Err(format!(
                        "task definition {}: The secret name must be unique and not shared with any new or existing environment variables set on the container, such as '{name}'.",
                        definition.family
                    ));
                }
                if self.parameter(from).is_none() {
                    return Err(format!(
                        "task definition {}: secret {name} reads {from}, which is not a parameter of account {} in {}",
                        definition.family, self.account, self.region
                    ));
                }
            }
        }
        Ok(())
    }

    /// The parameter `reference` names: a name, or the ARN of a parameter of this account and
    /// region (whose resource is `parameter/` then the name without its leading `/`).
    pub fn parameter(&self, reference: &str) -> Option<(&String, &Parameter)> {
        let Some(rest) = reference.strip_prefix("arn:") else { return self.parameters.get_key_value(reference) };
        let fields: Vec<&str> = rest.splitn(5, ':').collect();
        let [_partition, "ssm", region, account, resource] = fields.as_slice() else { return None };
        let name = resource.strip_prefix("parameter/")?;
        if *region != self.region || *account != self.account {
            return None;
        }
        self.parameters.get_key_value(&format!("/{name}")).or_else(|| self.parameters.get_key_value(name))
    }

    /// A parameter's ARN.
    pub fn parameter_arn(&self, name: &str) -> String {
        format!("arn:aws:ssm:{}:{}:parameter/{}", self.region, self.account, name.trim_start_matches('/'))
    }

    /// The container's environment as the ECS agent sets it when a task of `definition` starts:
    /// its `environment`, and each of its `secrets` with the value of the parameter it names (read
    /// with the task execution role, which `read_denied` does not stop). Parameters do not change
    /// while the lab runs, so this is the environment every task of it started with.
    pub fn container_environment(&self, definition: &TaskDefinition) -> IndexMap<String, String> {
        let mut environment = definition.environment.clone();
        for (name, from) in &definition.secrets {
            if let Some((_, parameter)) = self.parameter(from) {
                environment.insert(name.clone(), parameter.value.clone());
            }
        }
        environment
    }

    /// A reproducible 32-hex-digit id (the same scenario yields the same ids in the same order).
    pub fn next_id(&mut self) -> String {
        self.id_counter += 1;
        let digest = Sha256::digest(format!("{}#{}", self.id_seed, self.id_counter));
        hex::encode(&digest[..16])
    }

    fn deployment_id(&mut self) -> String {
        let id = self.next_id();
        let digits: String = id.bytes().map(|b| char::from(b'0' + b % 10)).take(19).collect();
        format!("ecs-svc/{digits}")
    }

    pub fn latest_task_definition(&self, family: &str) -> Option<&TaskDefinition> {
        self.task_definitions.values().filter(|d| d.family == family).max_by_key(|d| d.revision)
    }

    /// Resolve `family`, `family:rev` or an ARN to a task definition.
    pub fn find_task_definition(&self, reference: &str) -> Option<&TaskDefinition> {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        match name.split_once(':') {
            Some(_) => self.task_definitions.get(name),
            None => self.latest_task_definition(name),
        }
    }

    pub fn arn(&self, kind: &str, path: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{kind}/{path}", self.region, self.account)
    }

    /// Accepts a cluster name or ARN.
    pub fn cluster_name(reference: &str) -> &str {
        reference.rsplit('/').next().unwrap_or(reference)
    }

    pub fn service_index(&self, cluster: &str, name: &str) -> Option<usize> {
        let name = name.rsplit('/').next().unwrap_or(name);
        self.services.iter().position(|s| s.cluster == cluster && s.name == name)
    }

    /// Start a task for service `index`. `started_at` in the past with an agent status makes it
    /// already RUNNING (scenario seeding); otherwise it goes through PROVISIONING.
    /// Returns its id.
    pub fn start_task(
        &mut self,
        index: usize,
        at_ms: u64,
        already_running_agent: Option<&str>,
        pinned: bool,
    ) -> String {
        let task = self.new_task(index, at_ms, already_running_agent, pinned);
        let id = task.id.clone();
        self.push_task(task, at_ms);
        id
    }

    fn new_task(&mut self, index: usize, at_ms: u64, already_running_agent: Option<&str>, pinned: bool) -> Task {
        let id = self.next_id();
        let runtime_suffix: String = self.next_id().bytes().map(|b| char::from(b'0' + b % 10)).take(10).collect();
        let container_id = self.next_id();
        let service = &self.services[index];
        let definition = &self.task_definitions[&service.task_definition];
        let running = already_running_agent.is_some();
        let container = Container {
            name: definition.container.clone(),
            runtime_id: format!("{id}-{runtime_suffix}"),
            container_id,
            image: definition.image.clone(),
            agent_status: match (service.enable_execute_command, already_running_agent) {
                (false, _) => None,
                (true, Some(status)) => Some(status.to_owned()),
                (true, None) => Some("PENDING".into()),
            },
            agent_started_ms: running.then_some(at_ms),
        };
        Task {
            id,
            cluster: service.cluster.clone(),
            service: Some(service.name.clone()),
            group: format!("service:{}", service.name),
            task_definition: service.task_definition.clone(),
            deployment_id: service.deployments.first().map(|d| d.id.clone()),
            last_status: if running { "RUNNING" } else { "PROVISIONING" }.into(),
            desired_status: "RUNNING".into(),
            created_ms: at_ms,
            started_ms: running.then_some(at_ms + 20_000),
            stopping_ms: None,
            stopped_ms: None,
            stopped_reason: None,
            stop_code: None,
            next_step_ms: if running { u64::MAX } else { at_ms + self.start_step() },
            pinned,
            enable_execute_command: service.enable_execute_command,
            platform_version: service.platform_version.clone(),
            containers: vec![container],
        }
    }

    fn push_task(&mut self, task: Task, t_ms: u64) {
        self.tasks.push(task);
        self.note(self.tasks.len() - 1, t_ms);
    }

    /// Append task `index`'s current state to the timeline.
    fn note(&mut self, index: usize, t_ms: u64) {
        let task = &self.tasks[index];
        self.timeline.push(TimelineEntry {
            t_ms,
            account: self.account.clone(),
            region: self.region.clone(),
            task_id: task.id.clone(),
            cluster: task.cluster.clone(),
            service: task.service.clone(),
            last_status: task.last_status.clone(),
            desired_status: task.desired_status.clone(),
        });
    }

    /// Each of the three start steps (PROVISIONING, PENDING, ACTIVATING).
    fn start_step(&self) -> u64 {
        self.timing.task_start_ms / 3
    }

    /// Each of the three stop steps (DEACTIVATING, STOPPING, DEPROVISIONING).
    fn stop_step(&self) -> u64 {
        self.timing.task_stop_ms / 3
    }

    /// Add a task to service `index`'s group that the scheduler leaves alone, in the given state,
    /// where it stays: a manual RunTask or a stuck deployment (desired RUNNING), or a task being
    /// replaced that has not finished draining (desired STOPPED, e.g. DEACTIVATING). Returns its id.
    pub fn add_pinned_task(
        &mut self,
        index: usize,
        now: u64,
        last_status: &str,
        desired_status: &str,
    ) -> Result<String, String> {
        let position = LIFECYCLE
            .iter()
            .position(|s| *s == last_status)
            .ok_or_else(|| format!("last_status `{last_status}` is none of {}", LIFECYCLE.join(", ")))?;
        let running_at = 3;
        match desired_status {
            "RUNNING" if position > running_at => {
                return Err(format!(
                    "a task whose desired_status is RUNNING is never {last_status} (that is a stopping state)"
                ));
            }
            "RUNNING" | "STOPPED" => {}
            other => return Err(format!("desired_status `{other}` is neither RUNNING nor STOPPED")),
        }
        let created = now.saturating_sub(30_000);
        let mut task = self.new_task(index, created, Some("RUNNING"), true);
        task.last_status = last_status.to_owned();
        task.desired_status = desired_status.to_owned();
        if position < running_at {
            task.started_ms = None;
        }
        for container in &mut task.containers {
            if container.agent_status.is_some() {
                let agent = match position {
                    p if p < running_at => "PENDING",
                    p if p <= running_at + 2 => "RUNNING",
                    _ => "STOPPED",
                };
                container.agent_status = Some(agent.into());
                if agent == "PENDING" {
                    container.agent_started_ms = None;
                }
            }
        }
        if desired_status == "STOPPED" {
            task.stopping_ms = Some(now.saturating_sub(1_000));
            task.stopped_reason = Some("Task stopped by deployment".into());
            task.stop_code = Some("ServiceSchedulerInitiated".into());
        }
        if last_status == "STOPPED" {
            task.stopped_ms = Some(now);
        }
        let id = task.id.clone();
        self.push_task(task, now);
        Ok(id)
    }

    /// Ask a task to stop; it drains through DEACTIVATING, STOPPING and DEPROVISIONING (a task
    /// still PROVISIONING has no container to stop: it only deprovisions).
    pub fn stop_task(&mut self, task_index: usize, reason: &str, now: u64) {
        self.stop_task_as(task_index, reason, "ServiceSchedulerInitiated", now);
    }

    /// StopTask: the task stops whoever started it (a task the scheduler leaves alone too, unless
    /// it is already stopping, where it stays as it was put).
    pub fn stop_task_by_user(&mut self, task_index: usize, reason: &str, now: u64) {
        let task = &mut self.tasks[task_index];
        if task.desired_status == "STOPPED" {
            return;
        }
        task.pinned = false;
        self.stop_task_as(task_index, reason, "UserInitiated", now);
    }

    fn stop_task_as(&mut self, task_index: usize, reason: &str, code: &str, now: u64) {
        let stop_step = self.stop_step();
        let task = &mut self.tasks[task_index];
        if task.desired_status == "STOPPED" {
            return;
        }
        task.desired_status = "STOPPED".into();
        task.stop_code = Some(code.to_owned());
        task.stopped_reason = Some(reason.to_owned());
        task.stopping_ms = Some(now);
        task.last_status = match task.last_status.as_str() {
            "PROVISIONING" => "DEPROVISIONING",
            _ => "DEACTIVATING",
        }
        .into();
        task.next_step_ms = now.saturating_add(stop_step);
        self.note(task_index, now);
    }

    /// Apply every lifecycle step that is due, then let each service reconcile. Pinned tasks
    /// stay as they are.
    pub fn advance(&mut self, now: u64) {
        let timing = self.timing;
        let (start_step, stop_step) = (self.start_step(), self.stop_step());
        let mut moved = Vec::new();
        for (index, task) in self.tasks.iter_mut().enumerate() {
            if task.pinned {
                continue;
            }
            for container in &mut task.containers {
                if task.last_status == "RUNNING"
                    && container.agent_status.as_deref() == Some("PENDING")
                    && task.started_ms.is_some_and(|s| now >= s + timing.agent_start_ms)
                {
                    container.agent_status = Some("RUNNING".into());
                    container.agent_started_ms = Some(now);
                }
            }
            if now < task.next_step_ms {
                continue;
            }
            let (next, step) = match task.last_status.as_str() {
                "PROVISIONING" => ("PENDING", start_step),
                "PENDING" => ("ACTIVATING", start_step),
                "ACTIVATING" => ("RUNNING", u64::MAX),
                "DEACTIVATING" => ("STOPPING", stop_step),
                "STOPPING" => ("DEPROVISIONING", stop_step),
                "DEPROVISIONING" => ("STOPPED", u64::MAX),
                _ => continue,
            };
            task.last_status = next.into();
            task.next_step_ms = now.saturating_add(step);
            match next {
                "RUNNING" => task.started_ms = Some(now),
                "STOPPED" => {
                    task.stopped_ms = Some(now);
                    for container in &mut task.containers {
                        if container.agent_status.is_some() {
                            container.agent_status = Some("STOPPED".into());
                        }
                    }
                }
                _ => {}
            }
            moved.push(index);
        }
        for index in moved {
            self.note(index, now);
        }
        for index in 0..self.services.len() {
            self.reconcile(index, now);
            self.note_steady_state(index, now);
        }
    }

    /// Add an event to service `index`'s log (newest first, the oldest beyond
    /// [`SERVICE_EVENTS`] dropped).
    fn service_event(&mut self, index: usize, now: u64, message: String) {
        let service = &mut self.services[index];
        let digest =
            Sha256::digest(format!("{}/{}#{}#{now}#{message}", service.cluster, service.name, service.events.len()));
        let hex = hex::encode(&digest[..16]);
        let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
        service.events.insert(0, ServiceEvent { id, created_ms: now, message });
        service.events.truncate(SERVICE_EVENTS);
    }

    /// The scheduler's report that the service runs as desired: every task of it RUNNING, as
    /// many as desired, no deployment still draining. Said once each time it becomes true.
    fn note_steady_state(&mut self, index: usize, now: u64) {
        let service = &self.services[index];
        let live: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| {
                t.cluster == service.cluster && t.service.as_deref() == Some(service.name.as_str()) && t.is_live()
            })
            .collect();
        let steady = live.len() == service.desired_count.max(0) as usize
            && live.iter().all(|t| t.last_status == "RUNNING" && t.desired_status == "RUNNING")
            && service.deployments.len() == 1;
        let message = format!("(service {}) has reached a steady state.", service.name);
        if steady && service.events.first().is_none_or(|e| e.message != message) {
            self.service_event(index, now, message);
        }
    }

    /// The scheduler's events for tasks it started and stopped in one reconciliation.
    fn note_scheduled(&mut self, index: usize, now: u64, started: &[String], stopped: &[String]) {
        let name = self.services[index].name.clone();
        let listed = |ids: &[String]| ids.iter().map(|id| format!("(task {id})")).collect::<Vec<_>>().join(" ");
        if !stopped.is_empty() {
            self.service_event(
                index,
                now,
                format!("(service {name}) has stopped {} running tasks: {}.", stopped.len(), listed(stopped)),
            );
        }
        if !started.is_empty() {
            self.service_event(
                index,
                now,
                format!("(service {name}) has started {} tasks: {}.", started.len(), listed(started)),
            );
        }
    }

    /// Start or stop tasks so the service converges on its desired count, honouring the
    /// deployment configuration: with 200/100 the new task starts before the old one stops.
    fn reconcile(&mut self, index: usize, now: u64) {
        let service = &self.services[index];
        let desired = service.desired_count.max(0) as usize;
        let primary = service.deployments.first().map(|d| d.id.clone());
        let max_total = (service.desired_count.max(0) as i64 * service.maximum_percent as i64 / 100) as usize;
        let min_healthy =
            ((service.desired_count.max(0) as i64 * service.minimum_healthy_percent as i64 + 99) / 100) as usize;
        let managed: Vec<usize> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.cluster == service.cluster
                    && t.service.as_deref() == Some(service.name.as_str())
                    && !t.pinned
                    && t.desired_status == "RUNNING"
            })
            .map(|(i, _)| i)
            .collect();
        let (new, old): (Vec<usize>, Vec<usize>) =
            managed.iter().partition(|&&i| self.tasks[i].deployment_id == primary);
        let draining = self.tasks.iter().any(|t| {
            t.cluster == service.cluster
                && t.service.as_deref() == Some(service.name.as_str())
                && t.is_live()
                && !t.pinned
                && t.deployment_id != primary
        });
        if !draining {
            self.services[index].deployments.truncate(1);
        }
        let mut counted = managed.len();
        let (mut started, mut stopped) = (Vec::new(), Vec::new());
        if old.is_empty() {
            for _ in new.len()..desired {
                started.push(self.start_task(index, now, None, false));
            }
            let reason =
                format!("Scaling activity initiated by (deployment {})", primary.as_deref().unwrap_or("ecs-svc"));
            for &i in new.iter().rev().take(new.len().saturating_sub(desired)) {
                self.stop_task(i, &reason, now);
                stopped.push(self.tasks[i].id.clone());
            }
            self.note_scheduled(index, now, &started, &stopped);
            return;
        }
        let mut new_count = new.len();
        while new_count < desired && counted < max_total {
            started.push(self.start_task(index, now, None, false));
            new_count += 1;
            counted += 1;
        }
        let new_running = new.iter().filter(|&&i| self.tasks[i].last_status == "RUNNING").count();
        let mut old_running = old.iter().filter(|&&i| self.tasks[i].last_status == "RUNNING").count();
        for &i in &old {
            let running = self.tasks[i].last_status == "RUNNING";
            let healthy_after = new_running + old_running - usize::from(running);
            if healthy_after >= min_healthy {
                self.stop_task(i, "Task stopped by deployment", now);
                stopped.push(self.tasks[i].id.clone());
                old_running -= usize::from(running);
            }
        }
        self.note_scheduled(index, now, &started, &stopped);
    }

    /// Clamp a service's desired count into its scalable target (RegisterScalableTarget does this).
    pub fn clamp_desired(&mut self, resource_id: &str) {
        let Some(target) = self.scalable_targets.get(resource_id).cloned() else { return };
        let Some(rest) = resource_id.strip_prefix("service/") else { return };
        let Some((cluster, name)) = rest.split_once('/') else { return };
        if let Some(index) = self.service_index(cluster, name) {
            let service = &mut self.services[index];
            service.desired_count = service.desired_count.clamp(target.min, target.max);
        }
    }

    /// Start a new PRIMARY deployment on the service's current task definition.
    pub fn new_deployment(&mut self, index: usize, now: u64) {
        let id = self.deployment_id();
        let service = &mut self.services[index];
        service
            .deployments
            .insert(0, Deployment { id, task_definition: service.task_definition.clone(), created_ms: now });
    }
}

/// Every account-region of the lab, the primary (where the lab's user lives) first.
#[derive(Debug)]
pub struct Accounts {
    pub list: Vec<Account>,
    /// Account ids whose credentials were revoked (`POST /_lab/accounts/ID/revoke`): calls signed
    /// by their principals are refused, and so is AssumeRole into their roles.
    pub revoked: std::collections::BTreeSet<String>,
}

impl Accounts {
    /// Every account of a scenario, each with its services at their desired count.
    pub fn from_scenario(scenario: &Scenario, timing: Timing) -> Result<Accounts, String> {
        let mut list: Vec<Account> = Vec::new();
        for (index, (id, spec)) in scenario.account_specs().iter().enumerate() {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("account `{id}` is not a 12-digit AWS account id"));
            }
            if list.iter().any(|a| a.account == *id && a.region == spec.region) {
                return Err(format!("account {id} in {} is described twice", spec.region));
            }
            // The primary keeps the id sequence single-account scenarios always had.
            let seed = match index {
                0 => scenario.description.clone(),
                _ => format!("{}#{id}/{}", scenario.description, spec.region),
            };
            list.push(Account::from_spec(id, spec, timing, &seed)?);
        }
        Ok(Accounts { list, revoked: Default::default() })
    }

    pub fn primary(&self) -> &Account {
        &self.list[0]
    }

    pub fn primary_mut(&mut self) -> &mut Account {
        &mut self.list[0]
    }

    /// Account-region by account id and region.
    pub fn find(&self, account: &str, region: &str) -> Option<&Account> {
        self.list.iter().find(|a| a.account == account && a.region == region)
    }

    /// Where a call signed for `region` by a principal of `account` lands. A region the
    /// scenario does not describe is empty (as every region of a real account starts) and is
    /// made on first use.
    pub fn get_or_add(&mut self, account: &str, region: &str) -> &mut Account {
        let index = match self.list.iter().position(|a| a.account == account && a.region == region) {
            Some(index) => index,
            None => {
                let primary = self.primary();
                let mut empty = Account::empty(account, region, primary.timing, &format!("{account}/{region}"));
                empty.endpoint = primary.endpoint.clone();
                empty.stream_host = primary.stream_host.clone();
                self.list.push(empty);
                self.list.len() - 1
            }
        };
        &mut self.list[index]
    }

    /// The roles of an account (IAM is global: any region of it), None when the lab has no
    /// such account.
    pub fn roles_of(&self, account: &str) -> Option<&IndexMap<String, Option<String>>> {
        self.list.iter().find(|a| a.account == account).map(|a| &a.roles)
    }

    /// Advance every account's scheduler.
    pub fn advance(&mut self, now: u64) {
        for account in &mut self.list {
            account.advance(now);
        }
    }

    /// Every account's timeline, merged in time order.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        let mut entries: Vec<TimelineEntry> = self.list.iter().flat_map(|a| a.timeline.iter().cloned()).collect();
        entries.sort_by_key(|entry| entry.t_ms);
        entries
    }

    /// Every secret credential any account issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.list.iter().flat_map(|a| a.issued_tokens.iter().cloned()).collect()
    }

    /// An open exec session, in whichever account granted it.
    pub fn exec_session(&self, id: &str) -> Option<ExecGrant> {
        self.list.iter().find_map(|a| a.exec_sessions.get(id).cloned())
    }

    /// Forget an exec session (it ended or was terminated).
    pub fn remove_exec_session(&mut self, id: &str) {
        for account in &mut self.list {
            account.exec_sessions.shift_remove(id);
        }
    }

    /// The account that runs task `task_id`.
    pub fn of_task_mut(&mut self, task_id: &str) -> Option<&mut Account> {
        self.list.iter_mut().find(|a| a.tasks.iter().any(|t| t.id == task_id))
    }

    /// The account that runs task `task_id`.
    pub fn of_task(&self, task_id: &str) -> Option<&Account> {
        self.list.iter().find(|a| a.tasks.iter().any(|t| t.id == task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;

    fn account(name: &str) -> Account {
        let timing = Timing { task_start_ms: 300, task_stop_ms: 200, agent_start_ms: 100 };
        Account::from_scenario(&scenario::load(name).unwrap(), timing).unwrap()
    }

    fn live(account: &Account, cluster: &str) -> Vec<String> {
        account.tasks.iter().filter(|t| t.cluster == cluster && t.is_live()).map(|t| t.last_status.clone()).collect()
    }

    /// The seed with `tables` added, as an account (or the reason it is refused).
    fn seed_with(tables: &str) -> Result<Account, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, format!("extends = \"seed\"\ndescription = \"x\"\n{tables}")).unwrap();
        let timing = Timing { task_start_ms: 300, task_stop_ms: 200, agent_start_ms: 100 };
        Account::from_scenario(&scenario::load(path.to_str().unwrap())?, timing)
    }

    #[test]
    fn a_secret_gives_the_container_its_parameters_value_by_name_or_arn() {
        let account = seed_with(
            "[parameters.\"/k\"]\ntype = \"SecureString\"\nvalue = \"v1\"\n[parameters.flat]\nvalue = \"v2\"\n\
             [task_definitions.alinhou-production-EvolutionService.secrets]\n\
             AUTHENTICATION_API_KEY = \"arn:aws:ssm:us-east-1:123456789012:parameter/k\"\nSERVER_URL = \"flat\"\n",
        )
        .unwrap();
        let definition = account.latest_task_definition("alinhou-production-EvolutionService").unwrap();
        let environment = account.container_environment(definition);
        assert_eq!(environment["AUTHENTICATION_API_KEY"], "v1");
        assert_eq!(environment["SERVER_URL"], "v2");
        assert_eq!(environment["DATABASE_PROVIDER"], "postgresql", "the plain environment stays");
        assert_eq!(account.parameter_arn("flat"), "arn:aws:ssm:us-east-1:123456789012:parameter/flat");
        assert!(account.parameter("arn:aws:ssm:sa-east-1:123456789012:parameter/k").is_none(), "another region");
        assert!(account.parameter("arn:aws:ssm:us-east-1:111111111111:parameter/k").is_none(), "another account");
    }

    #[test]
    fn a_secret_ecs_would_refuse_is_refused_at_load() {
        let missing = seed_with(
            "[task_definitions.alinhou-staging-EvolutionService.secrets]\nAUTHENTICATION_API_KEY = \"/none\"\n",
        );
        assert_eq!(
            missing.err().unwrap(),
            "task definition alinhou-staging-EvolutionService: secret AUTHENTICATION_API_KEY reads /none, which is not a parameter of account 123456789012 in us-east-1"
        );
        let both = seed_with(
            "[parameters.\"/k\"]\nvalue = \"v\"\n\
             [task_definitions.alinhou-staging-EvolutionService.secrets]\nAUTHENTICATION_API_KEY = \"/k\"\n\
             [task_definitions.alinhou-staging-EvolutionService.environment]\nAUTHENTICATION_API_KEY = \"plain\"\n",
        );
        assert_eq!(
            both.err().unwrap(),
            "task definition alinhou-staging-EvolutionService: The secret name must be unique and not shared with any new or existing environment variables set on the container, such as 'AUTHENTICATION_API_KEY'."
        );
    }

    #[test]
    fn seed_starts_with_one_running_production_task() {
        let account = account("seed");
        assert_eq!(live(&account, "alinhou-production"), ["RUNNING"]);
        assert!(live(&account, "alinhou-staging").is_empty());
        assert_eq!(account.tasks[0].containers[0].agent_status.as_deref(), Some("RUNNING"));
    }

    #[test]
    fn scale_up_walks_the_lifecycle() {
        let mut account = account("seed");
        let index = account.service_index("alinhou-staging", "EvolutionService").unwrap();
        account.services[index].desired_count = 1;
        let t0 = now_ms();
        account.advance(t0);
        assert_eq!(live(&account, "alinhou-staging"), ["PROVISIONING"]);
        account.advance(t0 + 99);
        assert_eq!(live(&account, "alinhou-staging"), ["PROVISIONING"]);
        account.advance(t0 + 100);
        assert_eq!(live(&account, "alinhou-staging"), ["PENDING"]);
        account.advance(t0 + 200);
        assert_eq!(live(&account, "alinhou-staging"), ["ACTIVATING"]);
        account.advance(t0 + 300);
        assert_eq!(live(&account, "alinhou-staging"), ["RUNNING"]);
        let task = account.tasks.iter().find(|t| t.cluster == "alinhou-staging").unwrap();
        assert_eq!(task.containers[0].agent_status.as_deref(), Some("PENDING"));
        account.advance(t0 + 400);
        let task = account.tasks.iter().find(|t| t.cluster == "alinhou-staging").unwrap();
        assert_eq!(task.containers[0].agent_status.as_deref(), Some("RUNNING"));
    }

    #[test]
    fn the_scheduler_logs_its_starts_stops_and_steady_states_as_ecs_words_them() {
        let mut account = account("staging-up");
        let index = account.service_index("alinhou-staging", "EvolutionService").unwrap();
        let id = account.tasks.iter().find(|t| t.cluster == "alinhou-staging").unwrap().id.clone();
        let t0 = now_ms();
        account.advance(t0);
        let messages = |account: &Account| -> Vec<String> {
            account.services[index].events.iter().map(|e| e.message.clone()).collect()
        };
        assert_eq!(messages(&account), ["(service EvolutionService) has reached a steady state."]);
        account.advance(t0 + 1);
        assert_eq!(messages(&account).len(), 1, "a steady state is said once, not every tick");
        account.services[index].desired_count = 0;
        account.advance(t0 + 2);
        assert_eq!(
            messages(&account)[0],
            format!("(service EvolutionService) has stopped 1 running tasks: (task {id})."),
            "newest first"
        );
        let deployment = account.services[index].deployments[0].id.clone();
        let task = account.tasks.iter().find(|t| t.id == id).unwrap();
        assert_eq!(task.stopped_reason, Some(format!("Scaling activity initiated by (deployment {deployment})")));
        for at in [70, 140, 210] {
            account.advance(t0 + at);
        }
        assert_eq!(account.tasks.iter().find(|t| t.id == id).unwrap().last_status, "STOPPED");
        assert_eq!(messages(&account)[0], "(service EvolutionService) has reached a steady state.");
        account.services[index].desired_count = 1;
        account.advance(t0 + 301);
        let started = account.tasks.last().unwrap().id.clone();
        assert_eq!(messages(&account)[0], format!("(service EvolutionService) has started 1 tasks: (task {started})."));
        let ids: std::collections::BTreeSet<&str> =
            account.services[index].events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), account.services[index].events.len(), "every event has its own id");
        assert!(account.services[index].events.iter().all(|e| e.id.len() == 36 && e.id.matches('-').count() == 4));
    }

    #[test]
    fn scale_down_walks_the_stop_lifecycle_and_the_timeline_records_every_step() {
        let mut account = account("staging-up");
        let index = account.service_index("alinhou-staging", "EvolutionService").unwrap();
        let id = account.tasks.iter().find(|t| t.cluster == "alinhou-staging").unwrap().id.clone();
        account.services[index].desired_count = 0;
        let t0 = now_ms();
        // 200 ms over three steps: 66 ms each.
        for (at, status) in [(0, "DEACTIVATING"), (66, "STOPPING"), (132, "DEPROVISIONING"), (198, "STOPPED")] {
            account.advance(t0 + at);
            let task = account.tasks.iter().find(|t| t.id == id).unwrap();
            assert_eq!((task.last_status.as_str(), task.desired_status.as_str()), (status, "STOPPED"), "at {at}");
        }
        let steps: Vec<(u64, &str, &str)> = account
            .timeline
            .iter()
            .filter(|e| e.task_id == id)
            .map(|e| (e.t_ms.saturating_sub(t0), e.last_status.as_str(), e.desired_status.as_str()))
            .collect();
        assert_eq!(steps[0].1, "RUNNING", "the seeded task's creation comes first");
        assert_eq!(
            steps[1..],
            [
                (0, "DEACTIVATING", "STOPPED"),
                (66, "STOPPING", "STOPPED"),
                (132, "DEPROVISIONING", "STOPPED"),
                (198, "STOPPED", "STOPPED")
            ]
        );
        assert!(account.timeline.windows(2).all(|w| w[0].t_ms <= w[1].t_ms), "in time order");
        assert_eq!(
            account.timeline.iter().filter(|e| e.last_status == "RUNNING").count(),
            2,
            "both seeded tasks are on the timeline"
        );
    }

    #[test]
    fn a_pinned_draining_task_stays_where_it_was_put() {
        let mut account = account("seed");
        let index = account.service_index("alinhou-production", "EvolutionService").unwrap();
        let t0 = now_ms();
        let id = account.add_pinned_task(index, t0, "DEACTIVATING", "STOPPED").unwrap();
        for step in 0..20 {
            account.advance(t0 + step * 50);
        }
        let task = account.tasks.iter().find(|t| t.id == id).unwrap();
        assert_eq!((task.last_status.as_str(), task.desired_status.as_str()), ("DEACTIVATING", "STOPPED"));
        assert_eq!(live(&account, "alinhou-production"), ["RUNNING", "DEACTIVATING"], "the service's own task stays");
        let last = account.timeline.last().unwrap();
        assert_eq!((last.task_id.as_str(), last.t_ms, last.last_status.as_str()), (id.as_str(), t0, "DEACTIVATING"));
        assert!(account.add_pinned_task(index, t0, "STOPPING", "RUNNING").is_err());
        assert!(account.add_pinned_task(index, t0, "GONE", "STOPPED").is_err());
        assert!(account.add_pinned_task(index, t0, "RUNNING", "PAUSED").is_err());
    }

    #[test]
    fn rolling_deploy_with_200_100_overlaps_and_100_0_does_not() {
        for (max, min, overlap) in [(200, 100, true), (100, 0, false)] {
            let mut account = account("seed");
            let index = account.service_index("alinhou-production", "EvolutionService").unwrap();
            account.services[index].maximum_percent = max;
            account.services[index].minimum_healthy_percent = min;
            let t0 = now_ms();
            account.new_deployment(index, t0);
            let mut most_running_or_pending = 0;
            for step in 0..40 {
                account.advance(t0 + step * 25);
                let counted = account
                    .tasks
                    .iter()
                    .filter(|t| t.cluster == "alinhou-production" && t.desired_status == "RUNNING")
                    .count();
                most_running_or_pending = most_running_or_pending.max(counted);
            }
            assert_eq!(most_running_or_pending > 1, overlap, "{max}/{min}");
            assert_eq!(live(&account, "alinhou-production"), ["RUNNING"], "{max}/{min}");
            assert_eq!(account.services[index].deployments.len(), 1);
        }
    }

    #[test]
    fn ids_are_reproducible() {
        assert_eq!(account("seed").tasks[0].id, account("seed").tasks[0].id);
        assert_eq!(account("seed").tasks[0].id.len(), 32);
    }
}
