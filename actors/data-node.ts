#!/usr/bin/env node
/**
 * A data node: `node dist/actors/data-node.js --id d1 [--redis-port 6395] [--resp-port 6479] [--priority 1]` (data under
 * $QJM_DATA_DIR/d1). The RESP front door's port defaults to respPort + the node's index (none when respPort is 0).
 */
import path from "node:path";
import { arg, runActor } from "../src/actor/run_actor.js";
import { DataNode } from "../src/datanode/data_node.js";

const id = arg("id");
await runActor("data", id, ({ config, nc, log, metrics }) => {
  const index = Math.max(0, config.dataNodes.indexOf(id));
  const port = Number(arg("redis-port", String(config.dataRedisPortBase + index)));
  const respPort = Number(arg("resp-port", config.respPort === 0 ? "0" : String(config.respPort + index)));
  const priority = Number(arg("priority", "1"));
  if (!Number.isSafeInteger(priority) || priority < 0) throw new Error(`--priority ${priority}: not a non-negative whole number`);
  return new DataNode(id, config, path.join(config.dataDir, id), port, priority, nc, log, respPort === 0 ? null : respPort, metrics);
});
