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
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
    let limit = crate::duration::from_env(EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT, SETUP_LIMIT)?;
    let until = tokio::time::Instant::now() + limit;
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let fix = format!(
        "check the task and the network path to ssmmessages (`evoctl doctor {}`); {} raises the limit",
        env.name,
        EnvVars::EVOCTL_PORT_FORWARD_SETUP_TIMEOUT
    );
    let timed_out = |waiting_for: &str| Error::Timeout {
        message: format!("the port forward did not open within {} (the set-up limit): {waiting_for}", seconds(limit)),
        fix: Some(fix.clone()),
    };
    let mut listeners = Vec::new();
    for spec in &args.forwards {
        let at = SocketAddr::new(args.address, spec.local);
        let listener = TcpListener::bind(at).await.map_err(|e| {
            Error::usage(
                format!("cannot listen on {at}: {e}"),
                "pick another local port, or 0 (or REMOTE alone) for a free one",
            )
        })?;
        let bound = listener.local_addr().map_err(|source| Error::Io { path: at.to_string().into(), source })?;
        listeners.push((bound, listener));
    }
    let aws = tokio::time::timeout_at(until, context.aws_for(&config, env))
        .await
        .map_err(|_| timed_out("the AWS credentials were still being resolved"))??;
    let target = tokio::time::timeout_at(until, target::resolve(&aws.ecs(), env, args.container.as_deref()))
        .await
        .map_err(|_| timed_out("ECS had not answered the task lookup (ListTasks/DescribeTasks)"))??;
    crate::exec::native::install_crypto_provider();

    let (notices_tx, mut notices) = mpsc::unbounded_channel::<Notice>();
    let options = SessionOptions {
        deadline: None,
        limit,
        setup: Some(crate::exec::native::SetupLimit { until, limit, fix: fix.clone() }),
        idle_timeout: None,
        watchdog_every: Duration::from_millis(args.watchdog_ms.max(100)),
        size: terminal::size(),
        resume_budget: resume::SHELL_BUDGET,
        timeout_fix: Some(fix.clone()),
    };
    let bound: Vec<SocketAddr> = listeners.iter().map(|(at, _)| *at).collect();
    let runs: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(index, (_, listener))| {
            let forward = Forward {
                index,
                remote: args.forwards[index].remote,
                host: args.host.clone(),
                listener,
                notices: notices_tx.clone(),
                setup_until: until,
                setup_limit: limit,
                setup_fix: fix.clone(),
                watchdog_every: options.watchdog_every,
            };
            one_forward(&aws, &target, args.forwards[index], forward, &options)
        })
        .collect();
    drop(notices_tx);
    let all = futures::future::try_join_all(runs);
    tokio::pin!(all);
    let mut opened: Vec<Option<(String, bool)>> = vec![None; bound.len()];
    let mut printed = false;
    loop {
        tokio::select! {
            result = &mut all => {
                while let Ok(notice) = notices.try_recv() {
                    say(context, args, &bound, notice);
                }
                return result.map(|_| crate::exit::OK);
            }
            Some(notice) = notices.recv() => {
                if let Notice::Opened { forward, session_id, multiplexed } = &notice {
                    opened[*forward] = Some((session_id.clone(), *multiplexed));
                } else {
                    say(context, args, &bound, notice);
                }
                if !printed && opened.iter().all(Option::is_some) {
                    printed = true;
                    print_forwards(context, args, &target, &bound, &opened);
                }
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

fn say(context: &Context, args: &PortForwardArgs, bound: &[SocketAddr], notice: Notice) {
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
            tracing::debug!(forward, remote = args.forwards[forward].remote, "forward opened");
        }
    }
}

fn print_forwards(
    context: &Context,
    args: &PortForwardArgs,
    target: &ExecTarget,
    bound: &[SocketAddr],
    opened: &[Option<(String, bool)>],
) {
    let forwards: Vec<ForwardReport> = bound
        .iter()
        .zip(opened)
        .zip(&args.forwards)
        .map(|((at, opened), spec)| {
            let (session_id, multiplexed) = opened.clone().unwrap_or_default();
            ForwardReport {
                local: at.to_string(),
                local_address: at.ip().to_string(),
                local_port: at.port(),
                remote_host: args.host.clone(),
                remote_port: spec.remote,
                session_id,
                multiplexed,
            }
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
