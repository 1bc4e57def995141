//! `evoctl manager ENV` and `evoctl metrics ENV`: Evolution's own web surfaces through a port
//! forward to the container's `SERVER_PORT` ([`super::port_forward`]'s set-up and sessions).
//!
//! Both read the live task's task definition first (the task's own revision, from
//! DescribeTasks): `SERVER_PORT` (Evolution 2.3.7: `Number.parseInt(SERVER_PORT) || 8080`), where
//! the global API key comes from (never its value), and, for `metrics`, the `PROMETHEUS_METRICS`
//! and `METRICS_*` settings. `manager` prints `http://127.0.0.1:PORT/manager` and forwards until
//! Ctrl-C (130). `metrics` sends one `GET /metrics` through the forward (with basic-auth
//! credentials when the task definition gives them: a plain value, or an SSM parameter read
//! with the caller's credentials; held in memory only and masked in every output), prints the
//! answer and ends the session. 2.3.7 serves `/metrics` only with `PROMETHEUS_METRICS=true`
//! (`src/api/routes/index.router.ts:91-106`); otherwise the path is its 404, and `metrics` says
//! why (exit 1, as for any check that failed). See docs/evolution.md "/metrics".

use super::Context;
use super::port_forward::{self, Ready, Setup};
use crate::aws::container_secrets::{self, Read};
use crate::aws::taskdef::{self, ContainerSettings, EnvValue};
use crate::aws::{Aws, sdk_failure};
use crate::cli::{ManagerArgs, MetricsArgs};
use crate::error::{Error, Result};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Evolution's port when `SERVER_PORT` is unset or not a number (`env.config.ts`).
pub const DEFAULT_SERVER_PORT: u16 = 8080;
/// How long the one `/metrics` request may take once the forward is open.
const FETCH_LIMIT: Duration = Duration::from_secs(30);
/// The most of a `/metrics` answer that is read.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How often `metrics` checks the task meanwhile (the exchange is short).
const METRICS_WATCHDOG: Duration = Duration::from_secs(5);

/// Where the global API key is, for the operator to fetch it (never the key itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum KeyPlace {
    /// A plain `environment` entry of the task definition.
    Environment { variable: &'static str, task_definition: String },
    /// A `secrets` entry: the secret's (qualified) ARN.
    Secret { variable: &'static str, secret_arn: String },
    /// Not set: the image's `.env` value (or 2.3.7's code default) is live.
    Unset { variable: &'static str, task_definition: String },
}

impl KeyPlace {
    fn describe(&self) -> String {
        match self {
            KeyPlace::Environment { variable, task_definition } => {
                format!("the API key is the variable {variable} of task definition {task_definition}")
            }
            KeyPlace::Secret { variable, secret_arn } => {
                format!("the API key ({variable}) is the secret {secret_arn}")
            }
            KeyPlace::Unset { variable, task_definition } => format!(
                "task definition {task_definition} does not set {variable}: the image's default key is live (`evoctl audit` flags it)"
            ),
        }
    }
}

/// What the two commands read from the task definition.
struct Evolution {
    settings: ContainerSettings,
    task_definition: String,
    port: u16,
}

impl Evolution {
    fn plain(&self, name: &str) -> Option<&str> {
        match self.settings.environment.get(name) {
            Some(EnvValue::Plain(value)) => Some(value.as_str()),
            _ => None,
        }
    }

    fn key_place(&self) -> KeyPlace {
        const VARIABLE: &str = "AUTHENTICATION_API_KEY";
        match self.settings.environment.get(VARIABLE) {
            Some(EnvValue::Plain(value)) => {
                crate::output::sanitize::hold(value);
                KeyPlace::Environment { variable: VARIABLE, task_definition: self.task_definition.clone() }
            }
            Some(EnvValue::Reference(from)) => KeyPlace::Secret {
                variable: VARIABLE,
                secret_arn: container_secrets::qualify(from, self.settings.task_definition_arn.as_deref())
                    .map_or_else(|| from.clone(), |s| s.arn),
            },
            None => KeyPlace::Unset { variable: VARIABLE, task_definition: self.task_definition.clone() },
        }
    }
}

/// `Number.parseInt(text) || 8080`, kept to a TCP port.
fn server_port(text: Option<&str>) -> u16 {
    let text = text.unwrap_or("").trim_start();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<u32>() {
        Ok(port) if (1..=65535).contains(&port) => port as u16,
        _ => DEFAULT_SERVER_PORT,
    }
}

/// The live task's container settings (its own task definition revision).
async fn read_evolution(setup: &Setup) -> Result<Evolution> {
    let ecs = setup.aws.ecs();
    let target = &setup.target;
    let out = ecs
        .describe_tasks()
        .cluster(&target.cluster)
        .tasks(&target.task.arn)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeTasks", e)))?;
    let task_definition =
        out.tasks().first().and_then(|t| t.task_definition_arn()).map(str::to_owned).ok_or_else(|| {
            Error::not_found(
                format!("ECS did not say which task definition task {} runs", target.task.id),
                format!("check the task with `evoctl task {}`", target.env),
            )
        })?;
    let settings = taskdef::container_settings(&ecs, &task_definition, &target.container).await?;
    let port = match settings.environment.get("SERVER_PORT") {
        Some(EnvValue::Plain(value)) => server_port(Some(value)),
        Some(EnvValue::Reference(_)) => {
            return Err(Error::usage(
                "SERVER_PORT comes from a secret in the task definition; evoctl reads the port only from a plain variable",
                format!("forward the port yourself: `evoctl port-forward {} PORT`", target.env),
            ));
        }
        None => DEFAULT_SERVER_PORT,
    };
    Ok(Evolution { settings, task_definition, port })
}

/// The URL a browser opens for the forward at `at`.
fn url_of(at: SocketAddr, path: &str) -> String {
    let ip = if at.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { at.ip() };
    format!("http://{}{path}", SocketAddr::new(ip, at.port()))
}

/// `--output json` of `manager` (schema `evoctl.manager/v1`).
#[derive(Debug, Serialize)]
struct ManagerReport<'a> {
    schema: &'static str,
    env: &'a str,
    task_id: &'a str,
    container: &'a str,
    url: String,
    local: String,
    remote_port: u16,
    session_id: String,
    api_key: KeyPlace,
}

pub async fn manager(context: &Context, args: &ManagerArgs) -> Result<u8> {
    let setup =
        port_forward::prepare(context, &args.env, args.container.as_deref(), args.address, &[args.port]).await?;
    let evolution = setup
        .within(
            "the task definition was still being read (DescribeTasks/DescribeTaskDefinition)",
            read_evolution(&setup),
        )
        .await?;
    let disabled = evolution.plain("SERVER_DISABLE_MANAGER") == Some("true");
    let key = evolution.key_place();
    let watchdog = Duration::from_millis(args.watchdog_ms);
    port_forward::serve(context, setup, &[evolution.port], None, watchdog, |ready: &Ready<'_>| {
        let at = ready.bound[0];
        let url = url_of(at, "/manager");
        let report = ManagerReport {
            schema: "evoctl.manager/v1",
            env: &ready.target.env,
            task_id: &ready.target.task.id,
            container: &ready.target.container,
            url: url.clone(),
            local: at.to_string(),
            remote_port: evolution.port,
            session_id: ready.opened[0].0.clone(),
            api_key: key.clone(),
        };
        context.printer.data(&report, || url.clone());
        if disabled {
            context.printer.warn(&format!(
                "task definition {} sets SERVER_DISABLE_MANAGER=true: Evolution does not serve /manager (its 404); the API answers at {}",
                evolution.task_definition,
                url_of(at, "/")
            ));
        }
        context.printer.note(&format!("{}; log in with it", key.describe()));
        context.printer.note(&format!(
            "forwarding to port {} of task {} of {} (Ctrl-C to stop)",
            evolution.port, ready.target.task.id, ready.target.env
        ));
        if args.open
            && let Err(e) = webbrowser::open(&url)
        {
            context.printer.warn(&format!("could not open a browser ({e}); open {url} yourself"));
        }
        None::<std::future::Ready<Result<u8>>>
    })
    .await
}

/// `--output json` of `metrics` (schema `evoctl.metrics/v1`).
#[derive(Debug, Serialize)]
struct MetricsReport<'a> {
    schema: &'static str,
    env: &'a str,
    task_id: &'a str,
    status: u16,
    /// The Prometheus text exposition, as Evolution sent it.
    metrics: String,
}

/// Basic-auth credentials from the task definition, or why there are none.
enum Credentials {
    Basic(String),
    Unknown(String),
}

async fn credentials(aws: &Aws, evolution: &Evolution) -> Result<Credentials> {
    let mut values = Vec::new();
    for name in ["METRICS_USER", "METRICS_PASSWORD"] {
        let value = match evolution.settings.environment.get(name) {
            Some(EnvValue::Plain(value)) => value.clone(),
            Some(EnvValue::Reference(from)) => {
                let Some(secret) = container_secrets::qualify(from, evolution.settings.task_definition_arn.as_deref())
                else {
                    return Ok(Credentials::Unknown(format!("{name} points at {from}, which evoctl cannot place")));
                };
                match container_secrets::read(aws, &secret).await? {
                    Read::Value(value) => value,
                    Read::Unread(why) => {
                        return Ok(Credentials::Unknown(format!("{name} is {} ({why})", secret.arn)));
                    }
                }
            }
            None => return Ok(Credentials::Unknown(format!("the task definition does not set {name}"))),
        };
        crate::output::sanitize::hold(&value);
        values.push(value);
    }
    let pair = format!("{}:{}", values[0], values[1]);
    let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    crate::output::sanitize::hold(&header);
    Ok(Credentials::Basic(header))
}

/// One answer of Evolution's.
struct Answer {
    status: u16,
    body: String,
}

/// `GET path` on the forward's local end, one connection, HTTP/1.1.
async fn get(at: SocketAddr, path: &str, authorization: Option<&str>) -> Result<Answer> {
    let transport = |e: &dyn std::fmt::Display| {
        Error::exec(
            crate::error::ExecKind::Protocol,
            format!("GET {path} through the forward failed: {e}"),
            "retry; if it persists, check the task's health with `evoctl status`",
        )
    };
    let stream = tokio::net::TcpStream::connect(at).await.map_err(|e| transport(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| transport(&e))?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, at.to_string());
    if let Some(authorization) = authorization {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let request = request.body(http_body_util::Empty::<hyper::body::Bytes>::new()).expect("a valid request");
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| transport(&e))?
            .to_bytes();
        Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
    }
    .await;
    driver.abort();
    answer
}

pub async fn metrics(context: &Context, args: &MetricsArgs) -> Result<u8> {
    let setup =
        port_forward::prepare(context, &args.env, args.container.as_deref(), IpAddr::V4(Ipv4Addr::LOCALHOST), &[0])
            .await?;
    let evolution = setup
        .within(
            "the task definition was still being read (DescribeTasks/DescribeTaskDefinition)",
            read_evolution(&setup),
        )
        .await?;
    let credentials =
        setup.within("the metrics credentials were still being read", credentials(&setup.aws, &evolution)).await?;
    port_forward::serve(context, setup, &[evolution.port], None, METRICS_WATCHDOG, |ready: &Ready<'_>| {
        let at = ready.bound[0];
        let env = ready.target.env.clone();
        let task_id = ready.target.task.id.clone();
        let evolution = &evolution;
        let credentials = &credentials;
        Some(async move {
            let authorization = match credentials {
                Credentials::Basic(header) => Some(header.as_str()),
                Credentials::Unknown(_) => None,
            };
            let answer =
                tokio::time::timeout(FETCH_LIMIT, get(at, "/metrics", authorization)).await.map_err(|_| {
                    Error::Timeout {
                        message: format!(
                            "GET /metrics through the forward did not answer within {}",
                            crate::exec::native::seconds(FETCH_LIMIT)
                        ),
                        fix: Some(format!("check the task with `evoctl doctor {env}`")),
                    }
                })??;
            if answer.status == 200 {
                let report = MetricsReport {
                    schema: "evoctl.metrics/v1",
                    env: &env,
                    task_id: &task_id,
                    status: answer.status,
                    metrics: answer.body.clone(),
                };
                context.printer.data(&report, || answer.body.clone());
                return Ok(crate::exit::OK);
            }
            Err(refused(&env, evolution, credentials, &answer))
        })
    })
    .await
}

/// Why Evolution did not serve `/metrics`, from its answer and the task definition.
fn refused(env: &str, evolution: &Evolution, credentials: &Credentials, answer: &Answer) -> Error {
    let td = &evolution.task_definition;
    let body = answer.body.trim();
    match answer.status {
        404 => {
            let setting = match evolution.settings.environment.get("PROMETHEUS_METRICS") {
                Some(EnvValue::Plain(value)) => format!("task definition {td} sets PROMETHEUS_METRICS={value}"),
                Some(EnvValue::Reference(from)) => format!("task definition {td} sets PROMETHEUS_METRICS from {from}"),
                None => format!("task definition {td} does not set PROMETHEUS_METRICS"),
            };
            Error::Unavailable {
                message: format!(
                    "metrics are off in {env}: Evolution serves /metrics only when PROMETHEUS_METRICS=true, and {setting} (GET /metrics answered 404)"
                ),
                fix: "set PROMETHEUS_METRICS=true in the task definition (and METRICS_AUTH_REQUIRED=true with METRICS_USER and METRICS_PASSWORD to protect it), deploy, and run `evoctl metrics` again".into(),
            }
        }
        401 => {
            let why = match credentials {
                Credentials::Basic(_) => {
                    "the credentials from the task definition's METRICS_USER and METRICS_PASSWORD were refused"
                        .to_owned()
                }
                Credentials::Unknown(why) => format!("evoctl has no credentials to send: {why}"),
            };
            Error::Evolution {
                status: 401,
                message: format!(
                    "Evolution asks for a user and password on /metrics (METRICS_AUTH_REQUIRED=true) and answered 401 \"{body}\": {why}"
                ),
                fix: format!(
                    "give task definition {td} METRICS_USER and METRICS_PASSWORD (plain, or SSM parameters you may read) and deploy"
                ),
            }
        }
        500 if body == "Metrics authentication not configured" => Error::Evolution {
            status: 500,
            message: format!(
                "Evolution answered 500 \"{body}\": METRICS_AUTH_REQUIRED=true but METRICS_USER or METRICS_PASSWORD is not set in the container, so /metrics refuses everyone"
            ),
            fix: format!("set both METRICS_USER and METRICS_PASSWORD in task definition {td} and deploy"),
        },
        403 => Error::Evolution {
            status: 403,
            message: format!(
                "Evolution answered 403 \"{body}\": the client address is not in METRICS_ALLOWED_IPS (through the forward the request comes from 127.0.0.1 in the task)"
            ),
            fix: format!("add 127.0.0.1 to METRICS_ALLOWED_IPS in task definition {td} and deploy"),
        },
        status => Error::Evolution {
            status,
            message: format!("GET /metrics answered {status}: {body}"),
            fix: format!("check the container's log with `evoctl logs {env}`"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_port_reads_as_parse_int_or_8080() {
        assert_eq!(server_port(None), 8080);
        assert_eq!(server_port(Some("")), 8080);
        assert_eq!(server_port(Some("9090")), 9090);
        assert_eq!(server_port(Some("9090abc")), 9090);
        assert_eq!(server_port(Some("0")), 8080);
        assert_eq!(server_port(Some("70000")), 8080);
        assert_eq!(server_port(Some("port")), 8080);
    }

    #[test]
    fn urls_name_loopback_for_an_unspecified_address() {
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(url_of(any, "/manager"), "http://127.0.0.1:4000/manager");
        let local: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(url_of(local, "/manager"), "http://127.0.0.1:4001/manager");
        let v6: SocketAddr = "[::1]:4002".parse().unwrap();
        assert_eq!(url_of(v6, "/manager"), "http://[::1]:4002/manager");
    }
}
