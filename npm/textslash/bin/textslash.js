#!/usr/bin/env node
// The `textslash` command of the npm package: it runs the native binary that npm installed
// beside it. package.json lists one optional dependency per platform; each declares its `os`
// and `cpu`, so npm installs only the one for this machine. Nothing is downloaded at install
// or run time, and there is no install script.
"use strict";

const { spawnSync } = require("node:child_process");
const manifest = require("../package.json");

const platform = `${process.platform}-${process.arch}`;
const executable = process.platform === "win32" ? "textslash.exe" : "textslash";

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function binaryPath() {
  const name = Object.keys(manifest.optionalDependencies || {}).find((dependency) =>
    dependency.endsWith(`-${platform}`),
  );
  if (!name) {
    fail(
      `textslash has no build for ${platform}. Install it with Rust instead: ` +
        "cargo install --git https://github.com/textslash/textslash textslash --locked",
    );
  }
  try {
    return require.resolve(`${name}/bin/${executable}`);
  } catch {
    fail(
      `${name}, which holds textslash for ${platform}, is not installed. npm leaves it out ` +
        "when optional dependencies are turned off (--omit=optional, --no-optional): install " +
        "textslash again without that option.",
    );
  }
}

const binary = binaryPath();
// The terminal sends Ctrl-C to the binary too; node stays until the binary has finished and
// then ends the same way it did.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {});
}
const result = spawnSync(binary, process.argv.slice(2), { stdio: "inherit" });
if (result.error) {
  fail(`could not start ${binary}: ${result.error.message}`);
}
if (result.signal) {
  process.removeAllListeners(result.signal);
  process.kill(process.pid, result.signal);
}
process.exit(result.status === null ? 1 : result.status);
