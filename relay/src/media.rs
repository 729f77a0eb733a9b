//! Images on their way out: stored under `DATA_DIR/media` with unguessable names, sent to
//! Telegram and Discord as uploads, and served to Twilio at `GET /media/<name>` for an hour
//! (Twilio fetches media from a public URL). Old files are swept away.
//!
//! Attachments on their way in: [`BoundedFetch`] downloads them from a channel's own media
//! hosts only, bounded in size and time.

use crate::SendError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bytes of a stored image, for a channel that uploads it (Telegram, Discord).
pub async fn read_stored(data_dir: &Path, name: &str) -> Result<Vec<u8>, SendError> {
    let Some(path) = lookup(data_dir, name, KEEP_FOR) else {
        return Err(SendError::Permanent(
            "the image expired before it could be sent".into(),
        ));
    };
    tokio::fs::read(path)
        .await
        .map_err(|e| SendError::Permanent(format!("reading a stored image: {e}")))
}

/// `host` or `host:port`, as [`BoundedFetch::allowed_hosts`] names them.
pub fn host_of(url: &reqwest::Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Whether `host` is one of `allowed`: an exact `host` or `host:port`, or `*.domain` for any
/// subdomain.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let bare = host.split(':').next().unwrap_or(host);
    allowed
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => bare.ends_with(&format!(".{domain}")),
            None => pattern == host || pattern == bare,
        })
}

/// The most an inbound attachment may be: WhatsApp's media limit (16 MB, Twilio's media
/// limits for WhatsApp), applied to every channel.
pub const INBOUND_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The most all of one message's attachments may be together: what the vm takes in one
/// message (32 MB of JSON) once base64 has made them a third larger, with room to spare; and
/// all the relay ever holds of one message, whatever it declares.
pub const MESSAGE_MEDIA_BUDGET: usize = 20 * 1024 * 1024;
/// The most the relay keeps of images on their way out (`DATA_DIR/media`).
pub const STORED_MEDIA_QUOTA: u64 = 256 * 1024 * 1024;

/// A download, redirects and body included, gets this long; the forwarder waits for it.
pub const INBOUND_TIMEOUT: Duration = Duration::from_secs(30);

/// An inbound attachment download: redirects followed only to `allowed_hosts` (reqwest drops
/// credentials on a redirect to another host), at most `max_bytes`, all within `timeout`, so
/// a huge or stalled file can neither exhaust the relay nor hold up the forwarder.
pub struct BoundedFetch {
    pub allowed_hosts: Vec<String>,
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BoundedFetch {
    /// Downloads `url` (whose host the caller has checked), with HTTP Basic credentials if
    /// given.
    pub async fn get(
        self,
        url: reqwest::Url,
        basic_auth: Option<(&str, &str)>,
    ) -> Result<Vec<u8>, SendError> {
        let refuse = |why: String| SendError::Permanent(why);
        let max_bytes = self.max_bytes;
        let allowed = self.allowed_hosts;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() < 5 && host_allowed(&host_of(attempt.url()), &allowed) {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| refuse(e.to_string()))?;
        let failed = |e: reqwest::Error| SendError::Retry {
            reason: format!("media download failed: {}", e.without_url()),
            after: None,
        };
        let mut request = http.get(url);
        if let Some((user, password)) = basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let mut response = request.send().await.map_err(failed)?;
        if response.status().is_redirection() {
            return Err(refuse(
                "the media URL redirected to a host that is not the channel's".into(),
            ));
        }
        if !response.status().is_success() {
            return Err(refuse(format!(
                "media download answered {}",
                response.status()
            )));
        }
        let too_large = || {
            refuse(format!(
                "the attachment is larger than {} MB",
                max_bytes >> 20
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

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
        // `/diff`'s document.
        "text/x-diff" => "diff",
        _ => "png",
    }
}

/// A stored file that is no picture (`/diff`'s), sent as a document.
pub fn is_document(name: &str) -> bool {
    name.ends_with(".diff")
}

pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("diff") => "text/x-diff; charset=utf-8",
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

/// Stores `bytes` and returns the file name; refuses when the folder would pass
/// [`STORED_MEDIA_QUOTA`] even after old files went.
pub fn store(data_dir: &Path, bytes: &[u8], content_type: &str) -> std::io::Result<String> {
    store_within(data_dir, bytes, content_type, STORED_MEDIA_QUOTA)
}

fn store_within(
    data_dir: &Path,
    bytes: &[u8],
    content_type: &str,
    quota: u64,
) -> std::io::Result<String> {
    let folder = folder(data_dir);
    std::fs::create_dir_all(&folder)?;
    let used = || -> u64 {
        std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    if used() + bytes.len() as u64 > quota {
        sweep(data_dir);
        if used() + bytes.len() as u64 > quota {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "the relay's folder of outgoing images is full",
            ));
        }
    }
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
        || !["png", "jpg", "webp", "gif", "diff"].contains(&ext)
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
    #[test]
    fn the_outgoing_images_folder_has_a_quota() {
        let dir = tempfile::tempdir().unwrap();
        let name = super::store_within(dir.path(), &[1u8; 600], "image/png", 1000).unwrap();
        assert!(super::lookup(dir.path(), &name, super::KEEP_FOR).is_some());
        let refused = super::store_within(dir.path(), &[1u8; 600], "image/png", 1000);
        assert!(refused.is_err(), "a second image passes the quota");
        assert!(super::store_within(dir.path(), &[1u8; 300], "image/png", 1000).is_ok());
    }

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
