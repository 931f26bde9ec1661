#!/usr/bin/env node
/** The master: `node dist/actors/master.js [--id m1]` (its Redis on $QJM_MASTER_REDIS_PORT). */
import path from "node:path";
import { arg, runActor } from "../src/actor/run_actor.js";
import { Master } from "../src/master/master.js";

const id = arg("id", "m1");
await runActor("master", id, ({ config, nc, log, metrics }) => new Master(id, config, path.join(config.dataDir, id), nc, log, { metrics }));
