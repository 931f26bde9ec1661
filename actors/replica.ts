#!/usr/bin/env node
/** A replica: `node dist/bundle/replica.js --id r1 [--redis-port 6391] [--config qjm.json]`. */
import { roleMain } from "../src/actor/roles.js";

await roleMain("replica");
