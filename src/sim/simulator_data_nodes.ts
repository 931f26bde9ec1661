/**
 * One seeded run of the data-node layout (issue #11): journal nodes and several data nodes (sim_data_node.ts), each
 * a replica or the master as the DataNodeCore decides, and a client that retries with write ids. The seed picks the
 * shape and the fault rates; the safety phase kills, stops (freezes) and cuts off the master, crashes journal nodes
 * and other data nodes, partitions anyone and hangs takeovers; the liveness phase heals everything and must end with
 * one serving master and every node's Redis equal to the committed prefix.
 *
 * Invariants, besides the legacy layout's (src/sim/invariants.ts): a node serves, and acks, only in an epoch it won;
 * no acked write is lost; a retried write is applied once; converged Redises equal the committed log.
 */
import { validateConfig, type Config } from "../config/config.js";
import { assert } from "../util/assert.js";
import type { SimCores } from "./cores.js";
import type { Invariants } from "./invariants.js";
import { Prng } from "./prng.js";
import { SimBus, type BusOptions } from "./sim_bus.js";
import { SimDataNode } from "./sim_data_node.js";
import { SimJournalNode } from "./sim_journal_node.js";
import { applyRecord, ModelRedis } from "./model_redis.js";
import { connectionsOf, diskFaultWindow, fanoutBytesMaxOf, partitionSome, simBase, SimClient, simConfig } from "./simulator.js";
import type { SimResult } from "./simulator.js";
import { LIVENESS_WRITES_MS, runPhases, simResult } from "./liveness.js";

/**
 * The safety phase in simulated time (not in steps: before a master serves, the client's bounced writes would use a
 * step budget up within a few hundred milliseconds, before any election ran).
 */
export const DATA_NODE_SAFETY_MS = 3000;

export interface DataNodeSimOptions {
  seed: number;
  /** The safety phase's length in simulated ms (DATA_NODE_SAFETY_MS by default). */
  safetyMs?: number;
  cores?: SimCores;
  echo?: boolean;
  /** Overrides the seed's chance that a takeover's Redis stops answering (the takeover then hangs). */
  takeoverHangChance?: number;
  /** Overrides the takeover deadline (a huge one: as if there were none). */
  takeoverTimeoutMs?: number;
  /** Overrides the seed's mean time between planned switchovers (0: none). */
  switchoverEveryMs?: number;
  /** Overrides the seed's number of client connections (ordered groups). */
  connections?: number;
}

/** The data-node layout's timeouts, scaled down like the rest of the simulation's. */
function dataNodeConfig(journalNodes: string[], dataNodes: string[], batchRecordsMax: number, takeoverTimeoutMs: number): Config {
  const config: Config = {
    ...simConfig(journalNodes, [], batchRecordsMax),
    dataNodes,
    masterHeartbeatIntervalMs: 50,
    masterTimeoutMs: 300,
    masterProbeAfterMs: 100,
    electionRankDelayMs: 80,
    electionBackoffMsMax: 400,
    takeoverTimeoutMs,
  };
  const errors = validateConfig(config);
  assert(errors.length === 0, `simulation config: ${errors.join("; ")}`);
  return config;
}

/** The committed prefix as a model Redis, grown as commits are learnt. */
class CommittedModel {
  readonly redis = new ModelRedis();
  private upTo = 0;

  constructor(private readonly invariants: Invariants) {}

  at(txid: number): ModelRedis {
    for (; this.upTo < txid; this.upTo++) {
      const payload = this.invariants.committedPayload(this.upTo + 1);
      assert(payload !== null, `committed txid ${this.upTo + 1} unknown below ${txid}`);
      applyRecord(this.redis, payload, null);
    }
    return this.redis;
  }
}

function sameRedis(a: ModelRedis, b: ModelRedis): boolean {
  return a.sameAs(b) || a.dump() === b.dump();
}

export function runDataNodeSimulation(options: DataNodeSimOptions): SimResult {
  const seed = options.seed;
  const { prng, clock, trace, cores, invariants, requestIds } = simBase(options);

  const journalNodes = Array.from({ length: prng.chance(0.2) ? 5 : 3 }, (_, i) => `jn${i + 1}`);
  const nodeIds = Array.from({ length: prng.pick([2, 3, 3, 4]) }, (_, i) => `d${i + 1}`);
  const busOptions: BusOptions = {
    delayMsMin: prng.int(0, 1),
    delayMsMax: prng.int(2, 20),
    slowChance: prng.pick([0, 0.005, 0.02]),
    slowDelayMsMax: prng.int(50, 1000),
    lossChance: prng.pick([0, 0.001, 0.01, 0.05]),
    duplicateChance: prng.pick([0, 0.01, 0.05]),
  };
  const nemesisMsMax = prng.pick([200, 500, 1000]);
  const config = { ...dataNodeConfig(journalNodes, nodeIds, prng.pick([4, 8, 32]), options.takeoverTimeoutMs ?? 2000), replicaFanoutBytesMax: fanoutBytesMaxOf(seed) };
  // A node of priority 0 never campaigns (a read replica); never the only other one.
  const priorities = nodeIds.map((_, i) => (i === nodeIds.length - 1 && nodeIds.length > 2 && prng.chance(0.25) ? 0 : 1));
  const bus = new SimBus(clock, prng, busOptions, trace);
  // Faults of their own PRNG, so that they can be turned up without changing the rest of the seed's run.
  const faultPrng = new Prng(seed ^ 0xda7a);
  const hangChance = options.takeoverHangChance ?? faultPrng.pick([0, 0, 0.1, 0.3]);
  const shape = `${journalNodes.length} journal nodes, data nodes ${nodeIds.join(",")} (priorities ${priorities.join(",")})`;
  const rates = `bus ${JSON.stringify(busOptions)}; nemesis every ≤${nemesisMsMax} ms; takeover hangs ${hangChance}; ${options.connections ?? connectionsOf(seed)} client connections; replicas' fan-out buffer ${config.replicaFanoutBytesMax} bytes`;
  trace.add("sim", `seed ${seed} (data nodes): ${shape}; ${rates}`);

  let phase = "safety" as "safety" | "liveness";
  const crashPrng = new Prng(seed ^ 0xc4a5d);
  const crashInside = { chance: crashPrng.pick([0, 0.1]), prng: crashPrng, safety: () => phase === "safety", restart: (jn: SimJournalNode) => restartLater(jn, 1500) };
  const jnOptions = { diskOpMsMax: prng.int(0, 5), diskErrorChance: prng.pick([0.2, 0.5, 1]), crashInside };
  const jns = journalNodes.map((id) => new SimJournalNode(id, config, clock, bus, prng, trace, cores, invariants, jnOptions));
  const faults = { takeoverHangs: () => phase === "safety" && faultPrng.chance(hangChance) };
  const nodes = nodeIds.map((id, i) => new SimDataNode(id, priorities[i], config, clock, bus, trace, cores, invariants, requestIds, prng, faults));
  const connections = options.connections ?? connectionsOf(seed);
  const client = new SimClient("c1", nodeIds, clock, bus, prng, config, prng.pick([5, 15, 40]), invariants, true, connections);
  for (const a of [...jns, ...nodes, client]) bus.register(a);
  for (const jn of jns) jn.masters = nodeIds;
  for (const n of nodes) n.peers = nodeIds.filter((id) => id !== n.id);
  for (const n of nodes) n.electionListeners = [client.id];
  const everyone = [...jns, ...nodes, client].map((a) => a.id);

  const counts = { faults: 0, kills: 0, stops: 0, cutOff: 0 };
  const restartLater = (actor: { start(): void; up: boolean }, maxMs: number): void => {
    clock.after(prng.int(10, maxMs), () => {
      if (phase === "safety" && !actor.up) actor.start();
    });
  };
  /** The node that serves, or is taking over, or else any. */
  const theMaster = (): SimDataNode => nodes.find((n) => n.up && (n.phase === "serving" || n.phase === "takingOver")) ?? prng.pick(nodes);

  const nemesis = (): void => {
    if (phase !== "safety") return;
    counts.faults++;
    const r = prng.next();
    if (r < 0.2) {
      const jn = prng.pick(jns);
      if (jn.up) {
        jn.crash();
        restartLater(jn, 1500);
      }
    } else if (r < 0.35) {
      const m = theMaster();
      if (m.up) {
        counts.kills++;
        m.crash();
        restartLater(m, 1500);
      }
    } else if (r < 0.47) {
      const m = theMaster();
      if (m.up && !m.isFrozen) {
        counts.stops++;
        m.freeze();
        clock.after(prng.int(100, 2000), () => m.resume());
      }
    } else if (r < 0.59) {
      counts.cutOff++;
      const cut = bus.cut([theMaster().id]);
      clock.after(prng.int(50, 2000), () => bus.heal(cut));
    } else if (r < 0.67) {
      const n = prng.pick(nodes);
      if (n.up) {
        n.crash();
        restartLater(n, 1000);
      }
    } else if (r < 0.85) {
      partitionSome(prng, bus, clock, everyone);
    } else {
      diskFaultWindow(prng, jns, clock, trace);
    }
    clock.after(prng.int(10, nemesisMsMax), nemesis);
  };

  // Planned switchovers (`redis-qjm failover [--to id]`) at random moments, faults or not, from their own PRNG.
  const switchPrng = new Prng(seed ^ 0x5b17c4);
  const switchoverEveryMs = options.switchoverEveryMs ?? switchPrng.pick([0, 150, 400, 1000]);
  trace.add("sim", `planned switchovers every ≤${switchoverEveryMs} ms`);
  const switchover = (): void => {
    if (phase !== "safety") return;
    const m = nodes.find((n) => n.serving);
    // To the first standby in line, or to one named (another node: naming itself is refused, and tells nothing).
    if (m !== undefined) m.switchover(switchPrng.chance(0.5) ? null : switchPrng.pick(nodeIds.filter((id) => id !== m.id)));
    clock.after(switchPrng.int(1, switchoverEveryMs), switchover);
  };

  const stores = (): { node: string; store: SimJournalNode["store"]; serving: boolean }[] =>
    jns.map((jn) => ({ node: jn.id, store: jn.store, serving: jn.core === null || jn.core.state().fault === null }));
  /**
   * Disks are judged while every journal node is up: a node that crashed inside a disk program (a merge, say) keeps
   * the index it had before the crash undid its unsynced renames until its restart repairs them (seed 529: two nodes
   * crashed inside merges, the third restoring, and txid 1 was "held by none" while they were down). The final check,
   * every node up, still finds any loss, and so do the recoveries' invariants.
   */
  const allUp = (): boolean => jns.every((jn) => jn.up);

  const enterLiveness = (): void => {
    phase = "liveness";
    trace.add("sim", "liveness phase: every fault healed");
    Object.assign(busOptions, { lossChance: 0, duplicateChance: 0, slowChance: 0 });
    bus.healAll();
    for (const jn of jns) {
      jn.diskFault = null;
      if (!jn.up) jn.start();
    }
    for (const n of nodes) {
      n.resume();
      if (!n.up) n.start();
    }
    client.healed = true;
    // The client writes until one of its writes after the heal was acked: a takeover that hung through the heal
    // holds the next election back until its deadline, which may come after LIVENESS_WRITES_MS.
    const stopWriting = (): void => {
      if (client.counts.ackedAfterHeal > 0) client.writing = false;
      else clock.after(100, stopWriting);
    };
    clock.after(LIVENESS_WRITES_MS, stopWriting);
  };

  const model = new CommittedModel(invariants);
  /** Converged: one node serves, the others are replicas at the committed end, every Redis is the committed prefix. */
  const converged = (): boolean => {
    if (client.writing || client.counts.ackedAfterHeal === 0) return false;
    const serving = nodes.filter((n) => n.serving);
    if (serving.length !== 1) return false;
    const others = nodes.filter((n) => n !== serving[0]);
    if (!others.every((n) => n.phase === "replica" && n.replicaApplied === invariants.maxCommitted)) return false;
    const committed = model.at(invariants.maxCommitted);
    if (!nodes.every((n) => sameRedis(n.redis, committed))) return false;
    return true;
  };

  const safetyMs = options.safetyMs ?? DATA_NODE_SAFETY_MS;
  const sum = (of: (n: SimDataNode) => number): number => nodes.reduce((total, n) => total + of(n), 0);
  const outcome = runPhases({ clock, trace, invariants, jns, client }, {
    start: () => {
      for (const jn of jns) jn.start();
      for (const n of nodes) n.start();
      client.start();
      clock.after(prng.int(10, nemesisMsMax), nemesis);
      if (switchoverEveryMs > 0) clock.after(switchPrng.int(1, switchoverEveryMs), switchover);
    },
    safetyOver: () => clock.nowMs >= safetyMs,
    enterLiveness,
    converged,
    disksCheckable: allUp,
    stores,
    stalled: () => {
      const jnState = jns.map((jn) => {
        const st = jn.core?.state();
        return st === undefined ? `${jn.id} down` : `${jn.id} last ${st.lastTxid} committed ${st.committedTxid}`;
      });
      return `committed ${invariants.maxCommitted}; ${[...nodes.map((n) => n.describe()), ...jnState].join(", ")}`;
    },
    convergedNote: () => `; ${counts.kills} kills, ${counts.stops} stops, ${counts.cutOff} cut-offs of the master; ${sum((n) => n.switchovers.handedOver)} of ${sum((n) => n.switchovers.asked)} switchovers handed over`,
  });
  const switchovers = { switchovers: sum((n) => n.switchovers.asked), handedOver: sum((n) => n.switchovers.handedOver) };
  const layout = { forged: 0, journalNodes: jns.length, masters: nodes.length, replicas: 0, faults: counts.faults, rejoins: sum((n) => n.rejoins), rolls: sum((n) => n.rolls), fanouts: sum((n) => n.fanouts), takeovers: sum((n) => n.takeovers), ...switchovers };
  return simResult(seed, { clock, trace, invariants, client }, outcome, layout);
}
