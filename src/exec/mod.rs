//! Running things in the Evolution container through ECS Exec.
//!
//! [`ssm`] is the sans-IO Session Manager protocol; [`native`] drives it over a websocket;
//! [`envelope`] frames a command so its output and exit status survive the pty; [`run`] ties
//! them together; [`target`] picks and checks the container; [`slots`] keeps a task at two sessions. Nothing here prints: output goes
//! to an [`run::OutputSink`].

pub mod envelope;
pub mod flow;
pub mod native;
pub mod noise;
pub mod plugin;
pub mod run;
pub mod sessions;
pub mod slots;
/// The sans-IO Session Manager protocol, its own crate (`crates/evoctl-ssm`).
pub use evoctl_ssm as ssm;
pub mod target;
pub mod terminal;
pub mod websocket;
