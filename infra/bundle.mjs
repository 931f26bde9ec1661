// Bundles the compiled entry points dist/actors/*.js into dist/bundle/ (`npm run build` and infra/setup.sh run it after
// tsc). Every actor process and the command line run from there: one file and a few shared chunks instead of ~350
// modules: a data node's start costs ~30 % less CPU (docs/testing.md, "The suite's time").
// Code splitting keeps each role's code in its own chunk: a journal node does not load the data node's.
import fs from "node:fs";
import path from "node:path";
import { build } from "esbuild";
// Compiled by tsc just before: the package, where the bundles go and the stamp staleBundle() reads, from one place.
import { BUNDLE_STAMP, bundleDir, packageRoot } from "../dist/src/util/package_root.js";

const root = packageRoot();
const out = bundleDir();
// The entry points of today's sources (tsc leaves the output of a deleted actor behind in dist/actors).
const names = fs.readdirSync(path.join(root, "actors")).filter((f) => f.endsWith(".ts")).map((f) => f.replace(/\.ts$/, ".js"));
const entryPoints = names.map((f) => path.join(root, "dist", "actors", f));

// Built aside, then swapped in: a cluster restarting an actor meanwhile finds the old bundle or the new one, whole.
const next = `${out}.next`;
fs.rmSync(next, { recursive: true, force: true });
await build({
  entryPoints,
  outdir: next,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  // pino starts pino-pretty in a worker thread by its file name (a terminal's log), and msgpackr finds its optional
  // native part from its own directory: they stay in node_modules.
  external: ["pino", "pino-pretty", "msgpackr", "msgpackr-extract"],
  // The CommonJS packages bundled in (ioredis, prom-client) call require() for Node's own modules, and some name
  // __dirname (ioredis, for its package.json's version: "error-fetching-version" from a bundle, a label in CLIENT LIST).
  banner: {
    js: [
      "import { createRequire as qjmCreateRequire } from 'node:module';",
      "import { fileURLToPath as qjmFileURLToPath } from 'node:url';",
      "const require = qjmCreateRequire(import.meta.url);",
      "const __filename = qjmFileURLToPath(import.meta.url);",
      "const __dirname = qjmFileURLToPath(new URL('.', import.meta.url));",
    ].join(" "),
  },
});
for (const f of names) fs.chmodSync(path.join(next, f), 0o755);
fs.writeFileSync(path.join(next, BUNDLE_STAMP), `${new Date().toISOString()}\n`);
const old = `${out}.old`;
fs.rmSync(old, { recursive: true, force: true });
if (fs.existsSync(out)) fs.renameSync(out, old);
fs.renameSync(next, out);
fs.rmSync(old, { recursive: true, force: true });
