/**
 * What every layout's run does once its actors are built (simulator.ts, simulator_data_nodes.ts): step the clock,
 * check the journal invariants and the disks as it goes, switch from the safety phase to the liveness phase, wait for
 * the layout's idea of convergence — or say why none was promised (fewer than a majority of journal nodes can vote) —
 * and build the run's result. One loop, so that both layouts judge liveness the same way.
 */
import { quorumSize } from "../config/config.js";
import { AssertionError } from "../util/assert.js";
import type { SimClock } from "./clock.js";
import { SimViolation, type Invariants } from "./invariants.js";
import type { SimJournalNode } from "./sim_journal_node.js";
import type { Trace } from "./trace.js";
import type { SimClient, SimResult } from "./simulator.js";

/** The liveness phase: the client keeps writing this long after the heal, then the run must converge within the rest. */
export const LIVENESS_WRITES_MS = 1500;
export const LIVENESS_MS_MAX = 15000;
/** Every this many steps, every committed txid is looked up on the journal nodes' disks. */
export const DISK_CHECK_EVERY_STEPS = 200;

/** A run ended by an exception: an invariant, an assertion, or a bug (with its stack); the trace says so too. */
export function failureOf(err: unknown, trace: Trace): string {
  if (!(err instanceof Error)) throw err;
  const kind = err instanceof SimViolation ? "invariant" : err instanceof AssertionError ? "assertion" : "error";
  trace.add("sim", `FAILED (${kind}): ${err.message}`);
  return `${kind}: ${err.message}${kind === "error" ? `\n${err.stack}` : ""}`;
}

/** Journal nodes that cannot vote (down, corrupt, restoring), each with why: liveness is promised only to a majority. */
export function journalNodesUnable(jns: readonly SimJournalNode[]): string[] {
  return jns.flatMap((jn) => {
    const st = jn.core?.state();
    if (st === undefined) return [`${jn.id} down`];
    if (st.fault !== null) return [`${jn.id} corrupt`];
    if (st.clusterId === null || st.restoring) return [`${jn.id} restoring`];
    return [];
  });
}

/** The layout's side of the loop. */
export interface PhaseHooks {
  /** Starts the actors (inside the loop's guard: a violation at start is a failure like any other). */
  start(): void;
  /** The safety phase is over (after this many steps, or this much simulated time). */
  safetyOver(steps: number): boolean;
  /** Heals every fault and lets the client write a last while. */
  enterLiveness(): void;
  /** The run converged: it may end. */
  converged(): boolean;
  /** Whether the disks may be judged now (every DISK_CHECK_EVERY_STEPS steps); the final check always runs. */
  disksCheckable(): boolean;
  /** What the disk checks read, per journal node. */
  stores(): { node: string; store: SimJournalNode["store"]; serving: boolean }[];
  /** The state of whatever did not converge, for the violation's message. */
  stalled(): string;
  /** Appended to the trace's "converged" line. */
  convergedNote(): string;
}

export interface PhaseOutcome {
  steps: number;
  /** 1: the run ended with fewer than a majority of journal nodes able to vote (liveness not promised). */
  livenessNotPromised: number;
  failure: string | null;
}

export function runPhases(sim: { clock: SimClock; trace: Trace; invariants: Invariants; jns: readonly SimJournalNode[]; client: SimClient }, hooks: PhaseHooks): PhaseOutcome {
  const { clock, trace, invariants, jns, client } = sim;
  let steps = 0;
  let livenessNotPromised = 0;
  try {
    hooks.start();
    let liveness = false;
    let livenessEndMs = 0;
    while (clock.step()) {
      steps++;
      // The core itself (a JournalCore has a promisedEpoch getter): state() would build the whole state each step.
      for (const jn of jns) if (jn.core !== null) invariants.journalState(jn.id, jn.core);
      if (steps % DISK_CHECK_EVERY_STEPS === 0 && hooks.disksCheckable()) invariants.checkDisks(hooks.stores());
      if (!liveness && hooks.safetyOver(steps)) {
        liveness = true;
        hooks.enterLiveness();
        livenessEndMs = clock.nowMs + LIVENESS_MS_MAX;
      }
      if (liveness && steps % 50 === 0 && hooks.converged()) break;
      if (liveness && clock.nowMs > livenessEndMs) {
        // Liveness is promised only while a majority of journal nodes can vote: a node whose disk rotted (it serves
        // nothing) or that was never restored after losing its state counts as failed, and more than a minority failed
        // is beyond what a quorum tolerates. Safety was checked all along; the run just cannot be asked to converge.
        const unable = journalNodesUnable(jns);
        if (jns.length - unable.length < quorumSize(jns.length)) {
          livenessNotPromised = 1;
          trace.add("sim", `no convergence, and none promised: only ${jns.length - unable.length} of ${jns.length} journal nodes can vote (${unable.join(", ")})`);
          break;
        }
        throw new SimViolation(`no convergence ${LIVENESS_MS_MAX} ms after the heal: ${client.counts.ackedAfterHeal} writes acked since, ${hooks.stalled()}`);
      }
    }
    invariants.checkDisks(hooks.stores());
    if (livenessNotPromised === 0) trace.add("sim", `converged: committed ${invariants.maxCommitted}, ${client.counts.acked} acked${hooks.convergedNote()}`);
    return { steps, livenessNotPromised, failure: null };
  } catch (err) {
    return { steps, livenessNotPromised, failure: failureOf(err, trace) };
  }
}

/** The layout's own counts in a result. */
export type LayoutStats = Pick<SimResult["stats"], "forged" | "journalNodes" | "masters" | "replicas" | "faults" | "rejoins" | "rolls" | "takeovers" | "switchovers" | "handedOver" | "fanouts">;

/** A run's result: what the loop ended with, the client's and the invariants' counts, and the layout's. */
export function simResult(seed: number, sim: { clock: SimClock; trace: Trace; invariants: Invariants; client: SimClient }, outcome: PhaseOutcome, layout: LayoutStats): SimResult {
  const { clock, trace, invariants, client } = sim;
  return {
    seed,
    ok: outcome.failure === null,
    failure: outcome.failure,
    trace: trace.tail,
    hash: trace.hash,
    steps: outcome.steps,
    simMs: clock.nowMs,
    stats: {
      ...layout,
      acked: client.counts.acked,
      failed: client.counts.failed,
      unknown: client.counts.unknown,
      committed: invariants.maxCommitted,
      applied: invariants.counts.applied,
      appliedFromFanout: invariants.counts.appliedFromFanout,
      appliedFromReads: invariants.counts.applied - invariants.counts.appliedFromFanout,
      fanoutsRefused: invariants.counts.fanoutsRefused,
      writers: invariants.counts.writers,
      corruptReadsRefused: invariants.counts.corruptReadsRefused,
      livenessNotPromised: outcome.livenessNotPromised,
      retries: client.counts.retries,
      duplicates: client.counts.duplicates,
      keyspaceChecks: invariants.keyspace.counts.checked,
      lateTtls: invariants.keyspace.counts.lateTtls,
      // The connection order (invariants.ts ConnectionOrder): pairs checked, and exemptions taken.
      orderPairs: invariants.connections.counts.checkedPairs,
      lateUnknown: invariants.connections.counts.lateUnknown,
      twinRan: invariants.connections.counts.twinRan,
    },
  };
}
