//! Running things in the Evolution container through ECS Exec.
//!
//! [`ssm`] is the sans-IO Session Manager protocol; [`native`] drives it over a websocket that
//! [`link`] dials and resumes, as [`resume`] allows; [`writer`] is the one task that writes a
//! session's socket or pipe; [`envelope`] frames a command so its output and exit status survive
//! the pty, and [`inflate`] inflates the output pieces the runner compressed; [`input`] decides
//! what of evoctl's stdin a run forwards and types streams in; [`run`] ties them together;
//! [`target`] picks and checks the container; [`slots`] keeps a task at two sessions and
//! [`sessions`] ends every session started, both over the one [`registry`]. Nothing here prints:
//! output goes to an [`run::OutputSink`].

pub mod envelope;
pub mod flow;
pub mod inflate;
pub mod input;
pub mod link;
pub mod native;
pub mod noise;
pub mod plugin;
pub mod registry;
pub mod resume;
pub mod run;
pub mod sessions;
pub mod slots;
/// The sans-IO Session Manager protocol, its own crate (`crates/evoctl-ssm`).
pub use evoctl_ssm as ssm;
pub mod target;
pub mod terminal;
pub mod websocket;
pub mod writer;
