//! The Session Manager data channel, sans-IO: the binary frame codec ([`frame`]), the JSON
//! message bodies ([`messages`]), the session state machine ([`session`]), and for KMS sessions
//! the handshake ([`handshake`]) and AES-GCM ([`crypto`]).
//!
//! Nothing here touches sockets, clocks, AWS or the printer; transports drive it with bytes and
//! millisecond timestamps. The lab uses the same code to play the agent.

pub mod crypto;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod session;

pub use frame::{Frame, FrameError, PayloadType};
pub use session::{Event, NonceSource, ResendPolicy, Role, Session};
