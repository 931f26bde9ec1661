/**
 * Bounds bench (issue #13, P6): the master's memory and the journal nodes' disk under sustained load, against the
 * bounds the configuration sets. `BENCH_TARGETS=bounds`.
 *
 *   1. a whole local cluster as `npm start` runs it (src/cluster/local_cluster.ts: 3 journal nodes, 3 data nodes),
 *      its own nats-server, with BOUNDS_SETTINGS (1 MiB segments, 8 of them, an 8 MiB editlog, a snapshot every
 *      20,000 records, a purge margin and dedupe window of 5,000 records, the data nodes' V8 old space 96 MiB);
 *   2. 150,000 SETs of 200-byte values from 200 clients of the client library (src/client/), each its own NATS
 *      connection and client id, closed loop, over the workload's KEY_SPACE keys;
 *   3. every SAMPLE_MS: the master's VmRSS (/proc/<pid>/status of the data node that is master: the pid in the master
 *      heartbeat of the highest epoch, so a failover moves the sampling to the new master) and each journal
 *      node's data directory in bytes (files' sizes, walked: segments under current/ with their temporary copies
 *      and merges, snapshots under snapshots/ with uploads in progress, the rest — meta, identity — as other);
 *   4. the same again on a fresh cluster with jn3 SIGSTOPped for the whole load; SIGCONT after it, then until jn3
 *      holds the master's committed txid and its disk is back under the bound.
 *
 * The bound of a journal node's disk (what compactionPlan in src/journal/journal_core.ts aims at): its editlog
 * (segment files) at most `editlogMaxBytes` — which the count threshold meets too, `maxSegments` ×
 * `segmentMaxBytes` being equal here — plus `snapshotsRetained` snapshots, each taken as the largest snapshot file
 * seen on that node during the run. An upload in progress, a merge's output before its inputs go, and a segment
 * past its roll size by one batch are what the 1.5× of the target leaves room for.
 */
import fs from "node:fs";
import path from "node:path";
import { connect, type QjmClient } from "../src/client/index.js";
import { metricsPortOf, startLocalCluster, type LocalCluster } from "../src/cluster/local_cluster.js";
import { defaults, type Config } from "../src/config/config.js";
import { hearHeartbeats } from "../src/actor/presence.js";
import { encode } from "../src/protocol/codec.js";
import { heartbeatOf, type ActorStatus } from "../src/protocol/messages.js";
import { Cleanup, trackServer } from "./cleanup.js";
import { errorMessage, retryUntil, sleep } from "./harness.js";
import { connectNats, freePortRange, startBenchNats } from "./servers.js";
import { keyFor } from "./workload.js";
import { bundleDir } from "../src/util/package_root.js";

export const BOUNDS_TARGET = "bounds";

/** The configuration under test (issue #13, P6). */
export const BOUNDS_SETTINGS: Partial<Config> = {
  segmentMaxBytes: 1024 * 1024,
  maxSegments: 8,
  editlogMaxBytes: 8 * 1024 * 1024,
  snapshotEveryRecords: 20_000,
  // The log kept below the durable snapshot for lagging replicas and a new master's dedupe window: by default 100,000
  // records (~28 MiB of these ~290-byte records), 3.5× the whole editlog bound. An 8 MiB editlog needs a margin
  // that fits in it; the dedupe window may not exceed the margin (config.ts).
  purgeMarginRecords: 5_000,
  dedupeWindowRecords: 5_000,
  // V8's old-space limit of the data nodes: without one, on a large host the master's heap grew to ~160 MiB of which
  // under 64 MiB was live (RSS ~280 MiB); with 96 MiB it collects sooner. BENCH_BOUNDS_HEAP_MB=0: node's own.
  dataNodeHeapMb: 96,
};
const WRITES = 150_000;
const CLIENTS = 200;
const VALUE = "v".repeat(200);
const SAMPLE_MS = 100;
/** The master's heap is read from its metrics endpoint every this many samples (a scrape costs more than a /proc read). */
const HEAP_EVERY_SAMPLES = 10;
/** The journal node stopped in the second phase. */
const STOPPED_NODE = "jn3";
/** Target: the master's RSS at most this, each node's disk at most BOUND_FACTOR × its bound. */
export const RSS_TARGET_BYTES = 200 * 1024 * 1024;
export const BOUND_FACTOR = 1.5;
/** Bounds on a shared 2-core machine: they turn a hang into an error. */
const READY_TIMEOUT_MS = 60_000;
const LOAD_TIMEOUT_MS = 300_000;
const SETTLE_TIMEOUT_MS = 60_000;
const STATUS_POLL_MS = 500;

export interface NodeDisk {
  node: string;
  peakBytes: number;
  peakSegmentBytes: number;
  peakSnapshotBytes: number;
  largestSnapshotBytes: number;
  boundBytes: number;
  endBytes: number;
}

export interface BoundsPhase {
  name: string;
  writes: number;
  errors: number;
  loadMs: number;
  writesPerSec: number;
  /** Every pid that was master during the phase (more than one: a failover happened). */
  masterPids: number[];
  peakRssBytes: number;
  endRssBytes: number;
  /** The master's peak V8 heap in use and outside-heap memory (its metrics endpoint, read once a second). */
  peakHeapUsedBytes: number;
  peakExternalBytes: number;
  nodes: NodeDisk[];
  /** Phase 2: ms from SIGCONT until the stopped node held the committed txid, and until its disk was under its bound. */
  catchUpMs?: number | null;
  underBoundMs?: number | null;
  note?: string;
}

interface DirSample {
  segments: number;
  snapshots: number;
  other: number;
  largestSnapshot: number;
}

/** A du-like walk (apparent sizes) of a journal node's directory; a file that vanishes meanwhile counts 0. */
async function walk(dir: string): Promise<DirSample> {
  const s: DirSample = { segments: 0, snapshots: 0, other: 0, largestSnapshot: 0 };
  const visit = async (d: string, kind: "segments" | "snapshots" | "other"): Promise<void> => {
    const entries = await fs.promises.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        await visit(p, e.name === "current" ? "segments" : e.name === "snapshots" ? "snapshots" : kind);
        continue;
      }
      const size = (await fs.promises.stat(p).catch(() => null))?.size ?? 0;
      const segment = kind === "segments" && e.name.startsWith("edits_");
      const snapshot = kind === "snapshots" && e.name.endsWith(".rdb");
      if (segment) s.segments += size;
      else if (kind === "snapshots") s.snapshots += size;
      else s.other += size;
      if (snapshot) s.largestSnapshot = Math.max(s.largestSnapshot, size);
    }
  };
  await visit(dir, "other");
  return s;
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** Samples the master's RSS and every journal node's disk every SAMPLE_MS until stopped. */
class Sampler {
  peakRss = 0;
  /** The master's V8 heap in use and its memory outside the heap (Buffers), from its metrics, once a second. */
  peakHeapUsed = 0;
  peakExternal = 0;
  private samples = 0;
  readonly disks = new Map<string, { peak: number; peakSegments: number; peakSnapshots: number; largestSnapshot: number; last: number }>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(
    private readonly dataDir: string,
    private readonly nodes: readonly string[],
    private readonly masterPid: () => number,
    private readonly masterMetrics: () => string | null,
  ) {
    for (const n of nodes) this.disks.set(n, { peak: 0, peakSegments: 0, peakSnapshots: 0, largestSnapshot: 0, last: 0 });
  }

  start(): void {
    this.timer = setInterval(() => void this.sample(), SAMPLE_MS);
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      this.peakRss = Math.max(this.peakRss, rssBytes(this.masterPid()));
      if (this.samples++ % HEAP_EVERY_SAMPLES === 0) await this.sampleHeap();
      for (const n of this.nodes) {
        const s = await walk(path.join(this.dataDir, n));
        const d = this.disks.get(n)!;
        d.last = s.segments + s.snapshots + s.other;
        d.peak = Math.max(d.peak, d.last);
        d.peakSegments = Math.max(d.peakSegments, s.segments);
        d.peakSnapshots = Math.max(d.peakSnapshots, s.snapshots);
        d.largestSnapshot = Math.max(d.largestSnapshot, s.largestSnapshot);
      }
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }

  private async sampleHeap(): Promise<void> {
    const url = this.masterMetrics();
    if (url === null) return;
    const text = await fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.text(), () => "");
    const gauge = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? 0);
    this.peakHeapUsed = Math.max(this.peakHeapUsed, gauge("qjm_nodejs_heap_size_used_bytes"));
    this.peakExternal = Math.max(this.peakExternal, gauge("qjm_nodejs_external_memory_bytes"));
  }

  /** A node's bound: editlogMaxBytes plus snapshotsRetained of the largest snapshot seen on it. */
  bound(node: string, config: Config): number {
    return config.editlogMaxBytes + config.snapshotsRetained * this.disks.get(node)!.largestSnapshot;
  }
}

/** BENCH_BOUNDS_HEAP_MB, validated: the data nodes' old-space limit (BOUNDS_SETTINGS's unless given). */
export function boundsHeapMb(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.BENCH_BOUNDS_HEAP_MB;
  if (raw === undefined || raw === "") return BOUNDS_SETTINGS.dataNodeHeapMb ?? 0;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`BENCH_BOUNDS_HEAP_MB=${raw}: not a whole number ≥ 0`);
  return n;
}

/** The master's pid, from the master heartbeats (the highest epoch wins); every pid seen, in order. */
class MasterWatch {
  pid = 0;
  id = "";
  readonly pids: number[] = [];
  private epoch = -1;

  beat(data: Uint8Array, id: string): void {
    const hb = heartbeatOf(data, "master", id);
    if (hb === null || typeof hb.pid !== "number" || typeof hb.epoch !== "number" || hb.epoch < this.epoch) return;
    this.epoch = hb.epoch;
    this.pid = hb.pid;
    this.id = id;
    if (!this.pids.includes(hb.pid)) this.pids.push(hb.pid);
  }
}

async function masterOf(client: QjmClient): Promise<ActorStatus> {
  return retryUntil("a master in the status", READY_TIMEOUT_MS, STATUS_POLL_MS, async () => {
    const master = (await client.status()).find((s) => s.role === "master");
    if (master === undefined) throw new Error("no master answered the status request");
    return master;
  });
}

/** The 200 closed-loop clients: WRITES SETs between them; a write that fails after the client's retries counts as an error. */
async function drive(clients: QjmClient[]): Promise<{ writes: number; errors: number; ms: number }> {
  let next = 0;
  let writes = 0;
  let errors = 0;
  const started = Date.now();
  await Promise.all(
    clients.map(async (client, c) => {
      for (let i = next++; i < WRITES; i = next++) {
        try {
          await client.write("SET", keyFor(c, i), VALUE);
          writes++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { writes, errors, ms: Date.now() - started };
}

/** Until every actor but `except` is up, a master holds a committed write and the 200 clients are connected. */
async function startPhase(cleanup: Cleanup, dir: string): Promise<{ cluster: LocalCluster; clients: QjmClient[] }> {
  const nats = await startBenchNats(cleanup, path.join(dir, "nats"));
  const actors = defaults.journalNodes.length + defaults.dataNodes.length;
  const config: Partial<Config> = { ...BOUNDS_SETTINGS, dataNodeHeapMb: boundsHeapMb(), dataRedisPortBase: await freePortRange(defaults.dataNodes.length), respPort: 0, metricsPort: await freePortRange(actors) };
  const cluster = await startLocalCluster({ natsUrl: nats.url, dataDir: path.join(dir, "data"), config, output: "files" });
  cleanup.add("redis-qjm local cluster", () => cluster.stop());
  for (const child of cluster.actors.values()) trackServer(child, bundleDir());
  const clients: QjmClient[] = [];
  cleanup.add("bounds clients", async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  });
  for (let c = 0; c < CLIENTS; c++) clients.push(await connect({ servers: cluster.natsUrl, credsFile: null, cluster: cluster.cluster, name: `bounds-${c}` }));
  await retryUntil("redis-qjm first write", READY_TIMEOUT_MS, STATUS_POLL_MS, () => clients[0].write("SET", "bounds:ready", "1"));
  return { cluster, clients };
}

/** One phase on a fresh cluster; `stop`: the journal node SIGSTOPped for the whole load. */
async function runPhase(dir: string, stop: string | null): Promise<BoundsPhase> {
  const cleanup = new Cleanup();
  const name = stop === null ? "all journal nodes up" : `${stop} SIGSTOPped during the load`;
  process.stderr.write(`bench: bounds: ${name}: setting up\n`);
  try {
    const { cluster, clients } = await startPhase(cleanup, dir);
    const watch = new MasterWatch();
    const master = await masterOf(clients[0]);
    watch.beat(heartbeatBody(master), master.id);
    hearHeartbeats(await connectNats(cleanup, cluster.natsUrl, "bounds-heartbeats"), cluster.cluster, "master", (id, data) => watch.beat(data, id));
    const metricsOf = (): string | null => {
      const i = cluster.specs.findIndex((spec) => spec.name === watch.id);
      return i < 0 ? null : `http://127.0.0.1:${metricsPortOf(cluster.config, i)}/metrics`;
    };
    const sampler = new Sampler(cluster.dataDir, cluster.config.journalNodes, () => watch.pid, metricsOf);
    sampler.start();
    cleanup.add("sampler", async () => sampler.stop());
    // A node still being restored into the fresh cluster (it started after the format) counts for no quorum: stopping
    // another one then would leave no majority at all. Every node in step first.
    if (stop !== null) await allInStep(clients[0], cluster.config.journalNodes);
    if (stop !== null) await cluster.signal(stop, "SIGSTOP");
    process.stderr.write(`bench: bounds: ${name}: ${WRITES} writes from ${CLIENTS} clients\n`);
    const load = await withTimeout(drive(clients), LOAD_TIMEOUT_MS, "the load");
    const phase: BoundsPhase = { name, writes: load.writes, errors: load.errors, loadMs: load.ms, writesPerSec: (load.writes * 1000) / load.ms, masterPids: watch.pids, peakRssBytes: 0, endRssBytes: 0, peakHeapUsedBytes: 0, peakExternalBytes: 0, nodes: [] };
    if (stop !== null) await settle(cluster, clients[0], sampler, stop, phase);
    await sampler.sample();
    sampler.stop();
    if (watch.pids.length > 1) phase.note = `the master changed during the phase (pids ${watch.pids.join(" → ")}): RSS sampled on each in turn`;
    phase.peakRssBytes = sampler.peakRss;
    phase.endRssBytes = rssBytes(watch.pid);
    phase.peakHeapUsedBytes = sampler.peakHeapUsed;
    phase.peakExternalBytes = sampler.peakExternal;
    phase.nodes = cluster.config.journalNodes.map((n) => {
      const d = sampler.disks.get(n)!;
      return { node: n, peakBytes: d.peak, peakSegmentBytes: d.peakSegments, peakSnapshotBytes: d.peakSnapshots, largestSnapshotBytes: d.largestSnapshot, boundBytes: sampler.bound(n, cluster.config), endBytes: d.last };
    });
    return phase;
  } finally {
    await cleanup.run();
  }
}

/** SIGCONT, then until the node holds the master's committed txid, and until its disk is under its bound. */
async function settle(cluster: LocalCluster, client: QjmClient, sampler: Sampler, node: string, phase: BoundsPhase): Promise<void> {
  await cluster.signal(node, "SIGCONT");
  const continued = Date.now();
  const committed = (await masterOf(client)).committedTxid;
  phase.catchUpMs = null;
  phase.underBoundMs = null;
  while (Date.now() - continued < SETTLE_TIMEOUT_MS && (phase.catchUpMs === null || phase.underBoundMs === null)) {
    await sleep(STATUS_POLL_MS);
    if (phase.catchUpMs === null) {
      const s = (await client.status().catch(() => [])).find((a) => a.role === "journal" && a.id === node);
      if (s !== undefined && s.lastTxid >= committed) phase.catchUpMs = Date.now() - continued;
    }
    const d = sampler.disks.get(node)!;
    if (phase.catchUpMs !== null && phase.underBoundMs === null && d.last <= sampler.bound(node, cluster.config)) phase.underBoundMs = Date.now() - continued;
  }
}

/** Until the master counts every journal node for acks (its status's `inSync`). */
async function allInStep(client: QjmClient, nodes: readonly string[]): Promise<void> {
  await retryUntil("every journal node in step", READY_TIMEOUT_MS, STATUS_POLL_MS, async () => {
    const inSync = (await masterOf(client)).details?.inSync;
    if (!Array.isArray(inSync) || !nodes.every((n) => inSync.includes(n))) throw new Error(`in step: ${JSON.stringify(inSync)}`);
  });
}

/** The status's heartbeat fields, as a heartbeat body (MasterWatch reads both alike). */
function heartbeatBody(s: ActorStatus): Uint8Array {
  return encode({ role: s.role, id: s.id, pid: s.pid, epoch: s.epoch });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runBoundsBench(root: string): Promise<BoundsPhase[]> {
  const phases: BoundsPhase[] = [];
  // BENCH_BOUNDS_PHASES=stopped (or up): only that scenario.
  const only = process.env.BENCH_BOUNDS_PHASES;
  const stops = only === "stopped" ? [STOPPED_NODE] : only === "up" ? [null] : [null, STOPPED_NODE];
  for (const stop of stops) {
    try {
      phases.push(await runPhase(fs.mkdtempSync(path.join(root, "bounds-")), stop));
    } catch (err) {
      const name = stop === null ? "all journal nodes up" : `${stop} SIGSTOPped during the load`;
      process.stderr.write(`bench: bounds: ${name}: FAILED: ${errorMessage(err)}\n`);
      phases.push({ name, writes: 0, errors: 0, loadMs: 0, writesPerSec: 0, masterPids: [], peakRssBytes: 0, endRssBytes: 0, peakHeapUsedBytes: 0, peakExternalBytes: 0, nodes: [], note: `failed: ${errorMessage(err)}` });
    }
  }
  return phases;
}

const mb = (b: number): string => (b / (1024 * 1024)).toFixed(1);

/** The report: one line per phase, one per node, and whether the target holds. */
export function boundsReport(phases: BoundsPhase[]): string {
  const lines: string[] = [];
  const s = BOUNDS_SETTINGS;
  lines.push(`bounds: segmentMaxBytes ${s.segmentMaxBytes}, maxSegments ${s.maxSegments}, editlogMaxBytes ${s.editlogMaxBytes}, snapshotEveryRecords ${s.snapshotEveryRecords}, purgeMarginRecords ${s.purgeMarginRecords}, dedupeWindowRecords ${s.dedupeWindowRecords}, dataNodeHeapMb ${boundsHeapMb()}; ${WRITES} SETs of ${VALUE.length} bytes from ${CLIENTS} clients`);
  lines.push(`bound per node = editlogMaxBytes + snapshotsRetained (${defaults.snapshotsRetained}) × the largest snapshot seen on it; target: master RSS ≤ ${mb(RSS_TARGET_BYTES)} MiB, disk ≤ ${BOUND_FACTOR}× bound`);
  for (const p of phases) {
    lines.push("");
    lines.push(`${p.name}: ${p.writes} writes (${p.errors} errors) in ${(p.loadMs / 1000).toFixed(1)} s = ${Math.round(p.writesPerSec)}/s; master RSS peak ${mb(p.peakRssBytes)} MiB (heap in use ≤ ${mb(p.peakHeapUsedBytes)}, outside the heap ≤ ${mb(p.peakExternalBytes)}), at the end ${mb(p.endRssBytes)} MiB → ${p.peakRssBytes <= RSS_TARGET_BYTES && p.peakRssBytes > 0 ? "met" : "NOT met"}`);
    if (p.catchUpMs !== undefined) lines.push(`  after SIGCONT: caught up in ${p.catchUpMs === null ? "— (not within the wait)" : `${p.catchUpMs} ms`}, disk under its bound in ${p.underBoundMs === null ? "— (not within the wait)" : `${p.underBoundMs} ms`}`);
    lines.push("  | node | peak disk MiB | peak segments MiB | peak snapshots MiB | largest snapshot MiB | bound MiB | peak / bound | at the end MiB |");
    lines.push("  | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const n of p.nodes) {
      const ratio = n.boundBytes > 0 ? n.peakBytes / n.boundBytes : Number.NaN;
      lines.push(`  | ${n.node} | ${mb(n.peakBytes)} | ${mb(n.peakSegmentBytes)} | ${mb(n.peakSnapshotBytes)} | ${mb(n.largestSnapshotBytes)} | ${mb(n.boundBytes)} | ${ratio.toFixed(2)}× ${ratio <= BOUND_FACTOR ? "" : "(over 1.5×)"} | ${mb(n.endBytes)} |`);
    }
    const total = p.nodes.reduce((a, n) => a + n.peakBytes, 0);
    const bound = p.nodes.reduce((a, n) => a + n.boundBytes, 0);
    lines.push(`  three nodes: ${mb(total)} MiB at their peaks against ${mb(bound)} MiB of bounds`);
    if (p.note !== undefined) lines.push(`  note: ${p.note}`);
  }
  return lines.join("\n");
}

/** A phase failed, or a target was missed. */
export function boundsFailed(phases: BoundsPhase[]): boolean {
  return phases.some((p) => p.note?.startsWith("failed") === true || p.writes === 0);
}
