//! What a task definition says about one container: its environment (plain values and
//! references to Secrets Manager / SSM, which [`super::container_secrets`] qualifies and reads)
//! where it logs (the awslogs group and the stream prefix its streams are named under), and the
//! volumes mounted into it (where a directory outlives the task: only an EFS volume does on
//! Fargate; a bind mount is on the task's ephemeral disk).

use super::sdk_failure;
use crate::error::{Error, Result};
use indexmap::IndexMap;

/// One environment entry of the container.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// `environment[]`: the value itself (may be a secret: never print it).
    Plain(String),
    /// `secrets[]`: the `valueFrom` ARN or parameter name; ECS injects the value at start (a
    /// bare name is the parameter of the task definition's own account and region).
    Reference(String),
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Plain(value) => write!(f, "Plain(<{} characters>)", value.chars().count()),
            EnvValue::Reference(from) => write!(f, "Reference({from})"),
        }
    }
}

/// The container's settings from its task definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSettings {
    /// The task definition's own ARN: where a bare parameter name in `secrets` lives.
    pub task_definition_arn: Option<String>,
    pub environment: IndexMap<String, EnvValue>,
    /// The logConfiguration's driver (`awslogs`, `awsfirelens`, …), if any.
    pub log_driver: Option<String>,
    /// The awslogs group (the `awslogs-group` option) and its stream prefix.
    pub log_group: Option<AwsLogsGroup>,
    /// The container's `mountPoints`, each with what its volume is.
    pub mounts: Vec<Mount>,
}

/// One `mountPoints` entry of the container and its task volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    /// The `sourceVolume` name.
    pub volume: String,
    /// The volume's EFS file system id (`efsVolumeConfiguration.fileSystemId`); `None` for a
    /// bind mount (the task's ephemeral storage) or a volume the task definition does not list.
    pub efs: Option<String>,
}

/// Where the awslogs driver writes the container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogsGroup {
    /// The `awslogs-group` option.
    pub name: String,
    /// The `awslogs-stream-prefix` option: each task's stream is then `PREFIX/CONTAINER/TASK_ID`.
    /// Without one (only possible off Fargate) the stream is named after the container's
    /// runtime id.
    pub stream_prefix: Option<String>,
}

/// DescribeTaskDefinition, reduced to `container` (a missing container is "not found").
pub async fn container_settings(
    ecs: &aws_sdk_ecs::Client,
    task_definition: &str,
    container: &str,
) -> Result<ContainerSettings> {
    let out = ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeTaskDefinition", e)))?;
    let definition = out.task_definition().ok_or_else(|| no_container(task_definition, container))?;
    let found = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .ok_or_else(|| no_container(task_definition, container))?;
    let mut environment = IndexMap::new();
    for pair in found.environment() {
        if let Some(name) = pair.name() {
            environment.insert(name.to_owned(), EnvValue::Plain(pair.value().unwrap_or_default().to_owned()));
        }
    }
    for secret in found.secrets() {
        environment.insert(secret.name().to_owned(), EnvValue::Reference(secret.value_from().to_owned()));
    }
    let log_driver = found.log_configuration().map(|l| l.log_driver().as_str().to_owned());
    let options = found.log_configuration().and_then(|l| l.options());
    let log_group = options.and_then(|o| o.get("awslogs-group")).map(|name| AwsLogsGroup {
        name: name.clone(),
        stream_prefix: options.and_then(|o| o.get("awslogs-stream-prefix")).filter(|p| !p.is_empty()).cloned(),
    });
    let task_definition_arn = definition.task_definition_arn().map(str::to_owned);
    let mounts = found
        .mount_points()
        .iter()
        .filter_map(|point| {
            let volume = point.source_volume()?.to_owned();
            let efs = definition
                .volumes()
                .iter()
                .find(|v| v.name() == Some(volume.as_str()))
                .and_then(|v| v.efs_volume_configuration())
                .map(|efs| efs.file_system_id().to_owned());
            Some(Mount { container_path: point.container_path()?.to_owned(), volume, efs })
        })
        .collect();
    Ok(ContainerSettings { task_definition_arn, environment, log_driver, log_group, mounts })
}

fn no_container(task_definition: &str, container: &str) -> Error {
    Error::not_found(
        format!("task definition {task_definition} has no container named {container}"),
        "set `container` (or [service] container) in evoctl.toml to the container's name",
    )
}
