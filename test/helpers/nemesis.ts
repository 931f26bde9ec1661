/**
 * A nemesis for the real processes: from a seed, a schedule of faults — kill -9 and restart, SIGSTOP … SIGCONT,
 * and partitions (each actor's own TCP proxy to nats-server cut, black-holed or slowed) — against the master, one
 * journal node (sometimes two, rarely all three, briefly: availability may be lost, safety may not), a replica, or
 * a master and a node together. Faults run one group at a time, each healed before the next, so the schedule says
 * exactly what was faulted when. Every step is logged with its time from the start: a failing seed prints a
 * readable schedule, and the same seed plans the same schedule.
 */
import fs from "node:fs";
import path from "node:path";
import type { LocalCluster } from "../../src/cluster/local_cluster.js";
import { prng } from "./prng.js";
import { describeMode, type ProxyMode, type TcpProxy } from "../../src/process/tcp_proxy.js";

export type FaultKind = "kill" | "stop" | "cut" | "drop" | "delay";

export interface Fault {
  /** When the fault starts, in ms from the start of the schedule. */
  atMs: number;
  kind: FaultKind;
  actors: string[];
  /** How long the fault lasts before its heal (restart, SIGCONT, proxy back to pass). */
  durationMs: number;
  /** The per-chunk delay of a `delay` partition. */
  delayMs: number;
}

export interface Topology {
  master: string;
  journalNodes: readonly string[];
  replicas: readonly string[];
}

export interface PlanOptions {
  faults: number;
  /** The schedule fits in this; each fault gets an equal slot and is healed before its slot ends. */
  durationMs: number;
}

/** A fault lasts at least this, so it spans a few heartbeats and requests in flight. */
export const FAULT_MS_MIN = 300;
/** Left free at the end of each slot: the cluster gets a moment between faults. */
export const SLOT_QUIET_MS_MIN = 300;
/** A fault on a majority of journal nodes (no quorum at all) lasts at most this. */
export const MAJORITY_FAULT_MS_MAX = 1500;

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

/** Chooses by weight: `[[weight, value], …]`. */
function weighted<T>(random: () => number, table: readonly (readonly [number, T])[]): T {
  const total = table.reduce((s, [w]) => s + w, 0);
  let r = random() * total;
  for (const [w, v] of table) {
    if ((r -= w) < 0) return v;
  }
  return table[table.length - 1][1];
}

/** `count` distinct items. */
function distinct<T>(random: () => number, items: readonly T[], count: number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < count && pool.length > 0) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]);
  return out;
}

/** The seed's schedule: `faults` faults, one per equal slot of `durationMs`. Pure: the same seed plans the same. */
export function planSchedule(seed: number, topology: Topology, options: PlanOptions): Fault[] {
  const random = prng(seed);
  const slotMs = options.durationMs / options.faults;
  const { master, journalNodes, replicas } = topology;
  const out: Fault[] = [];
  for (let i = 0; i < options.faults; i++) {
    type Group = { actors: string[]; majority: boolean };
    const group = weighted<() => Group>(random, [
      [25, () => ({ actors: [master], majority: false })],
      [25, () => ({ actors: distinct(random, journalNodes, 1), majority: false })],
      [15, () => ({ actors: distinct(random, replicas, 1), majority: false })],
      [10, () => ({ actors: [master, pick(random, journalNodes)], majority: false })],
      [8, () => ({ actors: [pick(random, journalNodes), pick(random, replicas)], majority: false })],
      [8, () => ({ actors: distinct(random, journalNodes, Math.floor(journalNodes.length / 2) + 1), majority: true })],
      [4, () => ({ actors: [...journalNodes], majority: true })],
    ])();
    const kind = weighted<FaultKind>(random, [
      [30, "kill"],
      [20, "stop"],
      [20, "cut"],
      [15, "drop"],
      [15, "delay"],
    ]);
    // Start in the first third of the slot; last until at most SLOT_QUIET_MS_MIN before its end.
    const startMs = slotMs * i + random() * (slotMs / 3);
    const longestMs = Math.max(FAULT_MS_MIN, slotMs * (i + 1) - SLOT_QUIET_MS_MIN - startMs);
    let durationMs = FAULT_MS_MIN + random() * (longestMs - FAULT_MS_MIN);
    if (group.majority) durationMs = Math.min(durationMs, MAJORITY_FAULT_MS_MAX);
    const delayMs = kind === "delay" ? Math.round(20 + random() * 480) : 0;
    out.push({ atMs: Math.round(startMs), kind, actors: group.actors, durationMs: Math.round(durationMs), delayMs });
  }
  return out;
}

/** `kill -9 m1, jn2 for 1200 ms (then restart)` */
export function describeFault(f: Fault): string {
  const who = f.actors.join(", ");
  switch (f.kind) {
    case "kill":
      return `kill -9 ${who}, restart after ${f.durationMs} ms`;
    case "stop":
      return `SIGSTOP ${who} for ${f.durationMs} ms`;
    case "cut":
    case "drop":
    case "delay":
      return `partition ${who} (${describeMode(proxyMode(f))}) for ${f.durationMs} ms`;
  }
}

function proxyMode(f: Fault): ProxyMode {
  return f.kind === "delay" ? { kind: "delay", ms: f.delayMs } : f.kind === "drop" ? { kind: "drop" } : { kind: "cut" };
}

/** The schedule, one line a fault, for the test log. */
export function describeSchedule(schedule: readonly Fault[]): string {
  return schedule.map((f, i) => `  ${String(i + 1).padStart(2)}. +${(f.atMs / 1000).toFixed(3)} s  ${describeFault(f)}`).join("\n");
}

/** Runs a schedule against a cluster whose actors each reach NATS through their own proxy. */
export class Nemesis {
  private readonly startedAt = performance.now();
  private readonly stopped = new Set<string>();
  private readonly killed = new Set<string>();
  private readonly partitioned = new Set<string>();
  /** Off once the test stops the cluster itself: those exits are not crashes. */
  private watching = true;
  /** Actors that exited when the nemesis had not killed them: a crash to report. */
  readonly crashes: string[] = [];
  faultsInjected = 0;

  constructor(
    private readonly cluster: LocalCluster,
    private readonly proxies: ReadonlyMap<string, TcpProxy>,
    private readonly log: (line: string) => void,
  ) {
    for (const name of cluster.actors.keys()) this.watch(name);
  }

  /** Runs every fault at its time, each healed after its duration; resolves when the last is healed. */
  async run(schedule: readonly Fault[]): Promise<void> {
    for (const fault of schedule) {
      const waitMs = fault.atMs - (performance.now() - this.startedAt);
      if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
      await this.inject(fault);
      await new Promise((r) => setTimeout(r, fault.durationMs));
      await this.heal(fault);
    }
  }

  /** Heals whatever is still faulted (a run cut short): proxies to pass, stopped actors continued, killed restarted. */
  async healAll(): Promise<void> {
    for (const name of this.partitioned) this.setProxy(name, { kind: "pass" });
    for (const name of this.stopped) await this.signal(name, "SIGCONT");
    for (const name of this.killed) this.restart(name);
  }

  /** The test stops the cluster next: exits from now on are not crashes. */
  stopWatching(): void {
    this.watching = false;
  }

  private async inject(fault: Fault): Promise<void> {
    this.faultsInjected++;
    this.step(`${describeFault(fault)}`);
    for (const name of fault.actors) {
      switch (fault.kind) {
        case "kill":
          this.killed.add(name);
          await this.cluster.signal(name, "SIGKILL");
          break;
        case "stop":
          this.stopped.add(name);
          await this.signal(name, "SIGSTOP");
          break;
        default:
          this.partitioned.add(name);
          this.setProxy(name, proxyMode(fault));
      }
    }
  }

  private async heal(fault: Fault): Promise<void> {
    for (const name of fault.actors) {
      switch (fault.kind) {
        case "kill":
          this.restart(name);
          break;
        case "stop":
          await this.signal(name, "SIGCONT");
          break;
        default:
          this.setProxy(name, { kind: "pass" });
      }
    }
  }

  private restart(name: string): void {
    this.killed.delete(name);
    this.step(`restart ${name}`);
    this.cluster.startActor(name);
    this.watch(name);
  }

  private async signal(name: string, signal: "SIGSTOP" | "SIGCONT"): Promise<void> {
    if (signal === "SIGCONT") {
      this.stopped.delete(name);
      this.step(`SIGCONT ${name}`);
    }
    await this.cluster.signal(name, signal);
  }

  private setProxy(name: string, mode: ProxyMode): void {
    const proxy = this.proxies.get(name);
    if (proxy === undefined) throw new Error(`nemesis: no proxy for ${name}`);
    if (mode.kind === "pass") {
      this.partitioned.delete(name);
      this.step(`heal ${name}'s link`);
    }
    proxy.setMode(mode);
  }

  /** Notes an exit of the actor's current process that the nemesis did not cause. */
  private watch(name: string): void {
    const child = this.cluster.actors.get(name);
    if (child === undefined) return;
    void child.exited.then((exit) => {
      if (!this.watching || this.killed.has(name) || this.cluster.actors.get(name) !== child) return;
      const line = `${name} (pid ${child.pid}) exited on its own: ${String(exit)}${lastFatal(path.join(this.cluster.config.dataDir, "logs", `${name}.log`))}`;
      this.crashes.push(line);
      this.step(line);
    });
  }

  private step(line: string): void {
    this.log(`+${((performance.now() - this.startedAt) / 1000).toFixed(3)} s  ${line}`);
  }
}

/** The actor's last fatal log line (its error and the top of the stack), to say why it exited; empty if none. */
function lastFatal(logFile: string): string {
  let text: string;
  try {
    text = fs.readFileSync(logFile, "utf8");
  } catch {
    return "";
  }
  const fatal = text.split("\n").filter((l) => l.includes('"level":60')).at(-1);
  if (fatal === undefined) return "";
  try {
    const entry = JSON.parse(fatal) as { msg?: string; err?: { message?: string; stack?: string } };
    return ` (${entry.msg ?? ""}: ${entry.err?.stack?.split("\n").slice(0, 4).join(" | ") ?? entry.err?.message ?? ""})`;
  } catch {
    return ` (${fatal.slice(0, 400)})`;
  }
}
