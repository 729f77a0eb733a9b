//! Secrets from the environment, or from a hidden prompt on a terminal; never from argv.

use crate::Failure;
use provision::spec::Secret;
use std::io::IsTerminal;

/// The variable's value; on a terminal, asks for it without echo when it is not set.
pub fn required(variable: &str, what: &str) -> Result<Secret, Failure> {
    checked(variable, what, |_| Ok(()))
}

/// As [`required`]; a value typed at the prompt that `check` refuses is named (never shown)
/// and asked for again. A value from the environment is checked with the rest of the spec.
pub fn checked(
    variable: &str,
    what: &str,
    check: impl Fn(&Secret) -> Result<(), provision::Error>,
) -> Result<Secret, Failure> {
    if let Some(value) = optional(variable) {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        for _ in 0..5 {
            let value = rpassword::prompt_password(format!("{what} ({variable}): "))
                .map_err(|e| Failure::Usage(format!("could not read {variable}: {e}")))?;
            if value.trim().is_empty() {
                break;
            }
            let value = Secret::new(value.trim());
            match check(&value) {
                Ok(()) => return Ok(value),
                Err(refused) => eprintln!("  {refused}"),
            }
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
