//! Whether a pasted Fly token can deploy, decided so that a working token is never called bad.
//!
//! `GET /v1/tokens/current` describes macaroon tokens (`FlyV1 fm2_…`, `main.tokenInfo` in
//! `sim/fly-openapi3.json`): which org, which apps, whose. How it answers another kind of
//! token (a user's OAuth token, sent as `Bearer`) is not documented, so for those its refusal
//! is only advice: a plain read of the apps decides instead. The page's token step and the
//! deploy's first step both ask here. A read-only token looks like an org token from here;
//! the deploy's first write (creating the apps) catches it before anything exists.

use crate::error::Error;
use crate::fly::{FlyClient, TokenKind};
use crate::transport::{Clock, Transport};

/// What the token is, as far as Fly says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCheck {
    pub kind: TokenKind,
    /// The org the token names, when it names one.
    pub org: Option<String>,
    /// Set when Fly could not describe the token and a plain read vouched for it instead.
    pub note: Option<&'static str>,
}

/// Said when `tokens/current` gave no verdict and a read showed the token works.
pub const UNDESCRIBED: &str =
    "Fly did not describe this token, but it works; the deploy will say if it may not create apps.";

/// Checks the token: an app (deploy) token is refused in a sentence, a bad one is
/// [`Error::BadToken`], anything that works is described as well as Fly allows.
pub async fn check<T: Transport, C: Clock>(fly: &FlyClient<T, C>) -> Result<TokenCheck, Error> {
    match fly.current_token().await {
        Ok(current) => {
            let kind = current.usable()?;
            let org = current.tokens.iter().find_map(|t| t.org_slug.clone());
            Ok(TokenCheck {
                kind,
                org,
                note: None,
            })
        }
        Err(error @ (Error::Blocked { .. } | Error::Unreachable { .. })) => Err(error),
        // (A 401 here is the answer itself, whatever came before: not a passing failure.)
        Err(error) if error.is_transient() && !matches!(error, Error::Unauthorized { .. }) => {
            Err(error)
        }
        Err(Error::BadToken) if fly.sends_macaroons() => Err(Error::BadToken),
        Err(_) => match fly.list_apps("personal").await {
            // Forbidden is still an answer to this token: it is known, just not for that org.
            Ok(_) | Err(Error::Forbidden { .. }) => Ok(TokenCheck {
                kind: TokenKind::Unknown,
                org: None,
                note: Some(UNDESCRIBED),
            }),
            Err(error) => Err(error),
        },
    }
}
