//! Native port forwarding (`evoctl port-forward`): a local listener per forward, and for each
//! one Session Manager port session on the environment's live task, started with
//! `ssm:StartSession` (document `AWS-StartPortForwardingSession`, or `...ToRemoteHost` with a
//! host) on the target `ecs:<cluster>_<task>_<runtime id>`. The data channel is opened, resumed,
//! acknowledged and written exactly as an exec session's ([`crate::exec::link`],
//! [`crate::exec::writer`], [`crate::exec::resume`]); what differs is what rides on it
//! ([`session`]): the agent's Port handshake, then smux v1 streams (one per accepted TCP
//! connection, [`evoctl_ssm::smux`]) or, for agents too old to multiplex, one connection at a
//! time. Nothing here prints: what a caller should say goes out as [`Notice`]s.

pub mod session;

use crate::aws::{Aws, AwsFailure, sdk_failure};
use crate::error::{Error, ExecKind, Result};
use crate::exec::native::Grant;
use crate::exec::target::ExecTarget;

/// The document of a forward to a port in the task.
pub const DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// The document of a forward to a host the task reaches.
pub const DOCUMENT_TO_REMOTE_HOST: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// One `[LOCAL:]REMOTE` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The local port; 0 picks a free one.
    pub local: u16,
    pub remote: u16,
}

impl std::str::FromStr for ForwardSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let port = |part: &str, what: &str, zero: bool| -> std::result::Result<u16, String> {
            match part.parse::<u16>() {
                Ok(0) if !zero => Err(format!("the {what} port cannot be 0")),
                Ok(port) => Ok(port),
                Err(_) => Err(format!("`{part}` is not a {what} port (1-65535)")),
            }
        };
        match text.split_once(':') {
            Some((local, remote)) => {
                Ok(ForwardSpec { local: port(local, "local", true)?, remote: port(remote, "remote", false)? })
            }
            None => Ok(ForwardSpec { local: 0, remote: port(text, "remote", false)? }),
        }
    }
}

/// Something the caller should tell the user while forwards run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A forward's session is open: connections go through from now on.
    Opened { forward: usize, session_id: String, multiplexed: bool },
    /// The agent could not reach the destination for one connection (ConnectToPortError); the
    /// local connection was reset, the forward stays up.
    ConnectFailed { forward: usize, peer: String, destination: String },
    /// The data channel dropped and was resumed.
    Resumed { forward: usize, session_id: String },
}

/// Where a forward goes, for messages.
pub fn destination(host: Option<&str>, remote: u16) -> String {
    match host {
        Some(host) => format!("{host}:{remote} (through the task)"),
        None => format!("port {remote} in the task"),
    }
}

/// StartSession for one forward. A denial becomes one error that says what to grant and why it
/// is often denied on purpose.
pub(crate) async fn start_session(
    aws: &Aws,
    target: &ExecTarget,
    host: Option<&str>,
    spec: ForwardSpec,
) -> Result<Grant> {
    let document = if host.is_some() { DOCUMENT_TO_REMOTE_HOST } else { DOCUMENT };
    let mut request = aws
        .ssm()
        .start_session()
        .target(target.ssm_target())
        .document_name(document)
        .reason("evoctl port-forward")
        .parameters("portNumber", vec![spec.remote.to_string()])
        .parameters("localPortNumber", vec![spec.local.to_string()]);
    if let Some(host) = host {
        request = request.parameters("host", vec![host.to_owned()]);
    }
    let out = request.send().await.map_err(|e| {
        let failure = sdk_failure("StartSession", e);
        match failure.code.as_str() {
            "AccessDeniedException" | "AccessDenied" => denied(target, document, failure),
            "TargetNotConnected" | "TargetNotConnectedException" => Error::exec(
                ExecKind::TargetNotConnected,
                format!("the agent of task {} is not connected ({})", target.task.id, failure.message),
                format!("retry in a few seconds; if it persists run `evoctl doctor {}`", target.env),
            ),
            _ => failure.into_error(),
        }
    })?;
    let incomplete = |what: &str| Error::exec(ExecKind::Protocol, format!("StartSession returned {what}"), "retry");
    match (out.session_id(), out.stream_url(), out.token_value()) {
        (Some(session_id), Some(stream_url), Some(token)) => {
            crate::output::sanitize::hold(token);
            Ok(Grant { session_id: session_id.to_owned(), stream_url: stream_url.to_owned(), token: token.to_owned() })
        }
        _ => Err(incomplete("an incomplete session")),
    }
}

/// The error for a denied StartSession: the permission, its resources, and why hardened accounts
/// deny it (port sessions are not covered by ECS Exec's KMS key or its logging). An AWS API
/// failure like any other (exit 5), not a transport one.
fn denied(target: &ExecTarget, document: &str, failure: AwsFailure) -> Error {
    Error::Aws {
        action: failure.action.to_owned(),
        code: failure.code,
        message: format!(
            "{}. A port forward to task {} (document {document}) needs ssm:StartSession on the task ({}) and on the document arn:aws:ssm:*::document/{document}; accounts that harden ECS Exec often deny it on purpose, because port sessions are never KMS-encrypted and bypass ECS Exec's logging configuration (the forwarded traffic is recorded nowhere)",
            failure.message, target.task.id, target.task.arn
        ),
        fix: Some(format!(
            "ask for ssm:StartSession on the task and the documents {DOCUMENT} and {DOCUMENT_TO_REMOTE_HOST} (plus ssm:TerminateSession on your own sessions), or stay on the audited ECS Exec path (`evoctl exec {} -- ...`, `evoctl api {} ...`)",
            target.env, target.env
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs_parse() {
        assert_eq!("8080".parse(), Ok(ForwardSpec { local: 0, remote: 8080 }));
        assert_eq!("0:8080".parse(), Ok(ForwardSpec { local: 0, remote: 8080 }));
        assert_eq!("9000:80".parse(), Ok(ForwardSpec { local: 9000, remote: 80 }));
        assert_eq!("0".parse::<ForwardSpec>(), Err("the remote port cannot be 0".to_owned()));
        assert_eq!("1:0".parse::<ForwardSpec>(), Err("the remote port cannot be 0".to_owned()));
        assert_eq!("x:80".parse::<ForwardSpec>(), Err("`x` is not a local port (1-65535)".to_owned()));
        assert_eq!("80:70000".parse::<ForwardSpec>(), Err("`70000` is not a remote port (1-65535)".to_owned()));
    }

    #[test]
    fn destinations_name_the_host_or_the_task() {
        assert_eq!(destination(None, 8080), "port 8080 in the task");
        assert_eq!(destination(Some("db.internal"), 5432), "db.internal:5432 (through the task)");
    }
}
