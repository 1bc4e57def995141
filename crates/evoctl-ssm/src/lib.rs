//! The client side of the Session Manager data channel, sans-IO: the binary frame codec
//! ([`frame`]), the JSON message bodies ([`messages`]), the client's session state machine
//! ([`session`]), the smux v1 multiplexer port sessions carry inside it ([`smux`]), and for KMS sessions the client's half of the handshake ([`handshake`]) and
//! AES-GCM ([`crypto`]).
//!
//! Nothing here touches sockets, clocks, AWS or the printer; transports drive it with bytes and
//! millisecond timestamps. Its `Cargo.toml` is what keeps it so: no runtime, websocket, HTTP,
//! AWS SDK or terminal crate is a dependency (`scripts/test` checks the tree). evoctl's native
//! transport is its user. Only the client is here: the agent's side (its flags, counter nonces,
//! publication pauses, the handshake request and challenge it sends) lives in the lab crate,
//! `crates/evoctl-lab`, with its own code.

pub mod crypto;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod session;
pub mod smux;

pub use frame::{Frame, FrameError, PayloadType};
pub use session::{Event, Session};
