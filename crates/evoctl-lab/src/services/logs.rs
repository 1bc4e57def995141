//! CloudWatch Logs (AWS JSON 1.1, `Logs_20140328`): FilterLogEvents over the lab's log groups,
//! with the simple term filter pattern (every quoted or bare term must appear).

use super::{ActionResult, ApiError, list, page, text};
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
    let terms = pattern_terms(text(params, "filterPattern").unwrap_or(""));
    let matching: Vec<Value> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.timestamp_ms >= start && e.timestamp_ms <= end)
        .filter(|(_, e)| streams.is_empty() || streams.contains(&e.stream))
        .filter(|(_, e)| prefix.is_none_or(|p| e.stream.starts_with(p)))
        .filter(|(_, e)| terms.iter().all(|t| e.message.contains(t.as_str())))
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
    let limit = params.get("limit").and_then(Value::as_u64);
    let (items, next) = page(&matching, text(params, "nextToken"), limit, 10_000);
    let mut out = json!({"events": items, "searchedLogStreams": []});
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

/// Split a filter pattern into terms: `"quoted phrase"` or bare words.
fn pattern_terms(pattern: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut rest = pattern.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            terms.push(quoted[..end].to_owned());
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
    #[test]
    fn pattern_terms_split_quotes_and_words() {
        assert_eq!(super::pattern_terms(r#""stream errored out" conflict"#), ["stream errored out", "conflict"]);
        assert!(super::pattern_terms("  ").is_empty());
    }
}
