#!/usr/bin/env node
/** The master: `node dist/bundle/master.js [--id m1] [--config qjm.json]` (its Redis on $QJM_MASTER_REDIS_PORT). */
import { roleMain } from "../src/actor/roles.js";

await roleMain("master");
