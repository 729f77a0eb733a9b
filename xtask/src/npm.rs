//! `cargo xtask npm`: the npm packages that carry the `textslash` binary, as esbuild and biome
//! ship theirs. `npm/textslash` is the package people install: a launcher and one optional
//! dependency per platform. This module makes each platform package (`@textslash/cli-<os>-<cpu>`,
//! its binary plus the `os` and `cpu` npm matches on) and packs them all with `npm pack`.
//!
//! The release workflow (`.github/workflows/npm.yml`) runs it with the five binaries of a
//! GitHub Release; the install tests (`cli/tests/install.rs`) with this machine's binary.
//! Run alone, it builds this machine's static release binary and prints the sizes.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;

/// One binary to package: the Rust target it was built for and where it is.
pub struct Binary {
    pub target: String,
    pub path: PathBuf,
}

/// A packed package: its name and tarball.
pub struct Packed {
    pub name: String,
    pub tarball: PathBuf,
    /// The binary inside, for a platform package.
    pub binary_bytes: Option<u64>,
}

/// `cargo xtask npm [--binary <target>=<path>]... [--out <dir>]`.
pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut binaries = Vec::new();
    let mut out = root.join("target/npm");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--binary" => {
                let value = args.next().context("--binary needs <target>=<path>")?;
                let (target, path) = value
                    .split_once('=')
                    .context("--binary needs <target>=<path>")?;
                binaries.push(Binary {
                    target: target.into(),
                    path: path.into(),
                });
            }
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            other => bail!("cargo xtask npm: unknown argument {other}"),
        }
    }
    if binaries.is_empty() {
        binaries.push(build_this_machine_s(root)?);
    }
    let packed = pack(root, &binaries, &out)?;
    for package in &packed {
        let tarball = std::fs::metadata(&package.tarball)?.len();
        match package.binary_bytes {
            Some(binary) => println!(
                "{}: {} ({:.1} MiB packed, binary {:.1} MiB)",
                package.name,
                package.tarball.display(),
                mib(tarball),
                mib(binary)
            ),
            None => println!(
                "{}: {} ({tarball} bytes packed)",
                package.name,
                package.tarball.display()
            ),
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// This machine's static release binary, the kind a release ships (musl on Linux).
fn build_this_machine_s(root: &Path) -> anyhow::Result<Binary> {
    let mut timings = cmd::Timings::default();
    crate::tools::ensure_musl(&mut timings)?;
    let target = crate::tools::MUSL_TARGET;
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "textslash",
        "--target",
        target,
    ]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(Binary {
        target: target.into(),
        path: target_dir.join(target).join("release/textslash"),
    })
}

/// npm's names for a Rust target's platform: `process.platform` and `process.arch`.
pub fn npm_platform(target: &str) -> Option<(&'static str, &'static str)> {
    let cpu = match target.split('-').next()? {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let os = if target.contains("-linux-") {
        "linux"
    } else if target.contains("-apple-darwin") {
        "darwin"
    } else if target.contains("-windows-") {
        "win32"
    } else {
        return None;
    };
    Some((os, cpu))
}

/// Writes each platform package and the main one under `out`, packs them, and returns the
/// tarballs, platform packages first (the order they are published in).
pub fn pack(root: &Path, binaries: &[Binary], out: &Path) -> anyhow::Result<Vec<Packed>> {
    let main_dir = root.join("npm/textslash");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(main_dir.join("package.json"))
            .context("reading npm/textslash/package.json")?,
    )?;
    let version = manifest["version"]
        .as_str()
        .context("package.json version")?;
    if version != env!("CARGO_PKG_VERSION") {
        bail!(
            "npm/textslash/package.json says {version}, the workspace {}: make them one version",
            env!("CARGO_PKG_VERSION")
        );
    }
    let optional = manifest["optionalDependencies"]
        .as_object()
        .context("package.json optionalDependencies")?;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out)?;

    let mut packed = Vec::new();
    for binary in binaries {
        let (os, cpu) = npm_platform(&binary.target)
            .with_context(|| format!("{}: not a platform npm knows", binary.target))?;
        let name = optional
            .keys()
            .find(|name| name.ends_with(&format!("-{os}-{cpu}")))
            .with_context(|| {
                format!("npm/textslash/package.json has no optional dependency for {os}-{cpu}")
            })?;
        if optional[name] != version {
            bail!(
                "npm/textslash/package.json wants {name}@{}, not {version}",
                optional[name]
            );
        }
        let dir = out.join(name.rsplit('/').next().unwrap_or(name));
        let executable = if os == "win32" {
            "textslash.exe"
        } else {
            "textslash"
        };
        std::fs::create_dir_all(dir.join("bin"))?;
        let bytes = std::fs::copy(&binary.path, dir.join("bin").join(executable))
            .with_context(|| format!("copying {}", binary.path.display()))?;
        set_executable(&dir.join("bin").join(executable))?;
        let platform_manifest = json!({
            "name": name,
            "version": version,
            "description": format!("The textslash binary for {os} {cpu}, installed by the textslash package."),
            "license": manifest["license"],
            "repository": manifest["repository"],
            "os": [os],
            "cpu": [cpu],
            "files": ["bin/"],
            "preferUnplugged": true,
        });
        std::fs::write(
            dir.join("package.json"),
            serde_json::to_string_pretty(&platform_manifest)? + "\n",
        )?;
        std::fs::write(
            dir.join("README.md"),
            format!(
                "# {name}\n\nThe `textslash` binary for {os} {cpu}. Install `textslash` instead: \
                 npm picks this package for you.\n"
            ),
        )?;
        packed.push(Packed {
            name: name.clone(),
            tarball: npm_pack(&dir, out)?,
            binary_bytes: Some(bytes),
        });
    }

    let main_out = out.join("textslash");
    std::fs::create_dir_all(main_out.join("bin"))?;
    for file in ["package.json", "README.md", "bin/textslash.js"] {
        std::fs::copy(main_dir.join(file), main_out.join(file))
            .with_context(|| format!("copying npm/textslash/{file}"))?;
    }
    set_executable(&main_out.join("bin/textslash.js"))?;
    packed.push(Packed {
        name: "textslash".into(),
        tarball: npm_pack(&main_out, out)?,
        binary_bytes: None,
    });
    Ok(packed)
}

/// `npm pack` of one package folder into `out`; the tarball's path.
fn npm_pack(package: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let packed = Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(out)
        .arg(package)
        .env("npm_config_update_notifier", "false")
        .output()
        .context("running npm (is Node.js installed?)")?;
    anyhow::ensure!(
        packed.status.success(),
        "npm pack {} failed: {}",
        package.display(),
        String::from_utf8_lossy(&packed.stderr).trim()
    );
    let listing: Value = serde_json::from_slice(&packed.stdout).context("npm pack --json")?;
    let file = listing[0]["filename"]
        .as_str()
        .context("npm pack named no tarball")?;
    Ok(out.join(file))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::npm_platform;

    #[test]
    fn rust_targets_map_to_npm_s_platform_names() {
        assert_eq!(
            npm_platform("x86_64-unknown-linux-musl"),
            Some(("linux", "x64"))
        );
        assert_eq!(
            npm_platform("aarch64-unknown-linux-musl"),
            Some(("linux", "arm64"))
        );
        assert_eq!(
            npm_platform("x86_64-unknown-linux-gnu"),
            Some(("linux", "x64"))
        );
        assert_eq!(
            npm_platform("aarch64-apple-darwin"),
            Some(("darwin", "arm64"))
        );
        assert_eq!(
            npm_platform("x86_64-pc-windows-msvc"),
            Some(("win32", "x64"))
        );
        assert_eq!(npm_platform("riscv64gc-unknown-linux-gnu"), None);
    }
}
