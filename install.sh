#!/bin/sh
# Installs the `textslash` command from a GitHub Release of textslash:
#
#   curl -fsSL https://raw.githubusercontent.com/textslash/textslash/main/install.sh | sh
#
# It picks this machine's archive (static Linux, macOS; x86_64 or arm64), checks it against
# the SHA-256 the release publishes beside it, and puts `textslash` in ~/.local/bin. Nothing is
# installed when a download or the check fails.
#
# Settings, all optional:
#   TEXTSLASH_VERSION       a version (0.2.0) instead of the newest release
#   TEXTSLASH_INSTALL_DIR   where the command goes (default: ~/.local/bin)
#   TEXTSLASH_DOWNLOAD_URL  the releases (default: https://github.com/textslash/textslash/releases;
#                           a fork names its own, a test a local server)
#
# The archives are the ones dist builds (dist-workspace.toml): textslash-<target>.tar.gz, with
# textslash-<target>/textslash inside, and textslash-<target>.tar.gz.sha256 beside it.
set -eu

releases="${TEXTSLASH_DOWNLOAD_URL:-https://github.com/textslash/textslash/releases}"
install_dir="${TEXTSLASH_INSTALL_DIR:-${HOME:?HOME is not set; set TEXTSLASH_INSTALL_DIR}/.local/bin}"

say() { printf '%s\n' "$*"; }
fail() {
  printf 'textslash install: %s\n' "$*" >&2
  exit 1
}

target() {
  os="$(uname -s)"
  arch="$(uname -m)"
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) fail "no textslash build for the $arch processor; install with Rust: cargo install --git https://github.com/textslash/textslash textslash --locked" ;;
  esac
  case "$os" in
    Linux) printf '%s-unknown-linux-musl' "$arch" ;;
    Darwin) printf '%s-apple-darwin' "$arch" ;;
    *) fail "no textslash build for $os here; on Windows use npm: npx textslash setup" ;;
  esac
}

download() { # url file
  if command -v curl >/dev/null 2>&1; then
    curl --proto '=https,http' -fsSL "$1" -o "$2"
  elif command -v wget >/dev/null 2>&1; then
    wget -q "$1" -O "$2"
  else
    fail "neither curl nor wget is installed"
  fi
}

sha256_of() { # file
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    fail "neither sha256sum nor shasum is installed, so the download cannot be checked"
  fi
}

main() {
  target="$(target)"
  archive="textslash-${target}.tar.gz"
  if [ -n "${TEXTSLASH_VERSION:-}" ]; then
    base="${releases}/download/v${TEXTSLASH_VERSION#v}"
  else
    base="${releases}/latest/download"
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT INT TERM

  say "Downloading ${base}/${archive}"
  download "${base}/${archive}" "${work}/${archive}" || fail "could not download ${base}/${archive}"
  download "${base}/${archive}.sha256" "${work}/${archive}.sha256" ||
    fail "could not download ${archive}.sha256, so the download cannot be checked"
  expected="$(cut -d ' ' -f 1 <"${work}/${archive}.sha256")"
  actual="$(sha256_of "${work}/${archive}")"
  [ "$expected" = "$actual" ] ||
    fail "${archive} does not match its published SHA-256 checksum; nothing was installed"

  tar -xzf "${work}/${archive}" -C "$work" || fail "could not unpack ${archive}"
  binary="${work}/textslash-${target}/textslash"
  [ -f "$binary" ] || fail "${archive} holds no textslash-${target}/textslash"
  mkdir -p "$install_dir"
  # Replaced, not overwritten in place, so a running textslash keeps its file.
  cp "$binary" "${install_dir}/.textslash.new"
  chmod 755 "${install_dir}/.textslash.new"
  mv -f "${install_dir}/.textslash.new" "${install_dir}/textslash"

  say "Installed $("${install_dir}/textslash" --version) to ${install_dir}/textslash"
  case ":${PATH:-}:" in
    *":${install_dir}:"*) say "Next: textslash setup" ;;
    *) say "Add ${install_dir} to your PATH (export PATH=\"${install_dir}:\$PATH\"), then run: textslash setup" ;;
  esac
}

main "$@"
