//! One module per screen.

pub mod deploy;
pub mod detail;
pub mod home;
pub mod new;
pub mod token;
