//! Secrets from the environment, or from a hidden prompt on a terminal; never from argv.

use crate::Failure;
use provision::spec::Secret;
use std::io::IsTerminal;

/// The variable's value; on a terminal, asks for it without echo when it is not set.
pub fn required(variable: &str, what: &str) -> Result<Secret, Failure> {
    if let Some(value) = optional(variable) {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        let value = rpassword::prompt_password(format!("{what} ({variable}): "))
            .map_err(|e| Failure::Usage(format!("could not read {variable}: {e}")))?;
        if !value.trim().is_empty() {
            return Ok(Secret::new(value));
        }
    }
    Err(Failure::Usage(format!(
        "{variable} is not set. Set it in the environment (textslash never takes secrets as arguments)."
    )))
}

/// The variable's value, when set and not empty.
pub fn optional(variable: &str) -> Option<Secret> {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(Secret::new)
}
