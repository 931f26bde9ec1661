/**
 * 100 client-library connections INCRing counters, each ack counted per key (an ack ledger), and the checks the
 * fault tests on data nodes share (failover_kills, nats_cluster): the serving master, cluster events, and at the end
 * every counter equal to its acked INCRs on the master and on every replica — none lost, none applied twice.
 */
import type { ExecutionContext } from "ava";
import { connect, QjmClientError, type QjmClient } from "../../src/client/index.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { decode } from "../../src/protocol/codec.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { diffKeyspaces, dumpKeyspace, servingMaster, until, waitForReplicas, type ClusterView } from "./harness.js";

/** Client connections of the load. */
export const CLIENTS = 100;
/** Each client pauses this long between its writes: 100 clients, not a flood that two shared cores cannot carry. */
const THINK_MS = 100;

export interface SeenEvent {
  type: string;
  atMs: number;
  epoch?: number;
  endTxid?: number;
  node?: string;
  source?: string;
}

/** 100 clients (one client-library connection each) INCRing counters; every ack and failure is counted per key. */
export class IncrLoad {
  readonly acked = new Map<string, number>();
  /** Each ack: when it arrived, its txid (a duplicate's is the original's) and which client had it. */
  readonly acks: { atMs: number; txid: number; client: number }[] = [];
  readonly errors: string[] = [];
  retried = 0;
  /** Part c): INCRs of the shared `c` each client still has to do before it goes back to its own counter. */
  private readonly shared: number[];
  private running = true;
  private readonly done: Promise<void>[];

  private constructor(private readonly clients: QjmClient[]) {
    this.shared = clients.map(() => 0);
    this.done = clients.map((_, i) => this.run(i));
  }

  /** `clients` connections (to every server of the cluster: nats.js picks one at random), each INCRing its counter. */
  static async start(tc: ClusterView, clients = CLIENTS): Promise<IncrLoad> {
    const options = { servers: tc.cluster.natsUrl, credsFile: credsFile(tc.cluster.dataDir, CLIENT_USER), cluster: tc.cluster.cluster };
    // An attempt at a master that is gone is given up after 2 s (or at once on the next writerElected); retried 60 s.
    const all = await Promise.all(Array.from({ length: clients }, (_, i) => connect({ ...options, name: `kills-${i}`, timeoutMs: 2000, retryForMs: 60_000 })));
    return new IncrLoad(all);
  }

  private async run(i: number): Promise<void> {
    while (this.running) {
      const key = this.shared[i] > 0 ? "c" : `c:${i}`;
      try {
        const r = await this.clients[i].write("INCR", key);
        if (key === "c") this.shared[i]--;
        this.acked.set(key, (this.acked.get(key) ?? 0) + 1);
        this.acks.push({ atMs: Date.now(), txid: r.txid, client: i });
        if (r.attempts > 1) this.retried++;
      } catch (err) {
        this.errors.push(err instanceof QjmClientError ? `${key}: ${err.code} unknown=${err.outcomeUnknown}` : `${key}: ${String(err)}`);
      }
      await new Promise((r) => setTimeout(r, THINK_MS));
    }
  }

  /** Every client INCRs the shared counter `n` times next. */
  shareCounter(n: number): void {
    this.shared.fill(n);
  }

  sharedLeft(): number {
    return this.shared.reduce((a, b) => a + b, 0);
  }

  /** Waits until `n` more writes are acked. */
  async acksMore(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.acks.length + n;
    await until(`${target} acks`, timeoutMs, () => (this.acks.length >= target ? true : undefined), 5);
  }

  /** When the first ack (from the `from`th on) of a write committed after txid `endTxid`, so by the new master, came. */
  async firstAckAfter(from: number, endTxid: number, timeoutMs: number): Promise<number> {
    let i = from;
    return await until("an ack from the new master", timeoutMs, () => {
      for (; i < this.acks.length; i++) if (this.acks[i].txid > endTxid) return this.acks[i].atMs;
      return undefined;
    }, 5);
  }

  /** The longest stretch in [fromMs, toMs] without any ack (from the last ack before fromMs). */
  longestGap(fromMs: number, toMs: number): number {
    return longestStretch(this.acks.map((a) => a.atMs), fromMs, toMs);
  }

  /** The longest stretch in [fromMs, toMs] one client went without an ack, and which client. */
  longestClientStall(fromMs: number, toMs: number): { client: number; ms: number } {
    let worst = { client: -1, ms: 0 };
    for (let c = 0; c < this.clients.length; c++) {
      const ms = longestStretch(this.acks.filter((a) => a.client === c).map((a) => a.atMs), fromMs, toMs);
      if (ms > worst.ms) worst = { client: c, ms };
    }
    return worst;
  }

  /** Clients with no ack after `atMs` yet. */
  clientsWithoutAckAfter(atMs: number): number[] {
    const acked = new Set(this.acks.filter((a) => a.atMs > atMs).map((a) => a.client));
    return this.clients.map((_, c) => c).filter((c) => !acked.has(c));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
    await Promise.all(this.clients.map((c) => c.close()));
  }
}

/** Cluster events, kept with the time they were published (the actors' clock: the same machine's). */
export class Events {
  readonly seen: SeenEvent[] = [];

  constructor(tc: ClusterView) {
    tc.nc.subscribe(subjects(tc.cluster.cluster).events, {
      callback: (err, msg) => {
        if (err === null) this.seen.push(decode(msg.data) as SeenEvent);
      },
    });
  }

  async next(what: string, pred: (e: SeenEvent) => boolean, timeoutMs = 30_000): Promise<SeenEvent> {
    return await until(what, timeoutMs, () => this.seen.find(pred), 5);
  }

  /** The writerElected event of the first master of an epoch above `epoch`. */
  async elected(epoch: number): Promise<SeenEvent & { epoch: number; endTxid: number }> {
    const e = await this.next(`a master of an epoch above ${epoch}`, (x) => x.type === "writerElected" && (x.epoch ?? 0) > epoch);
    return e as SeenEvent & { epoch: number; endTxid: number };
  }
}

/** A data node that could take over: a replica applying the journal ("degraded": one journal node refused a read). */
export function standby(s: ActorStatus): boolean {
  return s.role === "replica" && (s.health === "ok" || s.health === "degraded");
}

export async function statuses(tc: ClusterView): Promise<ActorStatus[]> {
  return (await tc.status()).filter((s) => tc.cluster.config.dataNodes.includes(s.id));
}

/**
 * The serving master of the highest epoch, once `standbys` other data nodes could take over (a node killed in the
 * round before may still be rebuilding its Redis: one standby is enough for the next kill).
 */
export async function steadyMaster(tc: ClusterView, standbys = tc.cluster.config.dataNodes.length - 1, timeoutMs = 60_000): Promise<ActorStatus> {
  let last: ActorStatus[] = [];
  try {
    return await until(`a master and ${standbys} standbys`, timeoutMs, async () => {
      const all = (last = await statuses(tc));
      const master = servingMaster(all);
      return master !== undefined && all.filter(standby).length >= standbys ? master : undefined;
    }, 50);
  } catch (err) {
    // What each data node said last (CI once waited 60 s at a 3-server cluster's start, with nothing to tell why).
    const seen = last.map((s) => `${s.id} ${s.role} ${s.health} epoch ${s.epoch} applied ${s.appliedTxid} ${JSON.stringify(s.details).slice(0, 300)}`);
    throw new Error(`${(err as Error).message}; last status: ${seen.join(" | ") || "none"}`);
  }
}

/** The longest stretch in [fromMs, toMs] between times of `sorted` (from the last one before fromMs, to toMs). */
function longestStretch(sorted: readonly number[], fromMs: number, toMs: number): number {
  let prev = fromMs;
  for (const t of sorted) if (t <= fromMs) prev = t;
  let gap = 0;
  for (const t of sorted) {
    if (t <= fromMs || t > toMs) continue;
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  return Math.max(gap, toMs - prev);
}

export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Every counter on the master equals its acked INCRs; every replica equals the master. */
export async function checkCounters(t: ExecutionContext, tc: ClusterView, load: IncrLoad): Promise<void> {
  const master = await steadyMaster(tc);
  const top = await tc.write(["SET", "last", "1"]);
  t.true(top.ok);
  await waitForReplicas(tc, top.ok ? top.txid : 0, 60_000);
  const dataNodes = tc.cluster.config.dataNodes;
  const keyspace = (id: string) => tc.keyspaceOf?.(id) ?? dumpKeyspace(tc.cluster.config.dataRedisPortBase + dataNodes.indexOf(id), tc.redisPassword);
  const want = await keyspace(master.id);
  const wrong = [...load.acked].filter(([key, n]) => Number(want.get(key)?.value) !== n).map(([key, n]) => `${key}: ${String(want.get(key)?.value)} for ${n} acked`);
  t.deepEqual(wrong.slice(0, 5), [], `${wrong.length} counters differ from their acked INCRs`);
  for (const node of dataNodes.filter((n) => n !== master.id)) {
    t.deepEqual(diffKeyspaces(want, await keyspace(node)).slice(0, 5), [], `${node} differs from the master`);
  }
}
