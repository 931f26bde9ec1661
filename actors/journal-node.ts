#!/usr/bin/env node
/** A journal node: `node dist/actors/journal-node.js --id jn1` (data under $QJM_DATA_DIR/jn1). */
import path from "node:path";
import { arg, runActor } from "../src/actor/run_actor.js";
import { JournalNode } from "../src/journal/journal_node.js";

const id = arg("id");
await runActor("journal", id, ({ config, nc, log, metrics }) => new JournalNode(id, config, path.join(config.dataDir, id), nc, log, metrics));
