/** docs/configuration.md is generated from config.ts: it must be what the generator writes now. */
import fs from "node:fs";
import test from "ava";
import { defaults } from "../../src/config/config.js";
import { CONFIG_DOC, CONFIG_SOURCE, configurationDoc, parseDefaults } from "../../src/config/config_doc.js";

test("config doc - every default has a documented row, and docs/configuration.md is not stale (npm run docs:config)", (t) => {
  const source = fs.readFileSync(CONFIG_SOURCE, "utf8");
  const documented = parseDefaults(source).flatMap((s) => s.entries);
  t.deepEqual(documented.map((e) => e.key).sort(), Object.keys(defaults).sort());
  for (const e of documented) t.true(e.doc.length > 0, `${e.key} has a doc comment`);
  t.is(fs.readFileSync(CONFIG_DOC, "utf8"), configurationDoc(source), "docs/configuration.md is stale: run npm run docs:config");
});
