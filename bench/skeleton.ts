/**
 * The quorum skeleton (issue #13): redis-qjm's write path reduced to its required steps, in as many Node processes as
 * `npm start` runs actors — a client's request through nats-server to a master, a SET on the master's Redis, one batch
 * fanned out to 3 journals that each append it and fdatasync and to 2 replicas, a majority of acks, the reply; each
 * replica applies the writes to its own Redis once a commit index covers them. Group commit and commit notices as
 * redis-qjm's; no replication link (the master reads no effect back). Not a peer a user could pick: about what any
 * implementation of this design in Node pays on this host (a little less: the link is left out), so the gap between
 * it and the NATS floor is the design's, and the gap between it and redis-qjm is redis-qjm's code and the link.
 * The processes are bench/skeleton_node.ts; with tracing (BENCH_TRACE_SAMPLE > 0) every write's reply carries its
 * commit stamp and the replicas publish their applied runs, for the replica lag (P4).
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import type { TraceApplied } from "../src/protocol/messages.js";
import { startChild } from "../src/process/child.js";
import { Cleanup, trackServer } from "./cleanup.js";
import type { NamedProcess, Target } from "./harness.js";
import { withDeadline } from "./harness.js";
import { subscribeApplied } from "./qjm_target.js";
import { connectNats, startBenchNats, startBenchRedis } from "./servers.js";
import { REQUEST_TIMEOUT_MS, SETUP_TIMEOUT_MS, benchTraceSample } from "./settings.js";
import { SKELETON_JOURNALS, SKELETON_REPLICAS, SKELETON_SUBJECTS as S } from "./skeleton_subjects.js";
import { replicaLag, type CommitStamp } from "./trace.js";
import { checkWriteReply, writeBody } from "./workload.js";

export const SKELETON_TARGET = "quorum skeleton (Node)";
const PROGRAM = fileURLToPath(new URL("./skeleton_node.js", import.meta.url));

/** The skeleton as a Target, its nats-server's URL and its replicas' Redis ports (for a test to send and read). */
export function skeletonTarget(dir: string): Target & { natsUrl(): string; replicaRedisPorts(): number[] } {
  const cleanup = new Cleanup();
  const traced = benchTraceSample() > 0;
  let nc: NatsConnection | undefined;
  let processes: NamedProcess[] = [];
  const replicaPorts: number[] = [];
  let url = "";
  let collecting = false;
  const commits: CommitStamp[] = [];
  const applied: TraceApplied[] = [];
  const start = (name: string, args: string[]): void => {
    const child = startChild(process.execPath, [PROGRAM, ...args], { logFile: path.join(dir, `${name.replaceAll(" ", "")}.log`) });
    trackServer(child, PROGRAM);
    cleanup.add(`skeleton ${name} (pid ${child.pid})`, () => child.stop());
    processes.push({ name, pid: child.pid });
  };
  const redis = async (name: string, persistent: boolean): Promise<number> => {
    const server = await startBenchRedis(cleanup, { dir: path.join(dir, `${name}-redis`.replaceAll(" ", "")), persistent });
    processes.push({ name: `${name}'s redis-server`, pid: server.child.pid });
    return server.port;
  };
  return {
    name: SKELETON_TARGET,
    processes: () => processes,
    natsUrl: () => url,
    replicaRedisPorts: () => [...replicaPorts],
    async setup() {
      const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
      processes = [{ name: "nats-server", pid: nats.child.pid }];
      url = nats.url;
      nc = await connectNats(cleanup, nats.url, "bench-clients");
      const ready = nc.subscribe(S.ready);
      if (traced) subscribeApplied(nc, S.applied, () => collecting, applied);
      await nc.flush();
      const trace = traced ? "1" : "0";
      // As redis-qjm's data nodes: the master's Redis keeps no AOF while it is the master (src/master/master_redis.ts),
      // a replica's does (fsync every second).
      start("master", ["master", nats.url, String(await redis("master", false)), trace]);
      for (let j = 1; j <= SKELETON_JOURNALS; j++) start(`journal ${j}`, ["journal", nats.url, `j${j}`, path.join(dir, `j${j}.editlog`)]);
      for (let r = 1; r <= SKELETON_REPLICAS; r++) {
        replicaPorts.push(await redis(`replica ${r}`, true));
        start(`replica ${r}`, ["replica", nats.url, `r${r}`, String(replicaPorts.at(-1)), trace]);
      }
      const names = new Set<string>();
      const all = (async () => {
        for await (const m of ready) if (names.add(m.string()).size === 1 + SKELETON_JOURNALS + SKELETON_REPLICAS) break;
      })();
      await withDeadline(all, SETUP_TIMEOUT_MS, "quorum skeleton's processes subscribed");
    },
    async write(c, i) {
      if (nc === undefined) throw new Error("quorum skeleton: setup did not complete");
      const reply = checkWriteReply((await nc.request(S.write, writeBody(c, i), { timeout: REQUEST_TIMEOUT_MS })).data);
      if (collecting) commits.push({ txid: Number(reply.txid), committed: Number(reply.committedAt) });
    },
    teardown: () => cleanup.run(),
    window: {
      open() {
        collecting = traced;
      },
      close() {
        collecting = false;
        return traced ? { lag: replicaLag(commits, applied) } : {};
      },
    },
  };
}
