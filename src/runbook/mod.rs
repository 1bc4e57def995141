//! The runbooks: multi-step procedures built from the guard, the exec transport and the
//! Evolution driver. [`preflight`] decides whether an environment may be linked now, [`watch`]
//! reads the event stream of the link watch that runs in the container, and [`doctor`] holds the
//! layered troubleshooting checks. The `connect` and `doctor` commands drive them.

pub mod doctor;
pub mod preflight;
pub mod watch;
