#!/usr/bin/env node
/** A replica: `node dist/actors/replica.js --id r1 --redis-port 6391`. */
import path from "node:path";
import { arg, runActor } from "../src/actor/run_actor.js";
import { Replica } from "../src/replica/replica.js";

const id = arg("id");
await runActor("replica", id, ({ config, nc, log, metrics }) => {
  const index = Math.max(0, config.replicas.indexOf(id));
  const port = Number(arg("redis-port", String(config.replicaRedisPortBase + index)));
  return new Replica(id, config, path.join(config.dataDir, id), port, nc, log, true, null, metrics);
});
