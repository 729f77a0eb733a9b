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
mod tests {
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
