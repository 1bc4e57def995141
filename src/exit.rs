//! Process exit codes: the one place they are defined.
//!
//! Scripts and CI jobs branch on these, so they are part of the interface and are listed in the
//! README. `exec` and `node` pass the remote command's own status through instead, and use
//! [`EVOCTL_FAILED`] when evoctl itself could not run the command.

/// Success.
pub const OK: u8 = 0;
/// Findings were reported, or a check failed (`audit`, `doctor`).
pub const FINDINGS: u8 = 1;
/// Bad usage, bad input or a bad config file.
pub const USAGE: u8 = 2;
/// Something that must exist does not: no live task, no instance, no cluster, no service.
pub const NOT_FOUND: u8 = 3;
/// Refused as unsafe: more than one live task, or a guard rule would be broken.
pub const REFUSED: u8 = 4;
/// An AWS API call failed (credentials, permissions, throttling that outlived retries, 5xx).
pub const AWS: u8 = 5;
/// The exec transport failed (ExecuteCommand, websocket, data channel).
pub const EXEC_TRANSPORT: u8 = 6;
/// A wait ran past its deadline.
pub const TIMEOUT: u8 = 7;
/// A local file, stdout or the terminal could not be read or written (a full disk); sysexits'
/// EX_IOERR. A closed stdout (`| head`) is no error: it ends with [`OK`].
pub const IO: u8 = 74;
/// Interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;
/// Ended by SIGTERM (128 + SIGTERM).
pub const TERMINATED: u8 = 143;
/// `exec` / `node`: evoctl itself failed before the remote status was known (docker's convention).
pub const EVOCTL_FAILED: u8 = 125;

/// Every code with its meaning, in the order the README lists them.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success"),
    (FINDINGS, "findings reported / a check failed"),
    (USAGE, "usage or config error"),
    (NOT_FOUND, "not found (no live task, no instance, no cluster or service)"),
    (REFUSED, "refused as unsafe (more than one live task, guard rule)"),
    (AWS, "AWS API error"),
    (EXEC_TRANSPORT, "exec transport error"),
    (TIMEOUT, "timeout"),
    (IO, "local I/O error (stdout, a file: a full disk, a read-only path)"),
    (EVOCTL_FAILED, "exec/node: evoctl failed before the remote status was known"),
    (INTERRUPTED, "interrupted by Ctrl-C (the session was ended; a change stops after the step in flight)"),
    (TERMINATED, "ended by SIGTERM (the same as Ctrl-C)"),
];
