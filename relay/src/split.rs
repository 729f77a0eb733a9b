//! Splitting long replies at a channel's limit, preferring paragraph, then line, then word
//! boundaries, so no chunk is cut mid-word when a better place exists.
//!
//! Channels count differently: Telegram's limit is 4096 characters; Twilio's 1,600 counts the
//! encoded body, in which a character outside the Basic Multilingual Plane (most emoji) takes
//! two UTF-16 code units ("Emoji and non-GSM characters may count as more than one", Twilio
//! error 21617; docs/channels.md), so an emoji-heavy reply counted in characters would be
//! refused for good.

/// What a channel counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Unicode scalar values.
    Chars,
    /// UTF-16 code units (UCS-2 as SMS and WhatsApp gateways encode).
    Utf16,
}

impl Unit {
    fn len(self, c: char) -> usize {
        match self {
            Unit::Chars => 1,
            Unit::Utf16 => c.len_utf16(),
        }
    }

    /// The length of `text` in this unit.
    pub fn count(self, text: &str) -> usize {
        text.chars().map(|c| self.len(c)).sum()
    }
}

/// The most one message may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: usize,
    pub unit: Unit,
}

impl Limit {
    pub const fn chars(max: usize) -> Limit {
        Limit {
            max,
            unit: Unit::Chars,
        }
    }
}

pub const WHATSAPP_LIMIT: Limit = Limit {
    max: 1600,
    unit: Unit::Utf16,
};
pub const TELEGRAM_LIMIT: Limit = Limit::chars(4096);

/// Splits `text` into chunks that each fit `limit`.
pub fn split_message(text: &str, limit: Limit) -> Vec<String> {
    assert!(limit.max > 1, "a channel limit holds any one character");
    let mut chunks = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // Byte index just past the last character that still fits.
        let mut used = 0;
        let hard_end = rest
            .char_indices()
            .find(|&(_, c)| {
                used += limit.unit.len(c);
                used > limit.max
            })
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        if hard_end == rest.len() {
            chunks.push(rest.to_string());
            break;
        }
        let window = &rest[..hard_end];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|&i| i > 0))
            .unwrap_or(hard_end);
        chunks.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefers_paragraphs_then_lines_then_words() {
        let text = format!("{}\n\n{}", "a".repeat(10), "b".repeat(10));
        assert_eq!(
            split_message(&text, Limit::chars(15)),
            ["aaaaaaaaaa", "bbbbbbbbbb"]
        );
        let text = "one two\nthree four five";
        assert_eq!(
            split_message(text, Limit::chars(12)),
            ["one two", "three four", "five"]
        );
        assert_eq!(
            split_message(&"x".repeat(25), Limit::chars(10)),
            ["x".repeat(10), "x".repeat(10), "x".repeat(5)]
        );
        assert_eq!(split_message("short", WHATSAPP_LIMIT), ["short"]);
        assert!(split_message("  ", Limit::chars(5)).is_empty());
    }

    #[test]
    fn counts_characters_not_bytes() {
        let text = "é".repeat(TELEGRAM_LIMIT.max + 1);
        let chunks = split_message(&text, TELEGRAM_LIMIT);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].chars().count(), TELEGRAM_LIMIT.max);
    }

    #[test]
    fn whatsapp_counts_emoji_as_two() {
        let text = "😀".repeat(900);
        let chunks = split_message(&text, WHATSAPP_LIMIT);
        assert_eq!(chunks.len(), 2);
        assert_eq!(Unit::Utf16.count(&chunks[0]), 1600);
        assert_eq!(chunks[0].chars().count(), 800);
    }

    proptest! {
        #[test]
        fn chunks_fit_and_keep_every_word(text in "[a-zé😀 \n]{0,400}", max in 2usize..60) {
            let limit = Limit { max, unit: Unit::Utf16 };
            let chunks = split_message(&text, limit);
            for chunk in &chunks {
                prop_assert!(Unit::Utf16.count(chunk) <= max);
                prop_assert!(!chunk.is_empty());
            }
            let words = |s: &str| s.split_whitespace().collect::<String>();
            prop_assert_eq!(words(&chunks.join(" ")), words(&text));
        }
    }
}
