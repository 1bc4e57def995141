//! CloudWatch Logs reads: where the Evolution container logs (its task definition's awslogs
//! group and stream prefix), and the events of a window, page by page through the SDK
//! paginator, bounded by a count. Throttling is the SDK's retry policy's to absorb.

use super::discovery::ServiceRef;
use super::sdk_failure;
use crate::error::{Error, Result};
use std::time::{SystemTime, UNIX_EPOCH};

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
    /// CloudWatch's id of the event (unique in the group); empty when unknown.
    pub event_id: String,
}

impl LogLine {
    /// The ECS task id: the last part of an awslogs stream name (`prefix/container/task-id`).
    pub fn task(&self) -> &str {
        self.stream.rsplit('/').next().unwrap_or(&self.stream)
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The awslogs group of `container` in the service's current task definition. A container that
/// logs through another driver (firelens, splunk, …) or none is an error that names it.
pub async fn log_group(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>, container: &str) -> Result<String> {
    let service = super::discovery::service_state(ecs, target).await?;
    let definition = service.task_definition.ok_or_else(|| {
        Error::not_found(format!("service {} has no task definition", target.service), "check the service in ECS")
    })?;
    let settings = super::taskdef::container_settings(ecs, &definition, container).await?;
    match (settings.log_driver.as_deref(), settings.log_group) {
        (Some("awslogs"), Some(group)) => Ok(group),
        (Some("awslogs"), None) => Err(Error::not_found(
            format!("container {container} of {definition} uses awslogs without an awslogs-group option"),
            "set the awslogs-group option in the container's logConfiguration",
        )),
        (Some(driver), _) => Err(Error::not_found(
            format!(
                "container {container} of {definition} logs through the {driver} driver, not awslogs: its lines are not in CloudWatch Logs where evoctl reads them"
            ),
            format!(
                "read them where {driver} sends them, or switch the container to the awslogs driver (SST's default)"
            ),
        )),
        (None, _) => Err(Error::not_found(
            format!("container {container} of {definition} has no logConfiguration: its output is not kept anywhere"),
            "configure the awslogs driver for the container (SST does by default)",
        )),
    }
}

/// A window of one log group to read.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub group: &'a str,
    /// A CloudWatch filter pattern ("" for every event).
    pub pattern: &'a str,
    pub start_ms: i64,
    /// At most this many events are read (pages stop there).
    pub limit: usize,
}

/// What a window read gave.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Oldest first.
    pub lines: Vec<LogLine>,
    /// The window held more than `limit` events: reading stopped at the limit.
    pub truncated: bool,
}

/// Every event of the window (up to its limit), oldest first.
pub async fn read(logs: &aws_sdk_cloudwatchlogs::Client, window: Window<'_>) -> Result<Read> {
    let mut request = logs.filter_log_events().log_group_name(window.group).start_time(window.start_ms);
    if !window.pattern.is_empty() {
        request = request.filter_pattern(window.pattern);
    }
    let mut pages = request.into_paginator().send();
    let mut out = Read::default();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::from(sdk_failure("FilterLogEvents", e)))?;
        for event in page.events() {
            if out.lines.len() == window.limit {
                out.truncated = true;
                break;
            }
            out.lines.push(LogLine {
                stream: event.log_stream_name().unwrap_or_default().to_owned(),
                timestamp_ms: event.timestamp().unwrap_or_default(),
                message: event.message().unwrap_or_default().to_owned(),
                event_id: event.event_id().unwrap_or_default().to_owned(),
            });
        }
        if out.truncated {
            break;
        }
    }
    // Pages are in time order per stream; across streams, order by time (stable, so the lines
    // of one logged object keep their order).
    out.lines.sort_by_key(|l| l.timestamp_ms);
    Ok(out)
}

/// Every event in `group` since `start_ms` matching `pattern`, oldest first (up to 10 000).
pub async fn filter(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    pattern: &str,
    start_ms: i64,
) -> Result<Vec<LogLine>> {
    Ok(read(logs, Window { group, pattern, start_ms, limit: 10_000 }).await?.lines)
}
