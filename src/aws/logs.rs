//! CloudWatch Logs reads: where the Evolution container logs (its task definition's awslogs
//! group and the streams of it that are this environment's), and the events of a window, page
//! by page through the SDK paginator, bounded by a count. Throttling is the SDK's retry
//! policy's to absorb.
//!
//! Many stacks share one group across services and stages, so every read is narrowed to the
//! environment's own streams: the awslogs driver names a task's stream
//! `PREFIX/CONTAINER/TASK_ID`, so `PREFIX/CONTAINER/` is the prefix asked for; without a stream
//! prefix it names the stream after the container's runtime id, and the service's tasks'
//! runtime ids are the stream names asked for (FilterLogEvents takes one or the other, never
//! both, and at most 100 names).

use super::discovery::{self, ServiceRef};
use super::sdk_failure;
use super::taskdef::AwsLogsGroup;
use crate::error::{Error, Result};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most stream names one FilterLogEvents takes.
pub const MAX_STREAM_NAMES: usize = 100;

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
    /// The ECS task id: the last part of an awslogs stream name (`prefix/container/task-id`);
    /// without a stream prefix, the stream's name (the container's runtime id).
    pub fn task(&self) -> &str {
        self.stream.rsplit('/').next().unwrap_or(&self.stream)
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The streams of a group that are one environment's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Streams {
    /// `PREFIX/CONTAINER/`: every stream the awslogs driver made for the container under the
    /// task definition's stream prefix.
    Prefix(String),
    /// No stream prefix: the streams named after the container's runtime ids in the service's
    /// tasks (at most [`MAX_STREAM_NAMES`]); none when ECS lists no task.
    Names(Vec<String>),
}

/// Where one environment's container log lives: a group and the streams of it that are its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSource {
    #[serde(rename = "log_group")]
    pub group: String,
    #[serde(rename = "log_streams")]
    pub streams: Streams,
}

impl std::fmt::Display for LogSource {
    /// `GROUP (streams PREFIX/CONTAINER/*)`, as people read it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.streams {
            Streams::Prefix(prefix) => write!(f, "{} (streams {prefix}*)", self.group),
            Streams::Names(names) if names.is_empty() => {
                write!(f, "{} (no stream: ECS lists no task of the service)", self.group)
            }
            Streams::Names(names) if names.len() <= 3 => write!(f, "{} (streams {})", self.group, names.join(", ")),
            Streams::Names(names) => {
                write!(f, "{} (streams {} and {} more)", self.group, names[..3].join(", "), names.len() - 3)
            }
        }
    }
}

/// Where `container` of the service's current task definition logs. A container that logs
/// through another driver (firelens, splunk, …) or none is an error that names it.
pub async fn log_source(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>, container: &str) -> Result<LogSource> {
    let service = super::discovery::service_state(ecs, target).await?;
    let definition = service.task_definition.ok_or_else(|| {
        Error::not_found(format!("service {} has no task definition", target.service), "check the service in ECS")
    })?;
    let settings = super::taskdef::container_settings(ecs, &definition, container).await?;
    match (settings.log_driver.as_deref(), settings.log_group) {
        (Some("awslogs"), Some(group)) => source_of(ecs, target, container, &group).await,
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

/// The environment's streams of `group`: by prefix, or (without one) by the runtime ids of the
/// service's tasks, which takes a ListTasks/DescribeTasks.
pub async fn source_of(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
    container: &str,
    group: &AwsLogsGroup,
) -> Result<LogSource> {
    let streams = match &group.stream_prefix {
        Some(prefix) => Streams::Prefix(format!("{prefix}/{container}/")),
        None => Streams::Names(discovery::container_runtime_ids(ecs, target, container, MAX_STREAM_NAMES).await?),
    };
    Ok(LogSource { group: group.name.clone(), streams })
}

/// A window of one environment's log to read.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub source: &'a LogSource,
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
    let mut request = logs.filter_log_events().log_group_name(&window.source.group).start_time(window.start_ms);
    request = match &window.source.streams {
        Streams::Prefix(prefix) => request.log_stream_name_prefix(prefix),
        // No stream of the environment: nothing of the group is its (and an empty list is not
        // a filter CloudWatch takes).
        Streams::Names(names) if names.is_empty() => return Ok(Read::default()),
        Streams::Names(names) => request.set_log_stream_names(Some(names.clone())),
    };
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

/// Every event of `source` since `start_ms` matching `pattern`, oldest first (up to 10 000).
pub async fn filter(
    logs: &aws_sdk_cloudwatchlogs::Client,
    source: &LogSource,
    pattern: &str,
    start_ms: i64,
) -> Result<Vec<LogLine>> {
    Ok(read(logs, Window { source, pattern, start_ms, limit: 10_000 }).await?.lines)
}
