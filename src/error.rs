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

    /// The exec transport failed (ExecuteCommand, websocket, data channel, envelope).
    #[error("{message}")]
    Exec { message: String, fix: Option<String> },

    /// The Evolution API answered with an error.
    #[error("{message}")]
    Evolution { status: u16, message: String, fix: String },

    /// A wait ran past its deadline.
    #[error("{message}")]
    Timeout { message: String, fix: Option<String> },

    /// A change was applied but reading it back shows something else.
    #[error("{message}")]
    Unverified { message: String, fix: String },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Config { .. } => exit::USAGE,
            Error::Io { .. } => exit::USAGE,
            Error::NotFound { .. } => exit::NOT_FOUND,
            Error::Refused { .. } => exit::REFUSED,
            Error::Aws { .. } => exit::AWS,
            Error::Exec { .. } => exit::EXEC_TRANSPORT,
            Error::Evolution { status: 404, .. } => exit::NOT_FOUND,
            Error::Evolution { status: 400, .. } => exit::USAGE,
            Error::Evolution { .. } => exit::FINDINGS,
            Error::Timeout { .. } => exit::TIMEOUT,
            Error::Unverified { .. } => exit::FINDINGS,
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
            | Error::Timeout { fix, .. } => fix.as_deref(),
            Error::Config { fix, .. } | Error::Evolution { fix, .. } | Error::Unverified { fix, .. } => Some(fix),
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
            Error::Exec { .. } => "exec",
            Error::Evolution { .. } => "evolution",
            Error::Timeout { .. } => "timeout",
            Error::Unverified { .. } => "unverified",
            Error::Io { .. } => "io",
        }
    }

    /// A usage error with a fix.
    pub fn usage(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Usage { message: message.into(), fix: Some(fix.into()) }
    }

    /// A not-found error with a fix.
    pub fn not_found(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::NotFound { message: message.into(), fix: Some(fix.into()) }
    }

    /// An exec transport error with a fix.
    pub fn exec(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Exec { message: message.into(), fix: Some(fix.into()) }
    }

    /// A refusal with a fix.
    pub fn refused(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Refused { message: message.into(), fix: Some(fix.into()) }
    }
}
