/**
 * A test cluster of three data nodes and, beside it, a plain redis-server (the same binary): the tests that compare a
 * door's bytes with Redis's own (resp3_replies, resp_fidelity).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../src/process/ports.js";
import { startRedisServer, type RedisServer } from "../../src/redis/redis_server.js";
import { startTestCluster, waitForDoors, waitForWriter, type TestCluster } from "./harness.js";

const DATA_NODES = ["d1", "d2", "d3"];

export interface BesidePlain {
  tc: TestCluster;
  plain: RedisServer;
  /** The master's door port, and one replica's. */
  masterDoor: number;
  replicaDoor: number;
  stop(): Promise<void>;
}

/** Starts both; stop() ends them (safe to call after a partial start: whatever started is stopped). */
export async function startBesidePlain(name: string, started: (stop: () => Promise<void>) => void): Promise<BesidePlain> {
  let tc: TestCluster | null = null;
  let plain: RedisServer | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `qjm-${name}-plain-`));
  const stop = async (): Promise<void> => {
    await plain?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    await tc?.stop();
  };
  started(stop);
  tc = await startTestCluster(name, { dataNodes: DATA_NODES });
  const master = await waitForWriter(tc);
  const base = tc.cluster.config.respPort;
  const masterDoor = base + DATA_NODES.indexOf(master.id);
  const replicaDoor = base + DATA_NODES.indexOf(DATA_NODES.find((id) => id !== master.id)!);
  await waitForDoors(tc, DATA_NODES.length);
  plain = await startRedisServer({ port: await freePort(), dir, persistent: false, startTimeoutMs: 15000 });
  return { tc, plain, masterDoor, replicaDoor, stop };
}
