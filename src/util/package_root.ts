/**
 * Where redis-qjm's files are: its package root and the actors' bundles. Found by walking up from this module's file
 * to redis-qjm's package.json, so the answer is the same from src/, dist/src/ and a bundle in dist/bundle/, which sit
 * at different depths. Looked up on first use, never at import: the client library imports this module (through
 * tls.ts), and an application that bundles the client has no redis-qjm package.json above it.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

let root: string | undefined;

function findPackageRoot(from: string): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file) && (JSON.parse(fs.readFileSync(file, "utf8")) as { name?: string }).name === "redis-qjm") return dir;
    if (path.dirname(dir) === dir) throw new Error(`no redis-qjm package.json above ${from}`);
  }
}

/** The directory of redis-qjm's package.json. */
export function packageRoot(): string {
  return (root ??= findPackageRoot(fileURLToPath(import.meta.url)));
}

/** redis-qjm's version (package.json). */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}

/**
 * dist/bundle: actors/*.ts bundled by infra/bundle.mjs (one file per entry point plus shared chunks). A process loads
 * one bundle instead of some 350 modules: a data node's start costs ~30 % less CPU (docs/testing.md, "The suite's time").
 * Every actor's command line holds this path (what a pid is checked against).
 */
export function bundleDir(): string {
  return path.join(packageRoot(), "dist", "bundle");
}

/** The file infra/bundle.mjs writes last in bundleDir(): its time is the bundles' (staleBundle). */
export const BUNDLE_STAMP = ".built";

export type Program = "cli" | "cluster" | "journal-node" | "master" | "replica" | "data-node";

/** The program of an actor or of the command line: `dist/bundle/<name>.js`. */
export function actorProgram(name: Program): string {
  return path.join(bundleDir(), `${name}.js`);
}

/**
 * Why the bundles must not be run: none built, or older than the compiled code (`tsc` run alone: a process would run
 * the code of the last `npm run build` while the tests import today's). Null when they are fresh, and in an installed
 * package (no dist/.tsbuildinfo: nothing compiles there).
 */
export function staleBundle(): string | null {
  const compiled = fs.statSync(path.join(packageRoot(), "dist", ".tsbuildinfo"), { throwIfNoEntry: false })?.mtimeMs;
  if (compiled === undefined) return null;
  const built = fs.statSync(path.join(bundleDir(), BUNDLE_STAMP), { throwIfNoEntry: false })?.mtimeMs;
  if (built === undefined) return `${bundleDir()} is not built: run npm run build`;
  return built < compiled ? `${bundleDir()} is older than the compiled code: run npm run build` : null;
}
