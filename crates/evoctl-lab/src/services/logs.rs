//! CloudWatch Logs (AWS JSON 1.1, `Logs_20140328`): FilterLogEvents over the lab's log groups,
//! with the term filter patterns of unstructured logs: every quoted or bare term must appear,
//! or, when the terms are written `?term`, any one of them. A page holds at most 10 000 events
//! or 1 MB of messages, as the real service's; `nextToken` goes on from there.
//!
//! Streams are picked as the API reference says: `logStreamNames` (1 to 100 names) or
//! `logStreamNamePrefix`, never both (InvalidParameterException). Each event's `eventId` is
//! its own for good (the same event answers with the same id in every call), so a reader can
//! tell an event it already has from a new one.

use super::{ActionResult, ApiError, list, text};
use crate::state::Account;
use serde_json::{Value, json};

pub fn handle(account: &mut Account, action: &str, params: &Value, _now: u64) -> ActionResult {
    match action {
        "FilterLogEvents" => filter_log_events(account, params),
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

fn filter_log_events(account: &Account, params: &Value) -> ActionResult {
    let group = text(params, "logGroupName")
        .or_else(|| text(params, "logGroupIdentifier").map(|g| g.rsplit(":log-group:").next().unwrap_or(g)))
        .ok_or_else(|| {
            ApiError::client("InvalidParameterException", "logGroupName or logGroupIdentifier is required")
        })?;
    let events = account
        .log_groups
        .get(group)
        .ok_or_else(|| ApiError::client("ResourceNotFoundException", "The specified log group does not exist."))?;
    let start = params.get("startTime").and_then(Value::as_u64).unwrap_or(0);
    let end = params.get("endTime").and_then(Value::as_u64).unwrap_or(u64::MAX);
    let streams = list(params, "logStreamNames");
    let prefix = text(params, "logStreamNamePrefix");
    if params.get("logStreamNames").is_some_and(|v| !v.is_null()) {
        if prefix.is_some() {
            return Err(ApiError::client(
                "InvalidParameterException",
                "logStreamNames and logStreamNamePrefix cannot both be specified.",
            ));
        }
        if streams.is_empty() || streams.len() > MAX_STREAM_NAMES {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!(
                    "1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length between 1 and {MAX_STREAM_NAMES}"
                ),
            ));
        }
    }
    let pattern = Pattern::parse(text(params, "filterPattern").unwrap_or(""));
    let mut matching: Vec<(usize, &crate::state::LogEvent)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.timestamp_ms >= start && e.timestamp_ms <= end)
        .filter(|(_, e)| streams.is_empty() || streams.contains(&e.stream))
        .filter(|(_, e)| prefix.is_none_or(|p| e.stream.starts_with(p)))
        .filter(|(_, e)| pattern.matches(&e.message))
        .collect();
    // Events come in time order (stable: lines logged in one millisecond keep their order).
    matching.sort_by_key(|(_, e)| e.timestamp_ms);
    let from = text(params, "nextToken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0).min(matching.len());
    let limit = params
        .get("limit")
        .and_then(Value::as_u64)
        .filter(|&l| l > 0)
        .map_or(MAX_EVENTS, |l| (l as usize).min(MAX_EVENTS));
    let mut to = from;
    let mut bytes = 0;
    while to < matching.len() && to - from < limit {
        bytes += matching[to].1.message.len() + 26;
        if bytes > MAX_PAGE_BYTES && to > from {
            break;
        }
        to += 1;
    }
    let items: Vec<Value> = matching[from..to]
        .iter()
        .map(|(i, e)| {
            json!({
                "logStreamName": e.stream,
                "timestamp": e.timestamp_ms,
                "message": e.message,
                "ingestionTime": e.timestamp_ms + 200,
                "eventId": format!("{:056}", i),
            })
        })
        .collect();
    let mut out = json!({"events": items, "searchedLogStreams": []});
    if to < matching.len() {
        out["nextToken"] = json!(to.to_string());
    }
    Ok(out)
}

/// The most stream names one FilterLogEvents takes.
const MAX_STREAM_NAMES: usize = 100;
/// The most events one FilterLogEvents page holds.
const MAX_EVENTS: usize = 10_000;
/// The most bytes of events one page holds (each event counted as its message plus 26 bytes).
const MAX_PAGE_BYTES: usize = 1_048_576;

/// A filter pattern for unstructured events.
#[derive(Debug, PartialEq, Eq)]
enum Pattern {
    /// Every term must appear (also: no terms, every event).
    All(Vec<String>),
    /// `?a ?b`: any of the terms.
    Any(Vec<String>),
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        let terms = pattern_terms(pattern);
        if !terms.is_empty() && terms.iter().all(|t| t.starts_with('?')) {
            Pattern::Any(terms.into_iter().map(|t| t[1..].to_owned()).collect())
        } else {
            Pattern::All(terms)
        }
    }

    fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All(terms) => terms.iter().all(|t| message.contains(t.as_str())),
            Pattern::Any(terms) => terms.iter().any(|t| message.contains(t.as_str())),
        }
    }
}

/// Split a filter pattern into terms: `"quoted phrase"` or bare words, each possibly `?`-led
/// (kept on the term).
fn pattern_terms(pattern: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut rest = pattern.trim();
    while !rest.is_empty() {
        let (any, after) = match rest.strip_prefix('?') {
            Some(after) => ("?", after),
            None => ("", rest),
        };
        if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            terms.push(format!("{any}{}", &quoted[..end]));
            rest = quoted.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            terms.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    terms.retain(|t| !t.is_empty());
    terms
}

#[cfg(test)]
mod tests {
    use crate::state::{Account, LogEvent, Timing};
    use serde_json::json;

    fn account() -> Account {
        let timing = Timing { task_start_ms: 0, task_stop_ms: 0, agent_start_ms: 0 };
        let mut account = Account::empty("123456789012", "us-east-1", timing, "logs");
        let event = |stream: &str, timestamp_ms: u64, message: &str| LogEvent {
            stream: stream.into(),
            timestamp_ms,
            message: message.into(),
        };
        account.log_groups.insert(
            "g".into(),
            vec![
                event("staging/c/t1", 10, "s1"),
                event("production/c/t2", 20, "p1"),
                event("production/c/t2", 5, "late"),
            ],
        );
        account
    }

    fn messages(answer: &serde_json::Value) -> Vec<&str> {
        answer["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect()
    }

    #[test]
    fn streams_are_picked_by_prefix_or_by_name_never_both() {
        let account = account();
        let by_prefix =
            super::filter_log_events(&account, &json!({"logGroupName": "g", "logStreamNamePrefix": "production/"}))
                .unwrap();
        assert_eq!(messages(&by_prefix), ["late", "p1"], "time order, whatever the order taken in");
        let by_name =
            super::filter_log_events(&account, &json!({"logGroupName": "g", "logStreamNames": ["staging/c/t1"]}))
                .unwrap();
        assert_eq!(messages(&by_name), ["s1"]);
        let both = json!({"logGroupName": "g", "logStreamNames": ["staging/c/t1"], "logStreamNamePrefix": "staging/"});
        let error = super::filter_log_events(&account, &both).unwrap_err();
        assert_eq!(error.code, "InvalidParameterException");
        for names in [json!([]), json!((0..101).map(|i| format!("s{i}")).collect::<Vec<_>>())] {
            let error =
                super::filter_log_events(&account, &json!({"logGroupName": "g", "logStreamNames": names})).unwrap_err();
            assert_eq!(error.code, "InvalidParameterException");
        }
    }

    #[test]
    fn an_event_keeps_its_id_from_call_to_call() {
        let mut account = account();
        let ids = |account: &Account, params: serde_json::Value| -> Vec<(String, String)> {
            let answer = super::filter_log_events(account, &params).unwrap();
            answer["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["message"].as_str().unwrap().to_owned(), e["eventId"].as_str().unwrap().to_owned()))
                .collect()
        };
        let before = ids(&account, json!({"logGroupName": "g"}));
        let distinct: std::collections::BTreeSet<&String> = before.iter().map(|(_, id)| id).collect();
        assert_eq!(distinct.len(), before.len());
        // An event taken later with an earlier time changes no other event's id.
        account.log_groups["g"].push(LogEvent {
            stream: "production/c/t2".into(),
            timestamp_ms: 1,
            message: "later".into(),
        });
        let after = ids(&account, json!({"logGroupName": "g"}));
        assert_eq!(after[0].0, "later");
        assert_eq!(after[1..], before[..]);
        assert_eq!(ids(&account, json!({"logGroupName": "g", "logStreamNamePrefix": "staging/"})), [before[1].clone()]);
    }

    #[test]
    fn pattern_terms_split_quotes_and_words() {
        assert_eq!(super::pattern_terms(r#""stream errored out" conflict"#), ["stream errored out", "conflict"]);
        assert!(super::pattern_terms("  ").is_empty());
        let any = super::Pattern::parse(r#"?"Tentativa " ?"Erro não recuperável" ?JWT"#);
        assert_eq!(any, super::Pattern::Any(vec!["Tentativa ".into(), "Erro não recuperável".into(), "JWT".into()]));
        assert!(any.matches("  message: 'Erro não recuperável (401): x',"));
        assert!(!any.matches("  statusCode: 401,"));
        assert!(!super::Pattern::parse("a b").matches("a only"));
    }
}
