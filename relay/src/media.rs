//! Images on their way out: stored under `DATA_DIR/media` with unguessable names, sent to
//! Telegram as uploads, and served to Twilio at `GET /media/<name>` for an hour (Twilio fetches
//! media from a public URL). Old files are swept away.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long Twilio may fetch a stored image.
pub const SERVE_FOR: Duration = Duration::from_secs(3600);
/// When the sweeper deletes a stored image.
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("media")
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        _ => "png",
    }
}

pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "image/png",
    }
}

/// An image's width and height from its header (PNG, JPEG, GIF), without decoding it.
pub fn dimensions(image: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| {
        Some(u32::from(u16::from_be_bytes(
            image.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let be32 = |at: usize| Some(u32::from_be_bytes(image.get(at..at + 4)?.try_into().ok()?));
    if image.starts_with(b"\x89PNG\r\n\x1a\n") && image.get(12..16) == Some(b"IHDR") {
        return Some((be32(16)?, be32(20)?));
    }
    if image.starts_with(b"GIF8") {
        let le16 = |at: usize| {
            Some(u32::from(u16::from_le_bytes(
                image.get(at..at + 2)?.try_into().ok()?,
            )))
        };
        return Some((le16(6)?, le16(8)?));
    }
    if image.starts_with(&[0xFF, 0xD8]) {
        // Walk the segments to a start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC).
        let mut at = 2;
        while at + 9 < image.len() {
            if image[at] != 0xFF {
                return None;
            }
            let marker = image[at + 1];
            if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                return Some((be16(at + 7)?, be16(at + 5)?));
            }
            at += 2 + be16(at + 2)? as usize;
        }
    }
    None
}

/// 128 random bits in hex: the name is the capability.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores `bytes` and returns the file name.
pub fn store(data_dir: &Path, bytes: &[u8], content_type: &str) -> std::io::Result<String> {
    let folder = folder(data_dir);
    std::fs::create_dir_all(&folder)?;
    let name = format!("{}.{}", random_id(), extension(content_type));
    std::fs::write(folder.join(&name), bytes)?;
    Ok(name)
}

/// The path of a stored image if `name` is one of ours (32 hex digits and a known extension:
/// nothing else, so no path tricks) and it is at most `max_age` old.
pub fn lookup(data_dir: &Path, name: &str, max_age: Duration) -> Option<PathBuf> {
    let (id, ext) = name.split_once('.')?;
    if id.len() != 32
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
        || !["png", "jpg", "webp", "gif"].contains(&ext)
    {
        return None;
    }
    let path = folder(data_dir).join(name);
    let age = std::fs::metadata(&path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .unwrap_or_default();
    (age <= max_age).then_some(path)
}

/// Deletes stored images older than [`KEEP_FOR`].
pub fn sweep(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(folder(data_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > KEEP_FOR);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// The first 24 bytes of a PNG of `width`×`height`: all a header reader needs.
    pub fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(width.to_be_bytes());
        png.extend(height.to_be_bytes());
        png
    }

    #[test]
    fn image_dimensions_come_from_the_header() {
        assert_eq!(dimensions(&png_header(1280, 9000)), Some((1280, 9000)));
        let gif = b"GIF89a\x0a\x00\x14\x00";
        assert_eq!(dimensions(gif), Some((10, 20)));
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 300 and width 400.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend([0u8; 14]);
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0x2C, 0x01, 0x90, 0x03]);
        assert_eq!(dimensions(&jpeg), Some((400, 300)));
        assert_eq!(dimensions(b"not an image"), None);
    }

    use super::*;

    #[test]
    fn stores_and_finds_only_real_names() {
        let dir = tempfile::tempdir().unwrap();
        let name = store(dir.path(), b"png bytes", "image/png").unwrap();
        assert!(lookup(dir.path(), &name, SERVE_FOR).is_some());
        for bad in [
            "../journal.db",
            "x.png",
            &format!("{}.exe", &name[..32]),
            "",
            ".",
        ] {
            assert!(lookup(dir.path(), bad, SERVE_FOR).is_none(), "{bad}");
        }
        assert_ne!(random_id(), random_id());
    }
}
