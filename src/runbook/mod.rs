//! The runbooks: multi-step procedures built from the guard, the exec transport and the
//! Evolution driver. [`preflight`] decides whether an environment may be linked now, [`watch`]
//! reads the event stream of the link watch that runs in the container, [`doctor`] holds the
//! layered troubleshooting checks, [`link`] holds what the link flows of `connect` and `instance`
//! share, [`codes`] shows each linking code to the person who links, [`refresh`] sees a scan
//! fail to WhatsApp's pairing refresh, and [`discover`] finds the Evolution services of an AWS
//! estate for `init --discover`. The `connect`, `doctor` and `init` commands drive them.

pub mod codes;
pub mod discover;
pub mod doctor;
pub mod link;
pub mod preflight;
pub mod refresh;
pub mod watch;
