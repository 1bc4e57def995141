//! Retries made visible, and a short budget for an endpoint that is not there.
//!
//! The SDK's standard retry strategy does the retrying (attempts, back-off with jitter, the
//! adaptive rate limiter, the retry quota). An interceptor on every client ([`RetryNotice`])
//! watches it: after an attempt that failed and that the SDK's own classifiers will retry, it
//! hands one [`Retrying`] to whoever listens ([`on_retry`]; the printer shows it as
//! `retrying ListTasks (2/8): connection refused to http://127.0.0.1:9`), so a slow answer is
//! never silence.
//!
//! An attempt that could not connect at all (the connection was refused, or the host name did
//! not resolve) says nothing about a busy service, unlike throttling or a 5xx: the endpoint is
//! wrong or down, and the standard back-off (up to 20 s a try, about 40 s at 8 attempts) only
//! delays the answer. For those the interceptor lowers the back-off the strategy reads from the
//! call's configuration to at most [`CONNECT_BACKOFF`], and ends the retries once the next one
//! could not start within [`CONNECT_BUDGET`] of the first attempt. Throttling and 5xx keep the
//! SDK's own back-off. This module never prints.

use aws_smithy_runtime::client::retries::classifiers::run_classifiers_on_ctx;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest back-off between attempts that could not connect.
pub const CONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// How long a call keeps trying an endpoint that refuses connections or does not resolve.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(5);

/// One retry about to happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrying {
    /// The AWS operation (`ListTasks`).
    pub operation: String,
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    pub max_attempts: u32,
    /// What the failed attempt met.
    pub reason: String,
}

impl std::fmt::Display for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "retrying {} ({}/{}): {}", self.operation, self.attempt, self.max_attempts, self.reason)
    }
}

type Listener = Box<dyn Fn(&Retrying) + Send + Sync>;

static LISTENER: OnceLock<Listener> = OnceLock::new();

/// Hand every retry of every AWS call to `listener` (set once per process; later calls are
/// ignored).
pub fn on_retry(listener: impl Fn(&Retrying) + Send + Sync + 'static) {
    let _ = LISTENER.set(Box::new(listener));
}

fn notify(retrying: &Retrying) {
    tracing::debug!(%retrying, "retry");
    if let Some(listener) = LISTENER.get() {
        listener(retrying);
    }
}

/// The interceptor every client carries (see the module documentation).
#[derive(Debug, Default)]
pub struct RetryNotice;

/// When the call's first attempt began, and the retry configuration it began with.
#[derive(Debug, Clone)]
struct CallStart {
    at: Instant,
    retry: RetryConfig,
}

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

/// The endpoint the current attempt was sent to (`scheme://host:port`).
#[derive(Debug, Clone)]
struct Endpoint(String);

impl Storable for Endpoint {
    type Storer = StoreReplace<Self>;
}

/// Why an attempt could not connect at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoConnection {
    Refused,
    NoSuchHost,
}

impl Intercept for RetryNotice {
    fn name(&self) -> &'static str {
        "evoctl: retries made visible"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(retry) = cfg.load::<RetryConfig>().cloned() {
            cfg.interceptor_state().store_put(CallStart { at: Instant::now(), retry });
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Endpoint(origin(context.request().uri())));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(error)) = context.output_or_error() else { return Ok(()) };
        let Some(start) = cfg.load::<CallStart>().cloned() else { return Ok(()) };
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let endpoint = cfg.load::<Endpoint>().map(|e| e.0.clone()).unwrap_or_else(|| "the endpoint".into());
        let no_connection = no_connection(error);
        // The standard strategy reads the retry configuration from the call's bag right after
        // this hook: an endpoint that cannot be reached gets the short back-off and the budget,
        // anything else the configuration the call began with.
        let retry = match no_connection {
            Some(_) => {
                let tight = start.retry.clone().with_max_backoff(CONNECT_BACKOFF.min(start.retry.max_backoff()));
                if start.at.elapsed() + CONNECT_BACKOFF >= CONNECT_BUDGET {
                    tight.with_max_attempts(attempt)
                } else {
                    tight
                }
            }
            None => start.retry.clone(),
        };
        let max_attempts = retry.max_attempts();
        cfg.interceptor_state().store_put(retry);
        if attempt >= max_attempts
            || !run_classifiers_on_ctx(components.retry_classifiers(), context.inner()).should_retry()
        {
            return Ok(());
        }
        let operation = cfg.load::<Metadata>().map(|m| m.name().to_owned()).unwrap_or_else(|| "an AWS call".into());
        let reason = match no_connection {
            Some(NoConnection::Refused) => format!("connection refused to {endpoint}"),
            Some(NoConnection::NoSuchHost) => format!("DNS lookup failed for {endpoint}"),
            None => {
                let bound = cfg.load::<TimeoutConfig>().and_then(TimeoutConfig::operation_attempt_timeout);
                describe(error, &endpoint, bound)
            }
        };
        notify(&Retrying { operation, attempt: attempt + 1, max_attempts, reason });
        Ok(())
    }
}

/// `scheme://host[:port]` of a request URI (never its path or query).
fn origin(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => "the endpoint".into(),
    }
}

/// Every error in `error`'s source chain, outermost first.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Whether the attempt failed before any connection existed: refused, or a name that does not
/// resolve.
fn no_connection<E>(error: &OrchestratorError<E>) -> Option<NoConnection> {
    let connector = error.as_connector_error()?;
    for cause in chain(connector) {
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return Some(NoConnection::Refused);
        }
        // hyper's connector names a failed resolution "dns error".
        if cause.to_string().starts_with("dns error") {
            return Some(NoConnection::NoSuchHost);
        }
    }
    None
}

/// A failed attempt other than a missing endpoint, in a few words: the AWS error code and
/// message, a timeout, or the transport's own words.
fn describe<E: std::error::Error + 'static>(
    error: &OrchestratorError<E>,
    endpoint: &str,
    attempt_timeout: Option<Duration>,
) -> String {
    if error.is_timeout_error() {
        return match attempt_timeout {
            Some(bound) => format!("no answer from {endpoint} within {}", humantime::format_duration(bound)),
            None => format!("no answer from {endpoint} in time"),
        };
    }
    if let Some(operation) = error.as_operation_error() {
        for cause in chain(operation) {
            if let Some(meta) = cause.downcast_ref::<aws_smithy_types::error::ErrorMetadata>() {
                return format!("{}: {}", meta.code().unwrap_or("an error"), meta.message().unwrap_or("no message"));
            }
        }
        let said = operation.to_string();
        // An error the SDK has no type for reads `unhandled error (CODE)`: the code says it.
        return match said.strip_prefix("unhandled error (").and_then(|rest| rest.strip_suffix(')')) {
            Some(code) => code.to_owned(),
            None => cut(&said),
        };
    }
    let words: Vec<String> = chain(error).map(|e| e.to_string()).collect();
    format!("{} ({endpoint})", cut(&words.join(": ")))
}

/// At most 200 characters of a message.
fn cut(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_reads_as_one_line_naming_the_call_and_the_attempt() {
        let retrying = Retrying {
            operation: "ListTasks".into(),
            attempt: 2,
            max_attempts: 8,
            reason: "connection refused to http://127.0.0.1:9".into(),
        };
        assert_eq!(retrying.to_string(), "retrying ListTasks (2/8): connection refused to http://127.0.0.1:9");
    }

    #[test]
    fn the_endpoint_is_its_origin_only() {
        assert_eq!(origin("https://ecs.us-east-1.amazonaws.com/?x=1"), "https://ecs.us-east-1.amazonaws.com");
        assert_eq!(origin("http://127.0.0.1:4566/path"), "http://127.0.0.1:4566");
        assert_eq!(origin("not a url"), "the endpoint");
    }
}
