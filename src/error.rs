//! The error every command returns, and the exit code and fix that go with each kind.
//!
//! Errors are values for the user: each says what went wrong with the concrete file, field,
//! resource or value, and (where one exists) the command or change that fixes it. `main`
//! prints them on stderr and exits with [`Error::exit_code`]. No variant ever carries a secret.

use crate::exit;
use std::path::PathBuf;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One failure, ready to be shown to a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage or an invalid argument value.
    #[error("{message}")]
    Usage { message: String, fix: Option<String> },

    /// The config file is missing, unreadable or invalid.
    #[error("{location}: {message}")]
    Config { location: String, message: String, fix: String },

    /// Something that must exist does not.
    #[error("{message}")]
    NotFound { message: String, fix: Option<String> },

    /// Refused because going on could leave two live connections for one number.
    #[error("{message}")]
    Refused { message: String, fix: Option<String> },

    /// An AWS API call failed.
    #[error("{action} failed: {code}: {message}")]
    Aws { action: String, code: String, message: String, fix: Option<String> },

    /// Some environments could not be read (their account's credentials or calls failed);
    /// the message names each account and its environments. Exit 5, like any AWS failure.
    #[error("{message}")]
    Unread { message: String, fix: String },

    /// The exec transport failed (ExecuteCommand, websocket, data channel, envelope); the kind
    /// says which way, so callers decide on it (retry or not) instead of on the text.
    #[error("{message}")]
    Exec { kind: ExecKind, message: String, fix: Option<String> },

    /// The Evolution API answered with an error.
    #[error("{message}")]
    Evolution { status: u16, message: String, fix: String },

    /// The service cannot do it right now (e.g. the instance's WhatsApp socket is down);
    /// retrying once it recovers, or restarting it, works.
    #[error("{message}")]
    Unavailable { message: String, fix: String },

    /// A wait ran past its deadline.
    #[error("{message}")]
    Timeout { message: String, fix: Option<String> },

    /// A change was applied but reading it back shows something else.
    #[error("{message}")]
    Unverified { message: String, fix: String },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// The user interrupted (Ctrl-C, SIGTERM); the message says what was and was not done.
    #[error("{message}")]
    Interrupted { signal: Signal, message: String, fix: Option<String> },
}

/// The signal that interrupted evoctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupt,
    /// SIGTERM: exit 143.
    Terminate,
}

impl Signal {
    /// The conventional exit status, 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => exit::INTERRUPTED,
            Signal::Terminate => exit::TERMINATED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Why an exec session could not be had or did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// ECS Exec is off on the task or service (enableExecuteCommand false).
    ExecDisabled,
    /// The task is not RUNNING yet (PROVISIONING, PENDING, ACTIVATING): can still become ready.
    TaskStarting,
    /// The ExecuteCommandAgent is still PENDING: can still become ready.
    AgentStarting,
    /// The ExecuteCommandAgent is STOPPED or missing.
    AgentNotRunning,
    /// ExecuteCommand answered TargetNotConnectedException: can still become ready.
    TargetNotConnected,
    /// IAM or KMS refused (the caller or the task role).
    Permission,
    /// The agent ended the session during the KMS handshake.
    Handshake,
    /// The websocket or the data channel failed (network, TLS, proxy, a dropped socket).
    Transport,
    /// The peer broke the protocol (oversized or undecryptable frames).
    Protocol,
    /// The task stopped while the session ran.
    TaskStopped,
    /// The session ended before the command's exit status arrived.
    Truncated,
    /// The command did not start in the container.
    CannotStart,
    /// What ran in the container did not answer as expected (node, Evolution on SERVER_PORT).
    Container,
}

impl ExecKind {
    /// Whether waiting a few seconds can make the target ready (a task or agent that is
    /// starting); everything else fails at once with its fix.
    pub fn can_become_ready(self) -> bool {
        matches!(self, ExecKind::TaskStarting | ExecKind::AgentStarting | ExecKind::TargetNotConnected)
    }

    /// The kind as it appears in JSON error documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecKind::ExecDisabled => "exec_disabled",
            ExecKind::TaskStarting => "task_starting",
            ExecKind::AgentStarting => "agent_starting",
            ExecKind::AgentNotRunning => "agent_not_running",
            ExecKind::TargetNotConnected => "target_not_connected",
            ExecKind::Permission => "permission",
            ExecKind::Handshake => "handshake",
            ExecKind::Transport => "transport",
            ExecKind::Protocol => "protocol",
            ExecKind::TaskStopped => "task_stopped",
            ExecKind::Truncated => "truncated",
            ExecKind::CannotStart => "cannot_start",
            ExecKind::Container => "container",
        }
    }
}

impl Error {
    /// The same failure again, for a second environment it affects (errors are not `Clone`:
    /// an I/O error is kept as its text).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Aws { action, code, message, fix } => {
                Error::Aws { action: action.clone(), code: code.clone(), message: message.clone(), fix: fix.clone() }
            }
            Error::Usage { message, fix } => Error::Usage { message: message.clone(), fix: fix.clone() },
            Error::NotFound { message, fix } => Error::NotFound { message: message.clone(), fix: fix.clone() },
            Error::Timeout { message, fix } => Error::Timeout { message: message.clone(), fix: fix.clone() },
            other => Error::Aws {
                action: "reading".into(),
                code: other.kind().into(),
                message: other.to_string(),
                fix: other.fix().map(str::to_owned),
            },
        }
    }

    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Config { .. } => exit::USAGE,
            Error::Io { .. } => exit::IO,
            Error::NotFound { .. } => exit::NOT_FOUND,
            Error::Refused { .. } => exit::REFUSED,
            Error::Aws { .. } | Error::Unread { .. } => exit::AWS,
            Error::Exec { .. } => exit::EXEC_TRANSPORT,
            Error::Evolution { status: 404, .. } => exit::NOT_FOUND,
            Error::Evolution { status: 400, .. } => exit::USAGE,
            Error::Evolution { .. } => exit::FINDINGS,
            Error::Unavailable { .. } => exit::FINDINGS,
            Error::Timeout { .. } => exit::TIMEOUT,
            Error::Unverified { .. } => exit::FINDINGS,
            Error::Interrupted { signal, .. } => signal.exit_code(),
        }
    }

    /// The suggested fix, shown on its own line under the message.
    pub fn fix(&self) -> Option<&str> {
        match self {
            Error::Usage { fix, .. }
            | Error::NotFound { fix, .. }
            | Error::Refused { fix, .. }
            | Error::Aws { fix, .. }
            | Error::Exec { fix, .. }
            | Error::Timeout { fix, .. }
            | Error::Interrupted { fix, .. } => fix.as_deref(),
            Error::Config { fix, .. }
            | Error::Evolution { fix, .. }
            | Error::Unavailable { fix, .. }
            | Error::Unread { fix, .. }
            | Error::Unverified { fix, .. } => Some(fix),
            Error::Io { .. } => None,
        }
    }

    /// A short machine-readable kind, used in JSON error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage { .. } => "usage",
            Error::Config { .. } => "config",
            Error::NotFound { .. } => "not_found",
            Error::Refused { .. } => "refused",
            Error::Aws { .. } => "aws",
            Error::Unread { .. } => "unread",
            Error::Exec { .. } => "exec",
            Error::Evolution { .. } => "evolution",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Unverified { .. } => "unverified",
            Error::Io { .. } => "io",
            Error::Interrupted { .. } => "interrupted",
        }
    }

    /// The exec failure's kind, for exec errors.
    pub fn exec_kind(&self) -> Option<ExecKind> {
        match self {
            Error::Exec { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A write to a closed pipe (`| head`): the reader has gone, which is no failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// A usage error with a fix.
    pub fn usage(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Usage { message: message.into(), fix: Some(fix.into()) }
    }

    /// A not-found error with a fix.
    pub fn not_found(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::NotFound { message: message.into(), fix: Some(fix.into()) }
    }

    /// An exec error of `kind` with a fix.
    pub fn exec(kind: ExecKind, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Exec { kind, message: message.into(), fix: Some(fix.into()) }
    }

    /// A refusal with a fix.
    pub fn refused(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Refused { message: message.into(), fix: Some(fix.into()) }
    }
}
