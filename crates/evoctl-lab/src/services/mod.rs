//! The AWS APIs the lab answers, one module per service, each a pure function of the account
//! and the request parameters. Shared here: the error type and parameter helpers.

pub mod autoscaling;
pub mod ecs;
pub mod kms;
pub mod lambda;
pub mod logs;
pub mod signin;
pub mod ssm;
pub mod sts;

use serde_json::Value;

/// An AWS error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into() }
    }

    /// A 400 client error.
    pub fn client(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message)
    }
}

/// The result of one action.
pub type ActionResult = Result<Value, ApiError>;

/// A string parameter.
pub fn text<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

/// A required string parameter, or the validation error AWS would send.
pub fn required<'a>(params: &'a Value, key: &str, code: &str) -> Result<&'a str, ApiError> {
    text(params, key).ok_or_else(|| ApiError::client(code, format!("{key} is required")))
}

/// A list of strings parameter (missing = empty).
pub fn list(params: &Value, key: &str) -> Vec<String> {
    params
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Epoch milliseconds as the epoch-seconds number AWS JSON protocols use.
pub fn epoch(ms: u64) -> Value {
    serde_json::json!(ms as f64 / 1000.0)
}

/// Page a list with `nextToken` = the start index (as AWS does, opaque to clients).
pub fn page<T: Clone>(
    items: &[T],
    token: Option<&str>,
    max: Option<u64>,
    default_max: usize,
) -> (Vec<T>, Option<String>) {
    let start = token.and_then(|t| t.parse::<usize>().ok()).unwrap_or(0).min(items.len());
    let size = max.map(|m| m as usize).filter(|&m| m > 0).unwrap_or(default_max);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (items[start..end].to_vec(), next)
}
