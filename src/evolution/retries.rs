//! Evolution 2.3.7's webhook retries as its log shows them. The server retries a failed webhook
//! up to 10 times with backoff and logs each try (in Portuguese): `Tentativa N/M falhou: …`,
//! `Erro não recuperável (S): …`, `Todas as tentativas falharam: …`. [`RetryLog`] follows the
//! task's log group while evoctl waits on a cleanup that waits on such a webhook, so the wait can
//! say what the receiver is answering. One server logs every instance's webhooks and every
//! event's, so only the records of the awaited webhook count: those posted to its URL (with the
//! event suffix under `byEvents`) whose last send there was the instance's (see
//! [`super::logs::Scope`]). Reading the log is best effort: without the permission or a log
//! group, the wait goes on and says less.

use super::logs::{Logged, Outcome, Stitcher, WebhookEvent};
use crate::aws::Aws;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs;
use crate::exec::target::ExecTarget;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the log group is read while following it.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The webhook a wait is about: the instance and the URL its event is posted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    pub instance: String,
    pub url: String,
}

impl Awaited {
    /// `instance`'s webhook for `event` (2.3.7's name, e.g. `REMOVE_INSTANCE`): posted to
    /// `url/remove-instance` under `byEvents`, else to `url` itself.
    pub fn new(instance: &str, url: &str, by_events: bool, event: &str) -> Awaited {
        let url =
            if by_events { format!("{}/{}", url, event.replace('_', "-").to_lowercase()) } else { url.to_owned() };
        Awaited { instance: instance.to_owned(), url }
    }
}

/// The latest retry of one webhook in one task's log since the follower began.
pub struct RetryLog<'a> {
    aws: &'a Aws,
    target: &'a ExecTarget,
    service: &'a str,
    since_ms: i64,
    awaited: Mutex<Option<Awaited>>,
    events: Mutex<Vec<WebhookEvent>>,
}

impl<'a> RetryLog<'a> {
    pub fn new(aws: &'a Aws, target: &'a ExecTarget, service: &'a str) -> RetryLog<'a> {
        let since_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        RetryLog { aws, target, service, since_ms, awaited: Mutex::new(None), events: Mutex::new(Vec::new()) }
    }

    /// From now on, [`RetryLog::latest`] is about this webhook (until then it says nothing).
    pub fn watch(&self, awaited: Awaited) {
        *self.awaited.lock().expect("retry log lock") = Some(awaited);
    }

    /// The last retry of the awaited webhook seen, shortened to what it says (e.g. `attempt
    /// 3/10 failed: Request failed with status code 503`).
    pub fn latest(&self) -> Option<String> {
        let awaited = self.awaited.lock().expect("retry log lock").clone()?;
        latest_of(&self.events.lock().expect("retry log lock"), &awaited)
    }

    /// Read the log group every few seconds, forever (the caller drops this future).
    pub async fn follow(&self) {
        let service = ServiceRef { cluster: &self.target.cluster, service: self.service };
        let Ok(source) = logs::log_source(&self.aws.ecs(), service, &self.target.container).await else {
            return std::future::pending().await;
        };
        let client = self.aws.logs();
        // Each read asks only for what came from the last line's millisecond on (a record's
        // lines can share it), skipping the events already taken.
        let mut since_ms = self.since_ms;
        let mut taken: Vec<String> = Vec::new();
        let mut stitcher = Stitcher::default();
        loop {
            if let Ok(lines) = logs::filter(&client, &source, super::logs::WEBHOOK_PATTERN, since_ms).await {
                let mine = lines.iter().filter(|l| l.stream.ends_with(&self.target.task.id));
                let mut stitched = Vec::new();
                for line in mine.filter(|l| !taken.contains(&l.event_id)) {
                    stitched.extend(stitcher.push(line));
                }
                if let Some(last) = lines.last() {
                    since_ms = since_ms.max(last.timestamp_ms);
                    taken = lines.iter().filter(|l| l.timestamp_ms == since_ms).map(|l| l.event_id.clone()).collect();
                }
                self.events.lock().expect("retry log lock").extend(stitched);
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

/// The last failed try of `awaited` among `events` (time order), in English.
fn latest_of(events: &[WebhookEvent], awaited: &Awaited) -> Option<String> {
    let mut sender: std::collections::HashMap<(&str, &str), Option<&str>> = std::collections::HashMap::new();
    let mut latest = None;
    for event in events {
        match &event.logged {
            Logged::Send { url, instance } => {
                sender.insert((event.stream.as_str(), url.as_str()), instance.as_deref());
            }
            Logged::Step(step) if step.outcome != Outcome::Recovered && step.outcome != Outcome::Jwt => {
                let Some(url) = step.url.as_deref().filter(|url| *url == awaited.url) else { continue };
                let owner = sender.get(&(event.stream.as_str(), url)).copied().flatten();
                if owner.is_none_or(|owner| owner == awaited.instance) {
                    latest = describe(&step.message).or(latest);
                }
            }
            Logged::Step(_) => {}
        }
    }
    latest
}

/// What one of 2.3.7's retry messages says, in English.
pub fn describe(line: &str) -> Option<String> {
    let text = line.trim().trim_start_matches("message:").trim().trim_matches(|c| c == '\'' || c == ',' || c == '"');
    if let Some(rest) = text.split("Tentativa ").nth(1) {
        let (attempt, reason) = rest.split_once(" falhou: ")?;
        return Some(format!("attempt {attempt} failed: {}", reason.trim_end_matches(['\'', ',', '"'])));
    }
    if let Some(rest) = text.strip_prefix("Erro não recuperável ") {
        let status = rest.split(')').next().unwrap_or("").trim_start_matches('(');
        return Some(format!("refused with {status}, not retried"));
    }
    if let Some(rest) = text.strip_prefix("Todas as tentativas falharam: ") {
        return Some(format!("every try failed: {rest}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::logs::LogLine;

    #[test]
    fn retry_lines_read_as_the_real_log_writes_them() {
        assert_eq!(
            describe("  message: 'Tentativa 1/10 falhou: Request failed with status code 500',").as_deref(),
            Some("attempt 1/10 failed: Request failed with status code 500")
        );
        assert_eq!(describe("  local: 'ChannelStartupService.sendData-Webhook',"), None);
    }

    fn lines(stream: &str, text: &str, from_ms: i64) -> Vec<LogLine> {
        text.lines()
            .enumerate()
            .map(|(i, line)| LogLine {
                stream: stream.into(),
                timestamp_ms: from_ms + i as i64,
                message: line.into(),
                event_id: format!("{from_ms}-{i}"),
            })
            .collect()
    }

    /// The dump 2.3.7 writes before a send, and a failed try of it.
    fn send_and_retry(instance: &str, url: &str, attempt: u32, status: u16) -> String {
        format!(
            "[Evolution API]  19 - Tue Dec 01 2026 20:45:28   LOG  [WebhookController] [object] {{\n  local: 'ChannelStartupService.sendData-Webhook',\n  url: '{url}',\n  event: 'x',\n  instance: '{instance}',\n  data: null\n}}\n[Evolution API]  19 - Tue Dec 01 2026 20:45:28   ERROR  [WebhookController] [object] {{\n  local: 'ChannelStartupService.sendData-Webhook',\n  message: 'Tentativa {attempt}/10 falhou: Request failed with status code {status}',\n  statusCode: {status},\n  url: '{url}',\n  server_url: 'http://h'\n}}"
        )
    }

    #[test]
    fn only_the_awaited_webhooks_tries_are_quoted() {
        let base = "http://h/hook";
        let mut all = Vec::new();
        all.extend(lines("s/t1", &send_and_retry("gone", "http://h/hook/remove-instance", 1, 503), 0));
        // Another event of the same instance, and another instance's REMOVE_INSTANCE, later.
        all.extend(lines("s/t1", &send_and_retry("gone", "http://h/hook/messages-upsert", 4, 500), 100));
        all.extend(lines("s/t1", &send_and_retry("other", "http://h/hook/remove-instance", 7, 502), 200));
        let events = super::super::logs::webhook_events(&all);
        let awaited = Awaited::new("gone", base, true, "REMOVE_INSTANCE");
        assert_eq!(awaited.url, "http://h/hook/remove-instance");
        assert_eq!(
            latest_of(&events, &awaited).as_deref(),
            Some("attempt 1/10 failed: Request failed with status code 503")
        );
        let other = Awaited::new("other", base, true, "REMOVE_INSTANCE");
        assert_eq!(
            latest_of(&events, &other).as_deref(),
            Some("attempt 7/10 failed: Request failed with status code 502")
        );
        assert_eq!(latest_of(&events, &Awaited::new("none", base, true, "REMOVE_INSTANCE")), None);
    }
}
