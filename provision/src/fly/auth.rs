//! The `Authorization` header for a pasted Fly token, following flyctl's own rules
//! (superfly/fly-go `tokens/tokens.go`, see docs/fly-machines-api.md §1).

const MACAROON_PREFIXES: [&str; 3] = ["fm1r_", "fm1a_", "fm2_"];

/// Turns whatever the user pasted into a header value.
///
/// - `FlyV1 …` or `Bearer …` is sent as is (that is what `fly tokens create` prints);
/// - macaroons (`fm1r_`, `fm1a_`, `fm2_`) get `FlyV1 `; from a comma-joined bundle only the
///   macaroons are kept, as flyctl does for the Machines API;
/// - anything else is an OAuth/user token and gets `Bearer `.
pub fn authorization_header(pasted: &str) -> String {
    let token = pasted.trim();
    if token.starts_with("FlyV1 ") || token.starts_with("Bearer ") {
        return token.to_string();
    }
    let macaroons: Vec<&str> = token
        .split(',')
        .map(str::trim)
        .filter(|part| MACAROON_PREFIXES.iter().any(|p| part.starts_with(p)))
        .collect();
    if macaroons.is_empty() {
        format!("Bearer {token}")
    } else {
        format!("FlyV1 {}", macaroons.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::authorization_header as h;

    #[test]
    fn prefixed_values_pass_through() {
        assert_eq!(h("FlyV1 fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(h("Bearer xyz"), "Bearer xyz");
        assert_eq!(h("  FlyV1 fm2_abc\n"), "FlyV1 fm2_abc");
    }

    #[test]
    fn macaroons_get_flyv1() {
        assert_eq!(h("fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(h("fm1r_a"), "FlyV1 fm1r_a");
        assert_eq!(h("fm1a_a"), "FlyV1 fm1a_a");
        assert_eq!(h("fm2_a,oauthtoken,fm2_b"), "FlyV1 fm2_a,fm2_b");
    }

    #[test]
    fn everything_else_is_bearer() {
        assert_eq!(h("personal123"), "Bearer personal123");
    }
}
