// Bundles the compiled entry points dist/actors/*.js into dist/bundle/ (`npm run build` and infra/setup.sh run it after
// tsc). Every actor process and the command line run from there: one file and a few shared chunks instead of ~350
// modules: a data node's start costs ~30 % less CPU (docs/testing.md, "The suite's time").
// Code splitting keeps each role's code in its own chunk: a journal node does not load the data node's.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "dist", "bundle");
const actors = path.join(root, "dist", "actors");
const entryPoints = fs.readdirSync(actors).filter((f) => f.endsWith(".js")).map((f) => path.join(actors, f));

fs.rmSync(out, { recursive: true, force: true });
await build({
  entryPoints,
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  // pino starts pino-pretty in a worker thread by its file name (a terminal's log), and msgpackr loads its optional
  // native part by name: both stay in node_modules.
  external: ["pino", "pino-pretty", "msgpackr-extract"],
  // The CommonJS packages bundled in (ioredis, prom-client) call require() for Node's own modules.
  banner: { js: "import { createRequire as qjmCreateRequire } from 'node:module'; const require = qjmCreateRequire(import.meta.url);" },
});
for (const f of fs.readdirSync(out)) if (entryPoints.some((e) => path.basename(e) === f)) fs.chmodSync(path.join(out, f), 0o755);
fs.writeFileSync(path.join(out, ".built"), `${new Date().toISOString()}\n`);
