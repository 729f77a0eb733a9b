//! The platform-neutral heart of textslash: everything that touches the Fly Machines API.
//!
//! The page (`wizard-wasm`, in the browser) and the `textslash` CLI (native) both drive a
//! deployment through this crate, so they cannot disagree about what a deployment is.
//!
//! # Layout
//! - [`transport`]: the two side effects, an HTTP [`Transport`] and a [`Clock`]; the
//!   browser and native builds each bring their own (`native` feature: reqwest + tokio).
//! - [`fly`]: the typed Machines API client (wire types named exactly as Fly's OpenAPI
//!   document, retries, rate spacing) and its [`fly::auth`] header rules.
//! - [`checks`]: a bot token and an Anthropic key checked before deploying (the page's
//!   channel and key steps, `textslash setup`).
//! - [`token`]: whether a pasted token can deploy (shared by the page's token step and the
//!   deploy's first step), never calling a working token bad.
//! - [`spec`]: what the user asked for ([`DeploymentSpec`]) and its validation.
//! - [`machines`]: the machine configs and secrets a spec turns into (shared with the
//!   fly.toml agreement test).
//! - [`plan`]: the deploy as ordered observe-then-act steps with progress events; running it
//!   again after a failure resumes it.
//! - [`ops`]: status, update, stop/start and teardown of an existing [`Deployment`];
//!   [`relay_move`]: update's move of an old relay onto its journal volume.
//! - [`cost`]: the monthly estimate shown before deploying.
//! - [`version`]: the one version of the CLI, page and images; what a deployment runs
//!   against what is on offer, and what an update changed.
//! - [`error`]: one error type whose messages tell the user what to do.

pub mod checks;
pub mod cost;
pub mod error;
pub mod fly;
pub mod machines;
#[cfg(feature = "native")]
pub mod native;
pub mod ops;
pub mod plan;
pub mod random;
pub mod relay_move;
pub mod spec;
pub mod token;
pub mod transport;
pub mod version;

pub use error::Error;
pub use fly::FlyClient;
pub use plan::{Deployment, Event, StepId, StepState};
pub use spec::{Channel, DeploymentSpec};
pub use transport::{Clock, HttpRequest, HttpResponse, Method, Transport, TransportError};
