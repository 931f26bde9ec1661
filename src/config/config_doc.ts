/**
 * docs/configuration.md, generated from src/config/config.ts: every entry of `defaults` with its QJM_* variable, its
 * default and its doc comment, grouped under the section comments (`// ---- name ----`). `npm run docs:config` writes
 * it; a unit test fails when the file is stale, so the table can never drift from the code.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defaults, envName } from "./config.js";
import { packageRoot } from "../util/package_root.js";

export const CONFIG_SOURCE = path.join(packageRoot(), "src/config/config.ts");
export const CONFIG_DOC = path.join(packageRoot(), "docs/configuration.md");

const HEADER = `# Configuration

Generated from \`src/config/config.ts\` by \`npm run docs:config\` (a unit test fails when this file is stale): edit
the doc comments there. Every address, limit and timeout can be set in a JSON configuration file
(\`--config qjm.json\` or \`QJM_CONFIG_FILE\`; keys are the camelCase names, e.g. \`{"quorumTimeoutMs": 4000}\`) and
from the environment, which overrides the file (camelCase name → \`QJM_SCREAMING_SNAKE\`); a list is comma-separated
in a variable and a JSON array of strings in the file, and a list variable set to nothing is the empty list.
\`QJM_LOG_LEVEL\` sets the log level; logs are pino JSON lines, pretty on a TTY.
`;

interface Entry {
  key: string;
  doc: string;
}

/** The entries of `defaults` in source order, each with its doc comment, and the section each starts. */
export function parseDefaults(source: string): { section: string | null; entries: Entry[] }[] {
  const start = source.indexOf("export const defaults = {");
  const end = source.indexOf("\n};", start);
  if (start < 0 || end < 0) throw new Error("no `export const defaults = { … };` in config.ts");
  const sections: { section: string | null; entries: Entry[] }[] = [{ section: null, entries: [] }];
  let comment: string[] | null = null;
  let doc = "";
  for (const raw of source.slice(start, end).split("\n").slice(1)) {
    const line = raw.trim();
    const heading = /^\/\/ ----\s*(.*?)\s*----$/.exec(line);
    if (heading !== null) {
      if (!/^end\b/.test(heading[1])) sections.push({ section: heading[1], entries: [] });
      else sections.push({ section: null, entries: [] });
      continue;
    }
    if (comment !== null || line.startsWith("/**")) {
      comment = [...(comment ?? []), line.replace(/^\/\*\*\s?/, "").replace(/\*\/$/, "").replace(/^\*\s?/, "").trim()];
      if (line.endsWith("*/")) {
        doc = comment.filter((l) => l !== "").join(" ");
        comment = null;
      }
      continue;
    }
    const entry = /^([A-Za-z0-9]+):/.exec(line);
    if (entry !== null) {
      sections.at(-1)!.entries.push({ key: entry[1], doc });
      doc = "";
    }
  }
  return sections.filter((s) => s.entries.length > 0);
}

function shown(value: unknown): string {
  return Array.isArray(value) ? value.join(",") : String(value);
}

/** The whole of docs/configuration.md. */
export function configurationDoc(source: string): string {
  const out = [HEADER];
  for (const { section, entries } of parseDefaults(source)) {
    out.push(section === null ? "" : `\n### ${section}\n`);
    out.push("| variable | default | meaning |", "|---|---|---|");
    for (const { key, doc } of entries) {
      const value = (defaults as Record<string, unknown>)[key];
      if (value === undefined) throw new Error(`config.ts documents ${key}, which defaults does not have`);
      out.push(`| \`${envName(key)}\` | \`${shown(value)}\` | ${doc.replace(/\|/g, "\\|")} |`);
    }
  }
  return out.join("\n") + "\n";
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fs.writeFileSync(CONFIG_DOC, configurationDoc(fs.readFileSync(CONFIG_SOURCE, "utf8")));
  console.log(`wrote ${path.relative(process.cwd(), CONFIG_DOC)}`);
}
