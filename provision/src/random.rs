//! Secrets textslash generates itself (the relay↔vm `VM_TOKEN`, the Telegram webhook secret)
//! and the jitter of retry backoff, from the operating system's CSPRNG (WebCrypto in browsers).

/// A random token of `bytes` bytes as lowercase hex: safe in headers, env values and the
/// Telegram `secret_token` alphabet (`A-Z a-z 0-9 _ -`).
pub fn token_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the platform has no random number source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A uniformly distributed number in `0..upper` (for backoff jitter; not for secrets).
pub fn below(upper: u64) -> u64 {
    if upper == 0 {
        return 0;
    }
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).expect("the platform has no random number source");
    u64::from_le_bytes(buf) % upper
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_of_the_right_length_and_differ() {
        let a = token_hex(32);
        let b = token_hex(32);
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn below_stays_in_range() {
        for _ in 0..1000 {
            assert!(below(7) < 7);
        }
        assert_eq!(below(0), 0);
    }
}
