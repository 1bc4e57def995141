//! Evolution 2.3.7's webhook retries as its log shows them. The server retries a failed webhook
//! up to 10 times with backoff and logs each try (in Portuguese): `Tentativa N/M falhou: …`,
//! `Erro não recuperável (S): …`, `Todas as tentativas falharam: …`. [`RetryLog`] follows the
//! task's log group while evoctl waits on a cleanup that waits on such a webhook, so the wait can
//! say what the receiver is answering. Reading the log is best effort: without the permission
//! or a log group, the wait goes on and says less.

use crate::aws::Aws;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs;
use crate::exec::target::ExecTarget;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the log group is read while following it.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The latest webhook retry line of one task since the follower began.
pub struct RetryLog<'a> {
    aws: &'a Aws,
    target: &'a ExecTarget,
    service: &'a str,
    since_ms: i64,
    latest: Mutex<Option<String>>,
}

impl<'a> RetryLog<'a> {
    pub fn new(aws: &'a Aws, target: &'a ExecTarget, service: &'a str) -> RetryLog<'a> {
        let since_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        RetryLog { aws, target, service, since_ms, latest: Mutex::new(None) }
    }

    /// The last retry line seen, shortened to what it says (e.g. `attempt 3/10 failed: Request
    /// failed with status code 503`).
    pub fn latest(&self) -> Option<String> {
        self.latest.lock().expect("retry log lock").clone()
    }

    /// Read the log group every few seconds, forever (the caller drops this future).
    pub async fn follow(&self) {
        let service = ServiceRef { cluster: &self.target.cluster, service: self.service };
        let Ok(source) = logs::log_source(&self.aws.ecs(), service, &self.target.container).await else {
            return std::future::pending().await;
        };
        let client = self.aws.logs();
        // Each read asks only for what came after the last line seen, not the whole wait again.
        let mut since_ms = self.since_ms;
        loop {
            if let Ok(lines) = logs::filter(&client, &source, "Tentativa", since_ms).await {
                if let Some(last) = lines.last() {
                    since_ms = since_ms.max(last.timestamp_ms + 1);
                }
                let mine = lines.iter().rev().filter(|l| l.stream.ends_with(&self.target.task.id));
                if let Some(line) = mine.filter_map(|l| describe(&l.message)).next() {
                    *self.latest.lock().expect("retry log lock") = Some(line);
                }
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

/// What one of 2.3.7's retry log lines says, in English.
pub fn describe(line: &str) -> Option<String> {
    let text = line.trim().trim_start_matches("message:").trim().trim_matches(|c| c == '\'' || c == ',' || c == '"');
    if let Some(rest) = text.split("Tentativa ").nth(1) {
        let (attempt, reason) = rest.split_once(" falhou: ")?;
        return Some(format!("attempt {attempt} failed: {}", reason.trim_end_matches(['\'', ',', '"'])));
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_lines_read_as_the_real_log_writes_them() {
        assert_eq!(
            super::describe("  message: 'Tentativa 1/10 falhou: Request failed with status code 500',").as_deref(),
            Some("attempt 1/10 failed: Request failed with status code 500")
        );
        assert_eq!(super::describe("  local: 'ChannelStartupService.sendData-Webhook',"), None);
    }
}
