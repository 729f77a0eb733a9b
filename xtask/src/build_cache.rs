//! Where `cargo xtask test` keeps its build outputs: outside the clone, so a fresh clone of
//! the same code (CI clones main for every run) reuses what the last run compiled instead of
//! rebuilding every dependency.
//!
//! The directory is keyed by the toolchain (`rustc -vV`) and `Cargo.lock`: a different
//! compiler or a changed dependency gets a new directory, so a stale one is never used (cargo's
//! own fingerprints then take care of the workspace's sources). Only the newest key is kept;
//! older ones are removed so the cache does not grow with every lock change.
//!
//! Cargo reuses a workspace crate built in another checkout when the sources here are older
//! than that build (a working tree after CI built a clone of it in the same cache), and such a
//! build keeps the other checkout's paths (`env!("CARGO_MANIFEST_DIR")`, which tests read
//! files by). So the cache notes which checkout built it, and another one first cleans the
//! workspace's own crates (the dependencies stay).
//!
//! `CARGO_TARGET_DIR`, when set, wins: the cache is only a default.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;

/// Points every cargo this process starts at the cache (unless `CARGO_TARGET_DIR` is set) and
/// turns incremental compilation off for them: a test run compiles each crate once, so
/// incremental state would only cost time and gigabytes. Returns the target directory used.
pub fn use_for_this_run(root: &Path) -> anyhow::Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = cache_root().context("no HOME to keep the build cache in")?;
            let key = key(root)?;
            prune_other_keys(&cache, &key);
            let target = cache.join(format!("target-{key}"));
            if built_by_another_checkout(&target, root) {
                cmd::run(
                    Command::new("cargo")
                        .args(["clean", "--workspace"])
                        .env("CARGO_TARGET_DIR", &target),
                )?;
            }
            std::fs::create_dir_all(&target)?;
            std::fs::write(
                target.join(CHECKOUT_FILE),
                root.to_string_lossy().as_bytes(),
            )?;
            target
        }
    };
    // SAFETY: called at the start of `main`'s command, before xtask starts any thread, so no
    // other thread reads the environment while it changes.
    unsafe {
        std::env::set_var("CARGO_TARGET_DIR", &target);
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    println!("build outputs: {}", target.display());
    Ok(target)
}

/// Removes the variables `cargo run` set for xtask's own package (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, …) from this process, so the cargo commands it starts see the same
/// environment as a plain `cargo` in a terminal. Build scripts such as ring's declare
/// `rerun-if-env-changed=CARGO_MANIFEST_DIR`, so a value left over from xtask made every
/// other cargo run rebuild ring and all that depends on it (the TLS stack, reqwest, the
/// workspace), ~2 minutes each time. `cli/tests/common` strips the same set from the cargo
/// it starts inside a test.
pub fn forget_the_package_cargo_ran() {
    let set_for_a_package: Vec<_> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| is_package_variable(name))
        .collect();
    // SAFETY: called first thing in `main`, before xtask starts any thread.
    unsafe {
        for name in set_for_a_package {
            std::env::remove_var(name);
        }
    }
}

/// The variables cargo sets for the crate it builds or runs (the cargo book, "Environment
/// variables Cargo sets for crates"), as opposed to ones that configure cargo itself.
fn is_package_variable(name: &str) -> bool {
    ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CFG_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || [
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .contains(&name)
}

/// Beside the build outputs: the checkout they were last built for.
const CHECKOUT_FILE: &str = "textslash-checkout";

/// Whether `target` was last built for a checkout other than `root`.
fn built_by_another_checkout(target: &Path, root: &Path) -> bool {
    std::fs::read(target.join(CHECKOUT_FILE))
        .is_ok_and(|built_for| built_for != root.to_string_lossy().as_bytes())
}

/// `$TEXTSLASH_BUILD_CACHE`, else `$XDG_CACHE_HOME/textslash`, else `~/.cache/textslash`.
fn cache_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TEXTSLASH_BUILD_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("textslash"))
}

/// A short hex key over the toolchain's full version and the lock file.
fn key(root: &Path) -> anyhow::Result<String> {
    let toolchain = cmd::output(Command::new("rustc").arg("-vV")).context("rustc -vV")?;
    let lock = std::fs::read(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    Ok(format!("{:016x}", fnv1a(&[toolchain.as_bytes(), &lock])))
}

/// FNV-1a, 64-bit: stable across Rust releases (std's hasher is not promised to be).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Removes `target-*` directories of other keys (an older lock or toolchain).
fn prune_other_keys(cache: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let current = format!("target-{key}");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("target-") && name != current {
            println!("build cache: removing {name} (another toolchain or Cargo.lock)");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_toolchain_or_the_lock_and_only_then() {
        let base = fnv1a(&[b"rustc 1.95.0", b"lock v1"]);
        assert_eq!(base, fnv1a(&[b"rustc 1.95.0", b"lock v1"]));
        assert_ne!(base, fnv1a(&[b"rustc 1.96.0", b"lock v1"]));
        assert_ne!(base, fnv1a(&[b"rustc 1.95.0", b"lock v2"]));
        // The published FNV-1a 64 value for "a", so the hash is the standard one.
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn other_keys_are_pruned_and_the_current_one_kept() {
        let cache = tempfile_dir("prune");
        for name in ["target-aaaa", "target-bbbb", "notes"] {
            std::fs::create_dir_all(cache.join(name)).unwrap();
        }
        prune_other_keys(&cache, "bbbb");
        let mut left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes", "target-bbbb"]);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    /// A fresh folder for one test (tests run in parallel threads of one process).
    fn tempfile_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn another_checkout_is_noticed() {
        let target = tempfile_dir("checkout");
        assert!(
            !built_by_another_checkout(&target, Path::new("/work/main")),
            "a new cache"
        );
        std::fs::write(target.join(CHECKOUT_FILE), "/work/main").unwrap();
        assert!(!built_by_another_checkout(&target, Path::new("/work/main")));
        assert!(built_by_another_checkout(
            &target,
            Path::new("/check/work/main")
        ));
        std::fs::remove_dir_all(&target).unwrap();
    }
}
