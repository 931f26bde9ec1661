/**
 * What the bench reads of a traced cluster (traceSample): the per-hop breakdown of sampled writes, the replicas'
 * commit → applied lag, and the CPU time of a target's processes from /proc. The arithmetic is pure (unit-tested);
 * only `cpuTicksOf` reads /proc.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import type { TraceApplied, WriteTrace } from "../src/protocol/messages.js";
import { percentile } from "./stats.js";

// ---- the per-hop breakdown ----

/** The hops of one write, in order; their durations add up to the client's round trip. */
export const HOPS = [
  "client → master",
  "master: arrival → Redis",
  "Redis + link: → record cut",
  "cut → batch sent",
  "bus → journal node",
  "journal node: queue",
  "journal node: step + write + fsync",
  "journal node → master ack",
  "majority ack → commit",
  "commit → reply sent",
  "master → client",
] as const;
export type Hop = (typeof HOPS)[number];

/** A traced write as the client saw it: its send and receive stamps (trace clock) and the master's trace. */
export interface ClientTrace {
  sent: number;
  received: number;
  txid: number;
  trace: WriteTrace;
}

/**
 * The durations (ms) of each hop of one traced write, or null when the trace misses a point (a write with no record).
 * The journal node whose ack made the majority is the one counted: the last ack received before the commit.
 */
export function hopDurations(t: ClientTrace): number[] | null {
  const m = t.trace;
  if (m.executed === 0 || m.cut === 0 || m.batchSent === 0 || m.committed === 0 || m.replied === 0) return null;
  const deciding = m.acks.filter((a) => a.acked <= m.committed).sort((a, b) => b.acked - a.acked)[0];
  if (deciding === undefined || deciding.recv === undefined || deciding.started === undefined || deciding.durable === undefined || deciding.replied === undefined) return null;
  return [
    m.recv - t.sent,
    m.executed - m.recv,
    m.cut - m.executed,
    m.batchSent - m.cut,
    deciding.recv - m.batchSent,
    deciding.started - deciding.recv,
    deciding.durable - deciding.started,
    deciding.acked - deciding.replied,
    m.committed - deciding.acked,
    m.replied - m.committed,
    t.received - m.replied,
  ];
}

export interface HopSummary {
  /** Traced writes with every point stamped. */
  samples: number;
  /** Per hop (HOPS order): median and p99 in ms. */
  hops: { hop: Hop; p50Ms: number; p99Ms: number }[];
  /** The round trip of the same writes (client send → client receive). */
  total: { p50Ms: number; p99Ms: number };
}

function p50p99(values: number[]): { p50Ms: number; p99Ms: number } {
  const sorted = Float64Array.from(values).sort();
  return { p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) };
}

export function summarizeHops(traces: readonly ClientTrace[]): HopSummary {
  const rows = traces.map(hopDurations).filter((d): d is number[] => d !== null);
  const complete = traces.filter((t) => hopDurations(t) !== null);
  return {
    samples: rows.length,
    hops: HOPS.map((hop, i) => ({ hop, ...p50p99(rows.map((r) => r[i])) })),
    total: p50p99(complete.map((t) => t.received - t.sent)),
  };
}

// ---- replica lag ----

export interface LagSummary {
  /** (traced write, replica) pairs matched with an applied run. */
  samples: number;
  p50Ms: number;
  p99Ms: number;
}

/** A write's txid and when the master committed it (its trace stamp; 0: unknown). */
export interface CommitStamp {
  txid: number;
  committed: number;
}

/** What a traced write says of its commit. */
export function commitStamp(t: ClientTrace): CommitStamp {
  return { txid: t.txid, committed: t.trace.committed };
}

/**
 * Commit (the master's stamp) → applied on each replica (the replica's stamp of the run of records holding the txid),
 * for every traced write a replica was heard applying.
 */
export function replicaLag(commits: readonly CommitStamp[], applied: readonly TraceApplied[]): LagSummary {
  const byReplica = new Map<string, TraceApplied[]>();
  for (const a of applied) {
    const runs = byReplica.get(a.replica) ?? [];
    runs.push(a);
    byReplica.set(a.replica, runs);
  }
  const lags: number[] = [];
  for (const runs of byReplica.values()) {
    runs.sort((a, b) => a.toTxid - b.toTxid);
    for (const c of commits) {
      if (c.committed === 0) continue;
      const run = runs[firstAtLeast(runs, c.txid)];
      if (run !== undefined && run.fromTxid <= c.txid) lags.push(run.at - c.committed);
    }
  }
  return { samples: lags.length, ...p50p99(lags) };
}

/** Index of the first run whose toTxid ≥ txid (runs sorted by toTxid); runs.length if none. */
function firstAtLeast(runs: readonly TraceApplied[], txid: number): number {
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid].toTxid < txid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ---- CPU of a process tree, from /proc ----

export interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime, in clock ticks. */
  ticks: number;
}

/** /proc/<pid>/stat: the command name is in parentheses and may hold spaces or ')', so fields are read after the last ')'. */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(")");
  const open = text.indexOf("(");
  if (open < 1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  // After ")": state(3) ppid(4) … utime(14) stime(15), so utime is the 12th field from there.
  const f = text.slice(close + 1).trim().split(/\s+/);
  const [ppid, utime, stime] = [Number(f[1]), Number(f[11]), Number(f[12])];
  if (![pid, ppid, utime, stime].every(Number.isSafeInteger)) return null;
  return { pid, ppid, ticks: utime + stime };
}

/** The ticks of `roots` and of every descendant of them, among `stats`. */
export function treeTicks(stats: readonly ProcStat[], roots: readonly number[]): number {
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const byPid = new Map(stats.map((s) => [s.pid, s]));
  let ticks = 0;
  const seen = new Set<number>();
  const todo = [...roots];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    ticks += byPid.get(pid)?.ticks ?? 0;
    for (const c of children.get(pid) ?? []) todo.push(c.pid);
  }
  return ticks;
}

let clockTicks: number | null = null;

/** Clock ticks per second (getconf CLK_TCK; 100 on Linux almost everywhere). */
export function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Every process's /proc/<pid>/stat, each read once. */
function procStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = parseProcStat(fs.readFileSync(`/proc/${name}/stat`, "utf8"));
      if (s !== null) stats.push(s);
    } catch {
      // gone since readdir
    }
  }
  return stats;
}

/** CPU ms (user + system) so far of `roots` and all their descendants. */
export function cpuMsOf(roots: readonly number[]): number {
  return (treeTicks(procStats(), roots) * 1000) / ticksPerSecond();
}

/** CPU ms so far of each root with its own descendants, in the order given (one read of /proc for all). */
export function cpuMsByRoot(roots: readonly number[]): number[] {
  const stats = procStats();
  return roots.map((root) => (treeTicks(stats, [root]) * 1000) / ticksPerSecond());
}
