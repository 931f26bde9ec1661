/**
 * The quorum skeleton (issue #13): redis-qjm's write path reduced to its required steps, as separate Node processes
 * like redis-qjm's actors — a client's request through nats-server to a master, a SET on the master's Redis, one
 * batch fanned out to 3 journals that each append it and fdatasync, a majority of acks, the reply. Group commit as
 * redis-qjm's (one batch in flight, the next filling). Not a peer a user could pick: what any implementation of this
 * design in Node pays on this host, so the gap between it and redis-qjm is redis-qjm's own code, and the gap between
 * it and the NATS floor is the design's. The processes are bench/skeleton_node.ts.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import { startChild, type Child } from "../src/process/child.js";
import { Cleanup, trackServer } from "./cleanup.js";
import type { NamedProcess, Target } from "./harness.js";
import { withDeadline } from "./harness.js";
import { connectNats, startBenchNats, startBenchRedis } from "./servers.js";
import { REQUEST_TIMEOUT_MS, SETUP_TIMEOUT_MS } from "./settings.js";
import { SKELETON_JOURNALS, SKELETON_SUBJECTS as S } from "./skeleton_subjects.js";
import { checkWriteReply, writeBody } from "./workload.js";

export const SKELETON_TARGET = "quorum skeleton (Node)";
const PROGRAM = fileURLToPath(new URL("./skeleton_node.js", import.meta.url));

export function skeletonTarget(dir: string): Target {
  const cleanup = new Cleanup();
  let nc: NatsConnection | undefined;
  let processes: NamedProcess[] = [];
  const start = (name: string, args: string[]): Child => {
    const child = startChild(process.execPath, [PROGRAM, ...args], { logFile: path.join(dir, `${name}.log`) });
    trackServer(child, PROGRAM);
    cleanup.add(`skeleton ${name} (pid ${child.pid})`, () => child.stop());
    processes.push({ name, pid: child.pid });
    return child;
  };
  return {
    name: SKELETON_TARGET,
    processes: () => processes,
    async setup() {
      const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
      const redis = await startBenchRedis(cleanup, { dir: path.join(dir, "redis"), persistent: false });
      processes = [{ name: "nats-server", pid: nats.child.pid }, { name: "redis-server", pid: redis.child.pid }];
      nc = await connectNats(cleanup, nats.url, "bench-clients");
      const ready = new Set<string>();
      const sub = nc.subscribe(S.ready);
      await nc.flush();
      start("master", ["master", nats.url, String(redis.port)]);
      for (let j = 1; j <= SKELETON_JOURNALS; j++) start(`journal ${j}`, ["journal", nats.url, `j${j}`, path.join(dir, `j${j}.editlog`)]);
      const all = (async () => {
        for await (const m of sub) if (ready.add(m.string()).size === SKELETON_JOURNALS + 1) break;
      })();
      await withDeadline(all, SETUP_TIMEOUT_MS, "quorum skeleton's processes subscribed");
    },
    async write(c, i) {
      if (nc === undefined) throw new Error("quorum skeleton: setup did not complete");
      checkWriteReply((await nc.request(S.write, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS })).data);
    },
    teardown: () => cleanup.run(),
  };
}
