//! Scenarios: TOML files that seed the lab's account (clusters, task definitions, services,
//! scalable targets, parameters, Lambdas, logs) and carry the `evoctl.toml` that fits them.
//!
//! The top-level tables are the primary account (`account`, `region`: the lab's user lives
//! there); `[accounts.ID]` adds other accounts, each with its region and the same tables, and
//! `[aws_profiles.NAME]` the AWS config profiles the ready file writes for them (role
//! assumption from the lab's user, as an operator's `~/.aws/config` would have).
//!
//! A scenario may `extends = "NAME"` another: tables merge key by key, so a variant states
//! only the one thing it breaks. A variable a variant puts in a task definition's `secrets`
//! leaves the base's `environment` (ECS refuses a name in both), so moving a setting into a
//! parameter is one line too. Built-in scenarios ship in `scenarios/` and are compiled in;
//! `--scenario` also accepts a path to a file.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::Path;

/// The scenarios compiled into the binary, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("seed", include_str!("../scenarios/seed.toml")),
    ("staging-up", include_str!("../scenarios/staging-up.toml")),
    ("shared-db", include_str!("../scenarios/shared-db.toml")),
    ("rolling-overlap", include_str!("../scenarios/rolling-overlap.toml")),
    ("shared-db-uri", include_str!("../scenarios/shared-db-uri.toml")),
    ("shared-redis", include_str!("../scenarios/shared-redis.toml")),
    ("default-api-key", include_str!("../scenarios/default-api-key.toml")),
    ("scheduled-staging", include_str!("../scenarios/scheduled-staging.toml")),
    ("exec-disabled", include_str!("../scenarios/exec-disabled.toml")),
    ("agent-stopped", include_str!("../scenarios/agent-stopped.toml")),
    ("empty-jwt-key", include_str!("../scenarios/empty-jwt-key.toml")),
    ("app-mock-wrong", include_str!("../scenarios/app-mock-wrong.toml")),
    ("conflict-loop", include_str!("../scenarios/conflict-loop.toml")),
    ("kms-exec", include_str!("../scenarios/kms-exec.toml")),
    ("two-accounts", include_str!("../scenarios/two-accounts.toml")),
    ("two-accounts-both-live", include_str!("../scenarios/two-accounts-both-live.toml")),
    ("two-accounts-secrets", include_str!("../scenarios/two-accounts-secrets.toml")),
    ("two-accounts-shared-key", include_str!("../scenarios/two-accounts-shared-key.toml")),
    ("jwt-mismatch", include_str!("../scenarios/jwt-mismatch.toml")),
    ("no-whatsapp-route", include_str!("../scenarios/no-whatsapp-route.toml")),
    ("whatsapp-black-hole", include_str!("../scenarios/whatsapp-black-hole.toml")),
    ("shared-log-group", include_str!("../scenarios/shared-log-group.toml")),
    ("ephemeral-keys", include_str!("../scenarios/ephemeral-keys.toml")),
    ("efs-keys", include_str!("../scenarios/efs-keys.toml")),
    ("pairing-refresh", include_str!("../scenarios/pairing-refresh.toml")),
];

/// A fully merged scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: String,
    #[serde(default)]
    pub extends: Option<String>,
    #[serde(default = "default_account")]
    pub account: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub clusters: IndexMap<String, ClusterSpec>,
    #[serde(default)]
    pub task_definitions: IndexMap<String, TaskDefinitionSpec>,
    /// Keyed `"cluster/service"`.
    #[serde(default)]
    pub services: IndexMap<String, ServiceSpec>,
    #[serde(default)]
    pub scheduled_actions: IndexMap<String, ScheduledActionSpec>,
    #[serde(default)]
    pub parameters: IndexMap<String, ParameterSpec>,
    #[serde(default)]
    pub lambdas: IndexMap<String, LambdaSpec>,
    #[serde(default)]
    pub log_groups: IndexMap<String, LogGroupSpec>,
    /// Instances already paired with a phone, in the database of a task definition.
    #[serde(default)]
    pub linked_instances: Vec<LinkedInstanceSpec>,
    /// IAM roles of the account that the lab's user may assume (STS AssumeRole), by role name.
    #[serde(default)]
    pub roles: IndexMap<String, RoleSpec>,
    /// `"unreachable"`: the Evolution stand-ins have no route to WhatsApp (no QR, pairing code
    /// or `open` ever; connected instances loop between `connecting` and `close`);
    /// `"black-hole"`: SYNs to WhatsApp are dropped, as the real server meets it (`GET /` answers
    /// after 135 s; create with `qrcode` and connect of a `close` instance never).
    #[serde(default)]
    pub whatsapp: Option<String>,
    /// `"2.3.7"` (default) or `"2.4.0-rc2"`: the release the Evolution stand-ins play.
    #[serde(default)]
    pub evolution_version: Option<String>,
    /// 2.4: `"unlicensed"` (default: every business route answers 503 `LICENSE_REQUIRED`) or
    /// `"activated"` (the databases hold a licence).
    #[serde(default)]
    pub evolution_licence: Option<String>,
    /// WhatsApp answers a QR scan with `companion_reg_refresh` (`--pairing-refresh`).
    #[serde(default)]
    pub pairing_refresh: bool,
    /// The SSM agent version the tasks' agents report (default: a current one): at or below
    /// 3.0.196.0 Port sessions forward one connection at a time, above 3.1.1511.0 the agent
    /// turns its smux keep-alive off for clients above 1.2.331.0.
    #[serde(default)]
    pub ssm_agent_version: Option<String>,
    /// The lab's webhook receiver, per target (`/_lab/webhooks/TARGET/…`): as the app, it
    /// verifies each delivery's JWT with a secret of the account.
    #[serde(default)]
    pub receiver: IndexMap<String, ReceiverSpec>,
    /// Other accounts, by account id (each with its own region and resources).
    #[serde(default)]
    pub accounts: IndexMap<String, AccountSpec>,
    /// Profiles for the AWS config file the ready file names (`[profile NAME]` keys and values;
    /// the lab's user is the profile `lab` of the credentials file).
    #[serde(default)]
    pub aws_profiles: IndexMap<String, IndexMap<String, String>>,
    /// The evoctl.toml written for this scenario.
    #[serde(default)]
    pub evoctl: toml::Table,
}

/// One account's resources in one region.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub clusters: IndexMap<String, ClusterSpec>,
    #[serde(default)]
    pub task_definitions: IndexMap<String, TaskDefinitionSpec>,
    #[serde(default)]
    pub services: IndexMap<String, ServiceSpec>,
    #[serde(default)]
    pub scheduled_actions: IndexMap<String, ScheduledActionSpec>,
    #[serde(default)]
    pub parameters: IndexMap<String, ParameterSpec>,
    #[serde(default)]
    pub lambdas: IndexMap<String, LambdaSpec>,
    #[serde(default)]
    pub log_groups: IndexMap<String, LogGroupSpec>,
    #[serde(default)]
    pub linked_instances: Vec<LinkedInstanceSpec>,
    #[serde(default)]
    pub roles: IndexMap<String, RoleSpec>,
}

impl Scenario {
    /// Every account, the primary (the top-level tables) first: (account id, resources).
    pub fn account_specs(&self) -> Vec<(String, AccountSpec)> {
        let primary = AccountSpec {
            region: self.region.clone(),
            clusters: self.clusters.clone(),
            task_definitions: self.task_definitions.clone(),
            services: self.services.clone(),
            scheduled_actions: self.scheduled_actions.clone(),
            parameters: self.parameters.clone(),
            lambdas: self.lambdas.clone(),
            log_groups: self.log_groups.clone(),
            linked_instances: self.linked_instances.clone(),
            roles: self.roles.clone(),
        };
        std::iter::once((self.account.clone(), primary))
            .chain(self.accounts.iter().map(|(id, spec)| (id.clone(), spec.clone())))
            .collect()
    }
}

/// How the receiver treats one target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSpec {
    /// The SecureString parameter whose value the app verifies JWTs with.
    pub verify_with: String,
}

/// An instance whose session is already linked (`open`) when the lab starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedInstanceSpec {
    /// The task definition family whose DATABASE_CONNECTION_URI / client name hold it.
    pub task_definition: String,
    pub name: String,
    pub number: String,
}

fn default_account() -> String {
    "123456789012".into()
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    pub exec_kms_key_id: Option<String>,
    pub exec_logging: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefinitionSpec {
    #[serde(default = "one")]
    pub revision: u32,
    pub container: String,
    pub image: String,
    pub log_group: Option<String>,
    /// The awslogs `awslogs-stream-prefix` option: each task's stream is then
    /// `PREFIX/CONTAINER/TASK_ID`. Unset, the container's name; `""` leaves the option out, and
    /// the driver names the stream after the container's runtime id.
    pub log_stream_prefix: Option<String>,
    /// The container's log driver (`awslogs`, or e.g. `awsfirelens`, whose lines the lab does
    /// not keep).
    #[serde(default = "default_log_driver")]
    pub log_driver: String,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// The container's `secrets`: variable name -> `valueFrom` (an SSM parameter of the same
    /// account and region, by name or ARN). The task's container gets the parameter's value.
    #[serde(default)]
    pub secrets: IndexMap<String, String>,
    #[serde(default = "yes")]
    pub init_process_enabled: bool,
    #[serde(default)]
    pub readonly_root_filesystem: bool,
    #[serde(default = "default_cpu")]
    pub cpu: String,
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Programs the image has beyond the lab's stand-in set, e.g. `["script"]` (session
    /// logging needs it).
    #[serde(default)]
    pub image_tools: Vec<String>,
    /// The container's `mountPoints`: container path -> task volume name.
    #[serde(default)]
    pub mount_points: IndexMap<String, String>,
    /// The task's `volumes`, by name: an EFS volume names its file system; one without is a
    /// bind mount on the task's ephemeral storage.
    #[serde(default)]
    pub volumes: IndexMap<String, VolumeSpec>,
}

/// One task volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// `efsVolumeConfiguration.fileSystemId`.
    pub efs: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Task definition family.
    pub task_definition: String,
    pub desired_count: u32,
    #[serde(default = "default_max_percent")]
    pub maximum_percent: u32,
    #[serde(default = "default_min_healthy")]
    pub minimum_healthy_percent: u32,
    #[serde(default = "yes")]
    pub enable_execute_command: bool,
    #[serde(default = "default_rebalancing")]
    pub az_rebalancing: String,
    #[serde(default = "default_platform")]
    pub platform_version: String,
    #[serde(default = "yes")]
    pub circuit_breaker: bool,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    /// The Application Auto Scaling target, if the service has one.
    pub scaling: Option<ScalingSpec>,
    /// Extra tasks in the service's group that the scheduler does not manage (a stuck deploy).
    #[serde(default)]
    pub extra_tasks: u32,
    /// ExecuteCommandAgent status of the tasks running at start (default RUNNING).
    pub agent_status: Option<String>,
    /// The service's tasks use an Evolution server that already runs (no stand-in for them).
    pub external_evolution: Option<ExternalEvolutionSpec>,
}

/// An Evolution API server outside the lab, reached at `address` (`HOST:PORT`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEvolutionSpec {
    pub address: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSpec {
    pub min: i32,
    pub max: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledActionSpec {
    pub resource_id: String,
    pub schedule: String,
    pub min: Option<i32>,
    pub max: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    #[serde(rename = "type", default = "default_parameter_type")]
    pub kind: String,
    pub value: String,
    /// The lab's callers (its user and the roles it assumes) may not read it: GetParameter
    /// answers AccessDeniedException, as when the operator's policy covers other parameters
    /// only. Tasks still get its value (the task execution role reads it).
    #[serde(default)]
    pub read_denied: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSpec {
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// Resource tags (SST tags an app's function with `sst:app` / `sst:stage`).
    #[serde(default)]
    pub tags: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogGroupSpec {
    #[serde(default)]
    pub events: Vec<LogEventSpec>,
    /// Many lines at once (a busy container's log, for pagination).
    pub generate: Option<GenerateSpec>,
}

/// `streams` streams of `lines` Evolution-style INFO lines each, spread evenly over the
/// `age_seconds` before the lab's start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    pub streams: u32,
    pub lines: u32,
    #[serde(default = "default_generate_age")]
    pub age_seconds: u64,
}

fn default_generate_age() -> u64 {
    600
}

fn default_log_driver() -> String {
    "awslogs".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEventSpec {
    pub stream: String,
    pub message: String,
    /// How many seconds before the lab's start the event happened.
    #[serde(default)]
    pub age_seconds: u64,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_cpu() -> String {
    "1024".into()
}
fn default_memory() -> String {
    "2048".into()
}
fn default_max_percent() -> u32 {
    200
}
fn default_min_healthy() -> u32 {
    100
}
fn default_rebalancing() -> String {
    "ENABLED".into()
}
fn default_platform() -> String {
    "1.4.0".into()
}
fn default_parameter_type() -> String {
    "String".into()
}

/// An IAM role the lab's user may assume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The trust policy's `sts:ExternalId` condition: AssumeRole must pass this ExternalId.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Load a built-in scenario by name, or a scenario file by path; resolves `extends`.
pub fn load(name_or_path: &str) -> Result<Scenario, String> {
    let table = load_table(name_or_path, 0)?;
    table.try_into::<Scenario>().map_err(|e| format!("scenario {name_or_path}: {e}"))
}

fn load_table(name_or_path: &str, depth: usize) -> Result<toml::Table, String> {
    if depth > 8 {
        return Err(format!("scenario {name_or_path}: `extends` nests too deep (a cycle?)"));
    }
    let text = match BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
        Some((_, text)) => (*text).to_owned(),
        None => std::fs::read_to_string(Path::new(name_or_path)).map_err(|e| {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            format!("scenario `{name_or_path}` is neither built in ({}) nor a readable file: {e}", names.join(", "))
        })?,
    };
    let table: toml::Table = text.parse().map_err(|e| format!("scenario {name_or_path}: {e}"))?;
    match table.get("extends").and_then(toml::Value::as_str) {
        Some(base) => {
            let mut merged = load_table(base, depth + 1)?;
            move_to_secrets(&mut merged, &table);
            merge(&mut merged, table);
            Ok(merged)
        }
        None => Ok(table),
    }
}

/// Every variable `overlay` names in a task definition's `secrets` leaves that task
/// definition's `environment` in `base`: the variant moves it into a parameter.
fn move_to_secrets(base: &mut toml::Table, overlay: &toml::Table) {
    let mut places: Vec<Vec<&str>> = vec![vec!["task_definitions"]];
    if let Some(accounts) = overlay.get("accounts").and_then(toml::Value::as_table) {
        places.extend(accounts.keys().map(|id| vec!["accounts", id.as_str(), "task_definitions"]));
    }
    for place in places {
        let Some(definitions) = place.iter().try_fold(overlay, |t, key| t.get(*key)?.as_table()) else { continue };
        for (family, definition) in definitions {
            let Some(secrets) = definition.get("secrets").and_then(toml::Value::as_table) else { continue };
            let environment = place
                .iter()
                .copied()
                .chain([family.as_str(), "environment"])
                .try_fold(&mut *base, |t, key| t.get_mut(key).and_then(toml::Value::as_table_mut));
            if let Some(environment) = environment {
                environment.retain(|name, _| !secrets.contains_key(name));
            }
        }
    }
}

/// Deep-merge `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_loads() {
        for (name, _) in BUILT_IN {
            let scenario = load(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(scenario.account_specs().iter().any(|(_, spec)| !spec.services.is_empty()), "{name}");
            assert!(!scenario.evoctl.is_empty(), "{name}");
        }
    }

    #[test]
    fn whatsapp_and_external_evolution_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "extends = \"seed\"\ndescription = \"x\"\nwhatsapp = \"unreachable\"\n\
             [services.\"alinhou-production/EvolutionService\"]\nexternal_evolution = { address = \"127.0.0.1:8080\" }\n",
        )
        .unwrap();
        let scenario = load(path.to_str().unwrap()).unwrap();
        assert_eq!(scenario.whatsapp.as_deref(), Some("unreachable"));
        let service = &scenario.services["alinhou-production/EvolutionService"];
        assert_eq!(service.external_evolution.as_ref().map(|e| e.address.as_str()), Some("127.0.0.1:8080"));
        assert_eq!(service.desired_count, 1, "the rest of the service still comes from seed");
    }

    #[test]
    fn a_variant_that_moves_a_variable_into_secrets_takes_it_out_of_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "extends = \"two-accounts\"\ndescription = \"x\"\n\
             [accounts.\"222222222222\".task_definitions.alinhou-production-EvolutionService.secrets]\n\
             AUTHENTICATION_API_KEY = \"/alinhou/evolution-api-key\"\n",
        )
        .unwrap();
        let scenario = load(path.to_str().unwrap()).unwrap();
        let production = &scenario.accounts["222222222222"].task_definitions["alinhou-production-EvolutionService"];
        assert_eq!(production.secrets["AUTHENTICATION_API_KEY"], "/alinhou/evolution-api-key");
        assert!(!production.environment.contains_key("AUTHENTICATION_API_KEY"));
        assert_eq!(production.environment["SERVER_URL"], "https://evolution.alinhou.example", "the rest stays");
        let staging = &scenario.accounts["111111111111"].task_definitions["alinhou-staging-EvolutionService"];
        assert!(staging.environment.contains_key("AUTHENTICATION_API_KEY"), "another account's is untouched");
    }

    #[test]
    fn staging_up_changes_only_staging() {
        let seed = load("seed").unwrap();
        let up = load("staging-up").unwrap();
        assert_eq!(seed.services["alinhou-staging/EvolutionService"].desired_count, 0);
        assert_eq!(up.services["alinhou-staging/EvolutionService"].desired_count, 1);
        assert_eq!(up.services["alinhou-production/EvolutionService"].desired_count, 1);
        assert_eq!(
            up.task_definitions["alinhou-staging-EvolutionService"].environment,
            seed.task_definitions["alinhou-staging-EvolutionService"].environment
        );
    }
}
