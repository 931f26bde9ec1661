/**
 * Where redis-qjm's files are: its package root and the actors' bundles. Found by walking up from this module's file
 * to redis-qjm's package.json, so the answer is the same from src/, dist/src/ and a bundle in dist/bundle/, which sit
 * at different depths.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(from: string): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file) && (JSON.parse(fs.readFileSync(file, "utf8")) as { name?: string }).name === "redis-qjm") return dir;
    if (path.dirname(dir) === dir) throw new Error(`no redis-qjm package.json above ${from}`);
  }
}

/** The directory of redis-qjm's package.json. */
export const PACKAGE_ROOT = findPackageRoot(fileURLToPath(import.meta.url));

/** redis-qjm's version (package.json). */
export const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;

/**
 * dist/bundle: actors/*.ts bundled by infra/bundle.mjs (one file per entry point plus shared chunks). A process loads
 * one bundle instead of ~350 modules: a data node's start costs ~30 % less CPU (docs/testing.md, "The suite's time").
 */
export const BUNDLE_DIR = path.join(PACKAGE_ROOT, "dist", "bundle");

/** The stamp infra/bundle.mjs writes last: the bundles are as new as the compiled code they were made from. */
const BUNDLE_STAMP = path.join(BUNDLE_DIR, ".built");

/**
 * The program of an actor or the command line, `dist/bundle/<name>.js`. Throws when the bundles are older than the
 * compiled code (`tsc` run alone): a process would run yesterday's code while its tests ran today's.
 */
export function actorProgram(name: "cli" | "cluster" | "journal-node" | "master" | "replica" | "data-node"): string {
  const built = fs.statSync(BUNDLE_STAMP, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  const compiled = fs.statSync(path.join(PACKAGE_ROOT, "dist", ".tsbuildinfo"), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  if (built < compiled) throw new Error(`${BUNDLE_DIR} is older than the compiled code: run npm run build`);
  return path.join(BUNDLE_DIR, `${name}.js`);
}
