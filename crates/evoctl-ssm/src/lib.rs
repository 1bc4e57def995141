//! The Session Manager data channel, sans-IO: the binary frame codec ([`frame`]), the JSON
//! message bodies ([`messages`]), the session state machine ([`session`]), and for KMS sessions
//! the handshake ([`handshake`]) and AES-GCM ([`crypto`]).
//!
//! Nothing here touches sockets, clocks, AWS or the printer; transports drive it with bytes and
//! millisecond timestamps. Its `Cargo.toml` is what keeps it so: no runtime, websocket, HTTP,
//! AWS SDK or terminal crate is a dependency (`scripts/test` checks the tree). evoctl's native
//! transport drives the client side; the lab still plays the agent with it (to be replaced by
//! an agent of its own).

pub mod crypto;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod session;

pub use frame::{Frame, FrameError, PayloadType};
pub use session::{Event, NonceSource, ResendPolicy, Role, Session};
