//! Splitting long replies at a channel's limit (WhatsApp 1600, Telegram 4096 characters),
//! preferring paragraph, then line, then word boundaries, so no chunk is cut mid-word when a
//! better place exists.

pub const WHATSAPP_LIMIT: usize = 1600;
pub const TELEGRAM_LIMIT: usize = 4096;

/// Splits `text` into chunks of at most `limit` characters (Unicode scalar values).
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    assert!(limit > 0, "a channel limit is positive");
    let mut chunks = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= limit {
            chunks.push(rest.to_string());
            break;
        }
        // Byte index just past the `limit`-th character.
        let hard_end = rest
            .char_indices()
            .nth(limit)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
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
        assert_eq!(split_message(&text, 15), ["aaaaaaaaaa", "bbbbbbbbbb"]);
        let text = "one two\nthree four five";
        assert_eq!(split_message(text, 12), ["one two", "three four", "five"]);
        assert_eq!(
            split_message(&"x".repeat(25), 10),
            ["x".repeat(10), "x".repeat(10), "x".repeat(5)]
        );
        assert_eq!(split_message("short", WHATSAPP_LIMIT), ["short"]);
        assert!(split_message("  ", 5).is_empty());
    }

    #[test]
    fn counts_characters_not_bytes() {
        let text = "é".repeat(TELEGRAM_LIMIT + 1);
        let chunks = split_message(&text, TELEGRAM_LIMIT);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].chars().count(), TELEGRAM_LIMIT);
    }

    proptest! {
        #[test]
        fn chunks_fit_and_keep_every_word(text in "[a-zé \n]{0,400}", limit in 1usize..60) {
            let chunks = split_message(&text, limit);
            for chunk in &chunks {
                prop_assert!(chunk.chars().count() <= limit);
                prop_assert!(!chunk.is_empty());
            }
            let words = |s: &str| s.split_whitespace().collect::<String>();
            prop_assert_eq!(words(&chunks.join(" ")), words(&text));
        }
    }
}
