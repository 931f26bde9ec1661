#!/usr/bin/env node
/**
 * A data node: `node dist/bundle/data-node.js --id d1 [--redis-port 6395] [--resp-port 6479] [--priority 1]
 * [--config qjm.json]` (data under $QJM_DATA_DIR/d1). The RESP front door's port defaults to respPort + the node's
 * index (none when respPort is 0).
 */
import { roleMain } from "../src/actor/roles.js";

await roleMain("data-node");
