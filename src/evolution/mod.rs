//! The Evolution API driver: each operation is one small node program ([`program`]) sent through
//! the run envelope, calling `http://127.0.0.1:$SERVER_PORT` inside the container with the API key
//! read there as 2.3.7 reads it (a set variable wins even when empty, which means the code
//! default; only an unset one comes from the image's `.env`). Responses become typed values
//! ([`api`]); every error shape the API has (string, array and nested-array messages, HTTP 200
//! with `{"error":true}`) becomes one [`Error`] with the API's own message.

use crate::aws::Aws;
use crate::error::{Error, ExecKind, Result};
use crate::exec::envelope::{RunSpec, Stdin};
use crate::exec::run::{Collected, OutputSink, RunOptions};
use crate::exec::target::ExecTarget;
use crate::output::sanitize::quote_line;
use program::Mode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

pub mod api;
pub mod checkup;
pub mod logs;
pub mod probe;
pub mod program;
pub mod reasons;
pub mod retries;
pub mod shape;

/// A way to reach the Evolution API inside one task.
pub struct Driver<'a> {
    pub aws: &'a Aws,
    pub target: &'a ExecTarget,
    pub options: RunOptions,
}

/// How the link watch polls.
#[derive(Debug, Clone, Copy)]
pub struct WatchTiming {
    pub interval: Duration,
    /// The poll while no code has been shown yet (and the instance is not open).
    pub first_code_interval: Duration,
    pub timeout: Duration,
    /// How long the instance must stay `open` to count as linked.
    pub stable: Duration,
}

/// A raw API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// One call for the program in the container.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: Option<&'a Value>,
    /// The body field (path of keys) to fill from the secret, and the secret; the secret goes
    /// over the data channel (stdin), never in the command string.
    pub secret: Option<(&'a [&'a str], &'a str)>,
    /// The instance the call acts on: checked first (in the same session) to be held by this
    /// Evolution process, so a row another process owns is refused instead of acted on.
    pub owner_check: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Call<'a> {
        Call { method, path, body: None, secret: None, owner_check: None }
    }
}

impl Driver<'_> {
    /// One API call, as [`Call`] says.
    pub async fn call(&self, call: Call<'_>) -> Result<Answer> {
        Ok(self.call_with_state(call).await?.0)
    }

    /// One API call, and the instance's live state its owner check read just before it
    /// (`None` without an owner check).
    pub async fn call_with_state(&self, call: Call<'_>) -> Result<(Answer, Option<String>)> {
        let request = json!({
            "method": call.method,
            "path": call.path,
            "body": call.body,
            "secret": call.secret.map(|(path, _)| path.to_vec()),
            "guard": call.owner_check.map(state_path),
        });
        let parsed = self.run(Mode::Call, &request, call.secret.map(|(_, value)| value.as_bytes().to_vec())).await?;
        if parsed["foreign"] == true {
            return Err(foreign(call.owner_check.unwrap_or("the instance")));
        }
        let state = parsed["state"].as_str().map(str::to_owned);
        Ok((answer(parsed["status"].as_u64().unwrap_or(0) as u16, &parsed["body"]), state))
    }

    /// Several GETs in one exec session, in order; their answers in that order (fewer when the
    /// program ended early).
    pub async fn calls(&self, paths: &[String]) -> Result<Vec<Answer>> {
        let request = json!({"calls": paths});
        let parsed = self.run(Mode::Calls, &request, None).await?;
        let answers = parsed["answers"].as_array().cloned().unwrap_or_default();
        answers
            .iter()
            .map(|a| match a["error"].as_str() {
                Some(problem) => Err(no_answer(problem, &self.target.env)),
                None => Ok(answer(a["status"].as_u64().unwrap_or(0) as u16, &a["body"])),
            })
            .collect::<Result<Vec<_>>>()
    }

    /// What the calls of this driver act on, for the fixes of their errors.
    pub fn acted<'a>(&'a self, instance: Option<&'a str>) -> Acted<'a> {
        Acted { env: &self.target.env, instance }
    }

    /// The same GET every `interval` for `duration`, all in one exec session; each answer with
    /// its offset from the first call.
    pub async fn sample(&self, path: &str, duration: Duration, interval: Duration) -> Result<Vec<(Duration, Answer)>> {
        let request = json!({
            "method": "GET",
            "path": path,
            "body": null,
            "secret": null,
            "repeat": {"duration_ms": duration.as_millis() as u64, "interval_ms": interval.as_millis() as u64},
        });
        let parsed = self.run(Mode::Sample, &request, None).await?;
        let samples: Vec<Sample> = serde_json::from_value(parsed["samples"].clone()).unwrap_or_default();
        Ok(samples
            .into_iter()
            .map(|s| (Duration::from_millis(s.t), answer(s.status, &Value::String(s.body))))
            .collect())
    }

    /// Watch `name` until it is linked, in one exec session: create it first when `create` is
    /// given and the name is missing (its `jwt_key` over stdin), then poll connect every
    /// `first_code_interval` until a first code, then every `interval` (with `?number=` for a
    /// pairing code), then connectionState for `stable` once
    /// open. With `first_only` it ends at the first fresh code (or `open`). Events are printed
    /// one JSON line each to `sink` as they happen (see [`crate::runbook::watch`]).
    pub async fn watch_link(&self, watch: Watch<'_>, sink: &mut dyn OutputSink) -> Result<i32> {
        let Watch { name, number, create, timing, first_only, reach_after } = watch;
        let reach = match reach_after {
            Some(after) => {
                let mut reach = probe::reach_request(probe::REACH_TIMEOUT)?;
                reach["after_ms"] = json!(after.as_millis() as u64);
                Some(reach)
            }
            None => None,
        };
        let mut path = format!("/instance/connect/{}", api::segment(name));
        if let Some(number) = number {
            path.push_str(&format!("?number={number}"));
        }
        let secret = create.and_then(|(request, key)| key.filter(|_| request.webhook.is_some()));
        let request = json!({
            "method": "GET",
            "path": path,
            "body": null,
            "secret": secret.map(|_| ["webhook", "headers", "jwt_key"]),
            "watch": {
                "find_path": format!("/instance/fetchInstances?instanceName={}", api::segment(name)),
                "create": create.map(|(request, _)| serde_json::to_value(request).expect("request serialises")),
                "state_path": state_path(name),
                "number": number,
                "first_only": first_only,
                "reach": reach,
                "interval_ms": timing.interval.as_millis() as u64,
                "first_code_interval_ms": timing.first_code_interval.as_millis() as u64,
                "timeout_ms": timing.timeout.as_millis() as u64,
                "stable_ms": timing.stable.as_millis() as u64,
            },
        });
        self.stream(Mode::Watch, &request, secret, sink).await
    }

    /// Delete `name` and wait, in one exec session, until Evolution's cleanup has removed it
    /// (polling every `interval`, up to `timeout`); events as one JSON line each to `sink`.
    pub async fn delete_and_wait(
        &self,
        name: &str,
        interval: Duration,
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> Result<i32> {
        let request = json!({
            "method": "DELETE",
            "path": format!("/instance/delete/{}", api::segment(name)),
            "body": null,
            "secret": null,
            "guard": state_path(name),
            "gone": {
                "find_path": format!("/instance/fetchInstances?instanceName={}", api::segment(name)),
                "webhook_path": format!("/webhook/find/{}", api::segment(name)),
                "interval_ms": interval.as_millis() as u64,
                "timeout_ms": timeout.as_millis() as u64,
            },
        });
        self.stream(Mode::Gone, &request, None, sink).await
    }

    /// Run the request program for an event-streaming mode.
    async fn stream(
        &self,
        mode: Mode,
        request: &Value,
        secret: Option<&str>,
        sink: &mut dyn OutputSink,
    ) -> Result<i32> {
        let stdin = secret.map(|key| Stdin::Bytes(key.as_bytes().to_vec()));
        let mut request = request.clone();
        if mode != Mode::Checkup {
            // The checkup checks the route beside GET / itself.
            request["route"] = probe::route_request(true)?;
        }
        let spec = RunSpec::node(program::source(mode, &request), stdin);
        crate::exec::run::run(self.aws, self.target, &spec, &self.options, sink).await
    }

    /// Run the request program for `request` and return its checked JSON reply.
    async fn run(&self, mode: Mode, request: &Value, stdin: Option<Vec<u8>>) -> Result<Value> {
        let mut request = request.clone();
        request["route"] = probe::route_request(false)?;
        let spec = RunSpec::node(program::source(mode, &request), stdin.map(Stdin::Bytes));
        let mut collected = Collected::default();
        let status = crate::exec::run::run(self.aws, self.target, &spec, &self.options, &mut collected).await?;
        let parsed: Value = serde_json::from_slice(&collected.stdout).map_err(|_| {
            Error::exec(
                ExecKind::Container,
                format!(
                    "the Evolution call in the container did not answer (exit {status}): {}",
                    quote_line(&String::from_utf8_lossy(&collected.stderr), MAX_QUOTE)
                ),
                format!(
                    "check that the container has node and that Evolution is up (`evoctl doctor {}`)",
                    self.target.env
                ),
            )
        })?;
        if parsed["route"].is_object() {
            let reach: probe::Reach = serde_json::from_value(parsed["route"].clone()).map_err(|e| {
                Error::exec(
                    ExecKind::Container,
                    format!("the route check in the container answered in an unknown shape: {e}"),
                    format!("check the task's route to WhatsApp: `evoctl doctor {}`", self.target.env),
                )
            })?;
            if let Some(err) = reach.waiting_error(&self.target.env) {
                return Err(err);
            }
        }
        if let Some(problem) = parsed["error"].as_str() {
            return Err(no_answer(problem, &self.target.env));
        }
        Ok(parsed)
    }
}

/// The Evolution API did not answer the program in the container (`problem`: what node's fetch
/// said).
fn no_answer(problem: &str, env: &str) -> Error {
    Error::exec(
        ExecKind::Container,
        format!(
            "the Evolution API did not answer on 127.0.0.1:$SERVER_PORT inside the container: {}",
            quote_line(problem, MAX_QUOTE)
        ),
        format!(
            "check that the Evolution process is up in the task (`evoctl doctor {env}`; its log: `evoctl logs {env} --kind error`)"
        ),
    )
}

/// What [`Driver::watch_link`] watches.
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    pub name: &'a str,
    /// A pairing code for this number instead of a QR.
    pub number: Option<&'a str>,
    /// Create the instance first when it is missing (with its webhook's `jwt_key`).
    pub create: Option<(&'a api::CreateRequest, Option<&'a str>)>,
    pub timing: WatchTiming,
    /// End at the first fresh code (or `open`) instead of waiting for the link.
    pub first_only: bool,
    /// No QR after this long: probe the route to WhatsApp (and end the watch when there is none).
    pub reach_after: Option<Duration>,
}

/// One answer of a repeat-mode call.
#[derive(Debug, Deserialize)]
struct Sample {
    t: u64,
    status: u16,
    body: String,
}

/// `/instance/connectionState/NAME`.
fn state_path(name: &str) -> String {
    format!("/instance/connectionState/{}", api::segment(name))
}

/// The finding for a row this Evolution process does not hold: the database is shared with
/// another process (another `DATABASE_CONNECTION_CLIENT_NAME`), which owns it.
pub fn foreign(name: &str) -> Error {
    Error::refused(
        format!(
            "another Evolution process owns instance {name}: the database is shared (the row is in this deployment's database but another DATABASE_CONNECTION_CLIENT_NAME loaded it); nothing was changed"
        ),
        "give every environment its own DATABASE_CONNECTION_URI (`evoctl audit` shows which share one)",
    )
}

/// What a call acted on, for the commands its errors' fixes name: the environment, and for an
/// instance-scoped call the instance (named always: a fix must act on the instance the call
/// did, never on the environment's own by default).
#[derive(Debug, Clone, Copy)]
pub struct Acted<'a> {
    pub env: &'a str,
    pub instance: Option<&'a str>,
}

impl Acted<'_> {
    /// `production`, or `production NAME`.
    pub fn args(&self) -> String {
        subject(self.env, self.instance)
    }
}

/// How a command line names an environment and (when given) an instance:
/// `production`, `production named1`.
pub fn subject(env: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("{env} {instance}"),
        None => env.to_owned(),
    }
}

/// A body text as JSON when it parses, else as a string. Every credential the body carries
/// (a `jwt_key`, a token the container did not blank) is held from here on, so nothing printed
/// later can show it.
fn answer(status: u16, body: &Value) -> Answer {
    let text = body.as_str().unwrap_or("");
    let body = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    crate::output::sanitize::hold_fields(&body);
    Answer { status, body }
}

/// A failed answer's body: `{status, error, response: {message}}` (message a string, an array,
/// or an array of arrays), or 2.3.7's soft failure `{error: true, message}` with HTTP 200.
#[derive(Debug, Default, Deserialize)]
struct ErrorReply {
    #[serde(default)]
    error: Value,
    #[serde(default)]
    message: Value,
    #[serde(default)]
    response: Option<ErrorResponse>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    message: Value,
}

/// Turn a failed answer (status >= 400, or 200 with `error: true`) into an error; `None` if
/// fine. `acted` names the environment and instance in the fix.
pub fn failure(answer: &Answer, what: &str, acted: Acted<'_>) -> Option<Error> {
    let reply: ErrorReply = serde_json::from_value(answer.body.clone()).unwrap_or_default();
    let soft = reply.error == Value::Bool(true);
    if answer.status < 400 && !soft {
        return None;
    }
    if let Some(err) = licence_required(answer, what, acted.env) {
        return Some(err);
    }
    let message = if soft { flatten(&reply.message) } else { flatten(&reply.response.unwrap_or_default().message) };
    // 2.3.7's logout of a paired instance whose socket is closed throws `Connection Closed`
    // (500); delete rewraps the same throw as a 400 `[object Object]`.
    let socket_down = (answer.status == 500 && message == "Error: Connection Closed")
        || (what == "delete" && answer.status == 400 && message == "[object Object]");
    let args = acted.args();
    let env = acted.env;
    if socket_down {
        return Some(Error::Unavailable {
            message: format!(
                "{what}: the instance's WhatsApp socket is down (Evolution answered {} {message:?}); nothing was changed",
                answer.status
            ),
            fix: format!(
                "restart the instance (`evoctl instance restart {args}`), or retry once it has reconnected (`evoctl instance state {args}` says open)"
            ),
        });
    }
    let message = if message.is_empty() { unexplained(&answer.body) } else { quote_line(&message, MAX_MESSAGE) };
    let fix = match answer.status {
        _ if soft => format!(
            "Evolution failed inside (2.3.7 often says \"[object Object]\"): its log has the error (`evoctl logs {env} --kind error`)"
        ),
        401 => {
            "the API key evoctl read in the container was refused: check AUTHENTICATION_API_KEY in the task definition"
                .into()
        }
        403 => "that name is taken (possibly by another environment sharing the database): pick another or delete it"
            .into(),
        404 => format!("check the instance name (`evoctl instance list {env}`)"),
        400 => "the request was refused as invalid; the message says which field".into(),
        _ => format!("Evolution failed inside: its log has the error (`evoctl logs {env} --kind error`); then retry"),
    };
    Some(Error::Evolution { status: answer.status, message: format!("{what}: {message}"), fix })
}

/// Evolution 2.4's licence gate (`src/licensing/runtime.ts:311-351` at 2.4.0-rc2): 503 with
/// `code: LICENSE_REQUIRED` on every business route until the server is activated. One error
/// that says so and how to activate; `None` for any other answer.
pub fn licence_required(answer: &Answer, what: &str, env: &str) -> Option<Error> {
    if answer.status != 503 || answer.body["code"] != "LICENSE_REQUIRED" {
        return None;
    }
    let identity = match answer.body["instance_id"].as_str() {
        Some(id) => format!(" (licence identity {})", quote_line(id, 80)),
        None => String::new(),
    };
    Some(Error::Unavailable {
        message: format!(
            "{what}: Evolution answered 503 LICENSE_REQUIRED: this server (2.4) is not activated{identity}, and until it is it refuses every call but /, /license/* and the manager; nothing was changed"
        ),
        fix: format!(
            "activate it once for its database: sign in at the manager's /manager/login on the service's URL, or redeem an authorization code with GET /license/activate?code=CODE, or give the task AUTHENTICATION_API_KEY set to a licensing key or (2.4.0-rc2) EVOLUTION_OPERATOR_EMAIL for headless activation and replace the task; GET /license/status then says active (https://docs.evolutionfoundation.com.br/licensing), and `evoctl doctor {env}` checks it"
        ),
    })
}

/// The longest API message shown as is; a longer one (a hostile or broken answer) is cut.
const MAX_MESSAGE: usize = 600;
/// The longest piece of other text from the container quoted in an error.
const MAX_QUOTE: usize = 300;

/// A failed answer without a message: what it was, never its content (an error page can echo
/// the request, key included). A page's title says which proxy or gateway answered.
fn unexplained(body: &Value) -> String {
    static TITLE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?is)<title[^>]*>(.*?)</title>").expect("static regex"));
    match body {
        Value::String(text) if text.trim().is_empty() => "an empty answer".into(),
        Value::String(text) => match TITLE.captures(text) {
            Some(title) => format!("a page titled {:?}", quote_line(&title[1], 120)),
            None => format!("a non-JSON answer of {} characters", text.chars().count()),
        },
        other => format!("an answer without a message ({})", shape::describe(other)),
    }
}

/// An API message (string, array, or array of arrays) as one line.
pub fn flatten(message: &Value) -> String {
    match message {
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(flatten).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, body }
    }

    #[test]
    fn every_error_shape_becomes_one_message() {
        let cases = [
            (
                answer(401, json!({"status":401,"error":"Unauthorized","response":{"message":"Unauthorized"}})),
                401,
                "x: Unauthorized",
            ),
            (
                answer(
                    404,
                    json!({"status":404,"error":"Not Found","response":{"message":["The \"a\" instance does not exist"]}}),
                ),
                404,
                "x: The \"a\" instance does not exist",
            ),
            (
                answer(
                    400,
                    json!({"status":400,"error":"Bad Request","response":{"message":[["instance requires property \"webhook\""]]}}),
                ),
                400,
                "x: instance requires property \"webhook\"",
            ),
            (answer(200, json!({"error":true,"message":"[object Object]"})), 200, "x: [object Object]"),
            (
                answer(500, json!({"status":500,"error":"Internal Server Error","response":{"message":"boom"}})),
                500,
                "x: boom",
            ),
        ];
        for (answer, status, message) in cases {
            match failure(&answer, "x", Acted { env: "production", instance: None }) {
                Some(Error::Evolution { status: s, message: m, .. }) => {
                    assert_eq!((s, m.as_str()), (status, message));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(failure(&answer(201, json!({"ok": 1})), "x", Acted { env: "production", instance: None }).is_none());
    }
}
