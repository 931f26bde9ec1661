#!/usr/bin/env node
/** A journal node: `node dist/bundle/journal-node.js --id jn1 [--config qjm.json]` (data under $QJM_DATA_DIR/jn1). */
import { roleMain } from "../src/actor/roles.js";

await roleMain("journal-node");
