//! CloudWatch Logs reads: the service's awslogs group (from its task definition) and filtered
//! events over a time window, every page (through the SDK paginator).

use super::discovery::ServiceRef;
use super::sdk_failure;
use crate::error::{Error, Result};

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

/// The awslogs group of `container` in the service's current task definition.
pub async fn log_group(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>, container: &str) -> Result<String> {
    let service = super::discovery::service_state(ecs, target).await?;
    let definition = service.task_definition.ok_or_else(|| {
        Error::not_found(format!("service {} has no task definition", target.service), "check the service in ECS")
    })?;
    super::taskdef::container_settings(ecs, &definition, container).await?.log_group.ok_or_else(|| {
        Error::not_found(
            format!("container {container} of {definition} has no awslogs log group"),
            "configure the awslogs driver for the container (SST does by default)",
        )
    })
}

/// Every event in `group` since `start_ms` matching `pattern`, oldest first.
pub async fn filter(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    pattern: &str,
    start_ms: i64,
) -> Result<Vec<LogLine>> {
    let pages = logs
        .filter_log_events()
        .log_group_name(group)
        .filter_pattern(pattern)
        .start_time(start_ms)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("FilterLogEvents", e)))?;
    let mut lines: Vec<LogLine> = pages
        .iter()
        .flat_map(|page| page.events())
        .map(|e| LogLine {
            stream: e.log_stream_name().unwrap_or_default().to_owned(),
            timestamp_ms: e.timestamp().unwrap_or_default(),
            message: e.message().unwrap_or_default().to_owned(),
        })
        .collect();
    lines.sort_by_key(|l| l.timestamp_ms);
    Ok(lines)
}
