//! `evoctl port-forward ENV [LOCAL:]REMOTE... [--host HOST] [--address ADDR]`: local ports to
//! ports in the environment's live task (or, with `--host`, to a host the task reaches), one
//! Session Manager port session per forward ([`crate::portfwd`]), until Ctrl-C.
//!
//! The listeners are bound first (a busy local port is a usage error before anything starts);
//! then each forward takes one of the task's session slots and calls `ssm:StartSession`, all
//! bounded by the set-up limit ([`SETUP_LIMIT`], [`EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT`])
//! until every session has opened. Then the bound addresses are printed (a table, or the
//! `evoctl.port-forward/v1` document with `--output json`) and connections go through until
//! Ctrl-C (exit 130, every session ended with TerminateSession) or a forward fails (its error;
//! the other sessions are ended too).

use super::Context;
use crate::aws::Aws;
use crate::cli::PortForwardArgs;
use crate::env_vars::EnvVars;
use crate::error::{Error, Result};
use crate::exec::native::{SessionOptions, seconds};
use crate::exec::sessions::{SessionGuard, TERMINATE_BOUND};
use crate::exec::target::{self, ExecTarget};
use crate::exec::{resume, slots, terminal};
use crate::portfwd::session::{self, Forward};
use crate::portfwd::{self, ForwardSpec, Notice, destination};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How long setting the forwards up may take unless
/// [`EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT`] says otherwise: credentials, the task lookup,
/// StartSession, the data channel (20 s by itself) and the agent's handshake.
pub const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// How long ending a session may take after Ctrl-C (exit within a second of it).
const TERMINATE_AFTER_INTERRUPT: Duration = Duration::from_millis(500);

/// `--output json`: the bound forwards (schema `evoctl.port-forward/v1`).
#[derive(Debug, Serialize)]
struct Report<'a> {
    schema: &'static str,
    env: &'a str,
    task_id: &'a str,
    container: &'a str,
    forwards: Vec<ForwardReport>,
}

#[derive(Debug, Serialize)]
struct ForwardReport {
    /// `ADDR:PORT` as a client connects to it.
    local: String,
    local_address: String,
    local_port: u16,
    remote_host: Option<String>,
    remote_port: u16,
    session_id: String,
    /// smux (many concurrent connections) or single-stream (one at a time, old agents).
    multiplexed: bool,
}

pub async fn run(context: &Context, args: &PortForwardArgs) -> Result<u8> {
    let locals: Vec<u16> = args.forwards.iter().map(|f| f.local).collect();
    let setup = prepare(context, &args.env, args.container.as_deref(), args.address, &locals).await?;
    let remotes: Vec<u16> = args.forwards.iter().map(|f| f.remote).collect();
    let watchdog = Duration::from_millis(args.watchdog_ms);
    serve(context, setup, &remotes, args.host.clone(), watchdog, |ready| {
        print_forwards(context, ready);
        None::<std::future::Ready<Result<u8>>>
    })
    .await
}

/// A forwarding command's set-up so far: the local listeners (bound first, so a busy port is a
/// usage error before anything starts), the credentials and the task, within the set-up limit.
pub(crate) struct Setup {
    pub aws: Aws,
    pub target: ExecTarget,
    listeners: Vec<(SocketAddr, TcpListener)>,
    until: tokio::time::Instant,
    limit: Duration,
    fix: String,
}

impl Setup {
    /// `work` within what is left of the set-up limit (a lookup a command needs before it
    /// knows its remote port).
    pub async fn within<T>(&self, waiting_for: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout_at(self.until, work).await.map_err(|_| self.timed_out(waiting_for))?
    }

    fn timed_out(&self, waiting_for: &str) -> Error {
        Error::Timeout {
            message: format!(
                "the port forward did not open within {} (the set-up limit): {waiting_for}",
                seconds(self.limit)
            ),
            fix: Some(self.fix.clone()),
        }
    }
}

/// The forwards, once every session is open: what a command prints.
pub(crate) struct Ready<'a> {
    pub target: &'a ExecTarget,
    /// Each forward's bound local address, in the order asked.
    pub bound: &'a [SocketAddr],
    /// Each forward's session id and whether it multiplexes.
    pub opened: Vec<(String, bool)>,
    pub remotes: &'a [u16],
    pub host: Option<&'a str>,
}

/// Bind the listeners (`address`, one per local port; 0 = a free one), then resolve the
/// credentials and the environment's live task, all within the set-up limit.
pub(crate) async fn prepare(
    context: &Context,
    env_name: &str,
    container: Option<&str>,
    address: IpAddr,
    locals: &[u16],
) -> Result<Setup> {
    let limit = crate::duration::from_env(EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT, SETUP_LIMIT)?;
    let until = tokio::time::Instant::now() + limit;
    let config = context.config()?;
    let env = config.environment(env_name)?;
    let fix = format!(
        "check the task and the network path to ssmmessages (`evoctl doctor {}`); {} raises the limit",
        env.name,
        EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT
    );
    let mut listeners = Vec::new();
    for local in locals {
        let at = SocketAddr::new(address, *local);
        let listener = TcpListener::bind(at).await.map_err(|e| {
            Error::usage(
                format!("cannot listen on {at}: {e}"),
                "pick another local port, or 0 (or REMOTE alone) for a free one",
            )
        })?;
        let bound = listener.local_addr().map_err(|source| Error::Io { path: at.to_string().into(), source })?;
        listeners.push((bound, listener));
    }
    let timed_out = |waiting_for: &str| Error::Timeout {
        message: format!("the port forward did not open within {} (the set-up limit): {waiting_for}", seconds(limit)),
        fix: Some(fix.clone()),
    };
    let aws = tokio::time::timeout_at(until, context.aws_for(&config, env))
        .await
        .map_err(|_| timed_out("the AWS credentials were still being resolved"))??;
    let target = tokio::time::timeout_at(until, target::resolve(&aws.ecs(), env, container))
        .await
        .map_err(|_| timed_out("ECS had not answered the task lookup (ListTasks/DescribeTasks)"))??;
    Ok(Setup { aws, target, listeners, until, limit, fix })
}

/// Open one session per listener of `setup` (to `remotes[i]`, or `host`:`remotes[i]`), call
/// `ready` once every session is open, and forward until Ctrl-C (exit 130, every session ended
/// with TerminateSession) or a forward fails. When `ready` returns work (a request made
/// through the forward), the sessions are ended cleanly once it is done and its result is the
/// command's.
pub(crate) async fn serve<Work>(
    context: &Context,
    setup: Setup,
    remotes: &[u16],
    host: Option<String>,
    watchdog: Duration,
    ready: impl FnOnce(&Ready<'_>) -> Option<Work>,
) -> Result<u8>
where
    Work: Future<Output = Result<u8>>,
{
    let Setup { aws, target, listeners, until, limit, fix } = setup;
    crate::exec::native::install_crypto_provider();
    let (notices_tx, mut notices) = mpsc::unbounded_channel::<Notice>();
    let options = SessionOptions {
        deadline: None,
        limit,
        setup: Some(crate::exec::native::SetupLimit { until, limit, fix: fix.clone() }),
        idle_timeout: None,
        watchdog_every: watchdog.max(Duration::from_millis(100)),
        size: terminal::size(),
        resume_budget: resume::SHELL_BUDGET,
        timeout_fix: Some(fix.clone()),
    };
    let bound: Vec<SocketAddr> = listeners.iter().map(|(at, _)| *at).collect();
    let mut stops = Vec::new();
    let runs: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(index, (_, listener))| {
            let (stop_tx, stop) = oneshot::channel();
            stops.push(stop_tx);
            let forward = Forward {
                index,
                remote: remotes[index],
                host: host.clone(),
                listener,
                notices: notices_tx.clone(),
                setup_until: until,
                setup_limit: limit,
                setup_fix: fix.clone(),
                watchdog_every: options.watchdog_every,
                stop: Some(stop),
            };
            let spec = ForwardSpec { local: bound[index].port(), remote: remotes[index] };
            one_forward(&aws, &target, spec, forward, &options)
        })
        .collect();
    drop(notices_tx);
    let all = futures::future::try_join_all(runs);
    tokio::pin!(all);
    let mut opened: Vec<Option<(String, bool)>> = vec![None; bound.len()];
    let mut ready = Some(ready);
    let mut work: Option<std::pin::Pin<Box<Work>>> = None;
    loop {
        tokio::select! {
            result = &mut all => {
                while let Ok(notice) = notices.try_recv() {
                    say(context, &bound, remotes, notice);
                }
                return result.map(|_| crate::exit::OK);
            }
            Some(notice) = notices.recv() => {
                if let Notice::Opened { forward, session_id, multiplexed } = &notice {
                    opened[*forward] = Some((session_id.clone(), *multiplexed));
                } else {
                    say(context, &bound, remotes, notice);
                }
                if opened.iter().all(Option::is_some)
                    && let Some(ready) = ready.take()
                {
                    let report = Ready {
                        target: &target,
                        bound: &bound,
                        opened: opened.iter().map(|o| o.clone().unwrap_or_default()).collect(),
                        remotes,
                        host: host.as_deref(),
                    };
                    work = ready(&report).map(Box::pin);
                }
            }
            outcome = async { work.as_mut().expect("guarded").await }, if work.is_some() => {
                // Done with the forward: end every session cleanly, then answer.
                drop(stops);
                let ended = all.await;
                while let Ok(notice) = notices.try_recv() {
                    say(context, &bound, remotes, notice);
                }
                return match (outcome, ended) {
                    (Err(e @ Error::Interrupted { .. }), _) | (_, Err(e @ Error::Interrupted { .. })) => Err(e),
                    (outcome, _) => outcome,
                };
            }
        }
    }
}

/// One forward: a session slot, StartSession, the session's loop, and TerminateSession however
/// it ends.
async fn one_forward(
    aws: &Aws,
    target: &ExecTarget,
    spec: ForwardSpec,
    forward: Forward,
    options: &SessionOptions,
) -> Result<()> {
    let host = forward.host.clone();
    let (grant, guard) = crate::interrupt::before_starting(async {
        let slot = options.within("a session slot on the task was still taken", slots::take(aws, target)).await??;
        let grant = options
            .within("StartSession had not answered", portfwd::start_session(aws, target, host.as_deref(), spec))
            .await??;
        tracing::info!(session = %grant.session_id, task = %target.task.id, remote = spec.remote, "port session started");
        let guard = SessionGuard::open(aws, &grant.session_id, slot);
        Ok((grant, guard))
    })
    .await?;
    let result = session::run(aws, target, &grant, forward).await;
    let bound = match &result {
        Err(Error::Interrupted { .. }) => TERMINATE_AFTER_INTERRUPT,
        _ => TERMINATE_BOUND,
    };
    guard.end(bound).await;
    result
}

fn say(context: &Context, bound: &[SocketAddr], remotes: &[u16], notice: Notice) {
    match notice {
        Notice::ConnectFailed { forward, peer, destination } => context.printer.warn(&format!(
            "{}: the agent could not connect to {destination} for the connection from {peer} (ConnectToPortError); that connection was reset, the forward stays up",
            bound[forward]
        )),
        Notice::Resumed { forward, session_id } => context.printer.note(&format!(
            "{}: the data channel of session {session_id} dropped and was resumed",
            bound[forward]
        )),
        Notice::Opened { forward, .. } => {
            tracing::debug!(forward, remote = remotes[forward], "forward opened");
        }
    }
}

fn print_forwards(context: &Context, ready: &Ready<'_>) {
    let target = ready.target;
    let forwards: Vec<ForwardReport> = ready
        .bound
        .iter()
        .zip(&ready.opened)
        .zip(ready.remotes)
        .map(|((at, (session_id, multiplexed)), remote)| ForwardReport {
            local: at.to_string(),
            local_address: at.ip().to_string(),
            local_port: at.port(),
            remote_host: ready.host.map(str::to_owned),
            remote_port: *remote,
            session_id: session_id.clone(),
            multiplexed: *multiplexed,
        })
        .collect();
    let report = Report {
        schema: "evoctl.port-forward/v1",
        env: &target.env,
        task_id: &target.task.id,
        container: &target.container,
        forwards,
    };
    context.printer.data(&report, || {
        let rows: Vec<Vec<String>> = report
            .forwards
            .iter()
            .map(|f| vec![f.local.clone(), destination(f.remote_host.as_deref(), f.remote_port), f.session_id.clone()])
            .collect();
        crate::output::table(&["LOCAL", "FORWARDS TO", "SESSION"], &rows)
    });
    context.printer.note(&format!("forwarding to task {} of {} (Ctrl-C to stop)", target.task.id, target.env));
}
