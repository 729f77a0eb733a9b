//! The relay↔vm contract, in one place both sides depend on so they cannot drift apart:
//!
//! - [`protocol`]: what travels (a [`protocol::VmMessage`] relay → vm on `POST /messages`, a
//!   [`protocol::Callback`] vm → relay on `POST /callback`), the bearer check, and
//!   [`protocol::Conversation`], the typed form of a conversation id (`telegram:<chat id>`,
//!   `whatsapp:+<number>`).
//! - [`client`]: the one HTTP client for both directions: it owns the paths, the bearer
//!   token and the verdict on an answer (accepted, retry, too large, disk full, refused).
//! - [`service`]: process plumbing both binaries share: environment with errors that name the
//!   variable, logging, listen address, shutdown signal.

pub mod client;
pub mod protocol;
pub mod service;
