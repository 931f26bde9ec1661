/**
 * One actor's Prometheus metrics (issue #14 item 4): a Registry of its own (never prom-client's global one), every
 * series named qjm_* and labelled with the actor's cluster, id and role. Counters and histograms are fed on the paths
 * they measure (an observe or an inc, nothing else: no allocation, no logging); gauges that mirror the actor's state
 * (txids, lags, journal-node health) are set from its status() once per scrape, so the write path never pays for them.
 * The series are grouped by the role that feeds them and registered on first use: a journal node shows no write
 * latency. A data node, master and replica by turns, feeds both groups.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from "prom-client";
import type { ActorStatus, ActorStatusBody } from "../protocol/messages.js";
import { RateMeter } from "./rate.js";

/**
 * The period of prom-client's event-loop histogram (qjm_nodejs_eventloop_lag_*), which wakes every actor this often,
 * idle or not: at 10 ms, ~170 of an idle journal node's ~200 wake-ups a second. A dashboard's lag needs no finer grain;
 * a data node's stalls are LoopWatch's (loop_watch.ts). An idle cluster of 6 actors: 124 ms of CPU a second at 20 ms,
 * 112 at 100 (medians of 3 alternating runs).
 */
export const PROCESS_LOOP_SAMPLE_MS = 100;

export interface ActorLabels {
  cluster: string;
  id: string;
  /** The actor's kind: journal, master, replica, or data (a data node, master or replica by turns). */
  role: string;
}

/** Write latency buckets (seconds): from a fast local fsync to the quorum timeout. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];
/** fsync buckets (seconds): page cache on tmpfs to a busy spinning disk. */
const FSYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** A counter whose value is a plain number kept by its owner, read at each scrape (a write pays `n++`, not prom-client's inc). */
function countedAtScrape(name: string, help: string, registers: Registry[], total: () => number): Counter {
  let reported = 0;
  const counter: Counter = new Counter({
    name,
    help,
    registers,
    collect() {
      const now = total();
      counter.inc(now - reported);
      reported = now;
    },
  });
  return counter;
}

/** The master's series: fed by the write intake (answers) and the batch sender. */
export class MasterMetrics {
  /** Acked writes: a plain number the write path bumps; the counter reads it at scrape (and status's rate, at any time). */
  acked = 0;
  failed = 0;
  readonly writesAcked: Counter;
  readonly writesFailed: Counter;
  readonly writeLatency: Histogram;
  readonly batchRecords: Histogram;
  readonly batchBytes: Histogram;
  readonly gauges: MasterGauges;

  constructor(registers: Registry[]) {
    this.gauges = new MasterGauges(registers);
    this.writesAcked = countedAtScrape("qjm_writes_acked_total", "Client writes answered ok (a majority of journal nodes fsynced their record).", registers, () => this.acked);
    this.writesFailed = countedAtScrape("qjm_writes_failed_total", "Client writes answered with an error (refused, overloaded, no quorum, not writer...).", registers, () => this.failed);
    this.writeLatency = new Histogram({ name: "qjm_write_latency_seconds", help: "From a write's arrival at the master to its ok reply.", buckets: LATENCY_BUCKETS, registers });
    this.batchRecords = new Histogram({ name: "qjm_batch_records", help: "Records in each batch the master sends to the journal nodes.", buckets: exponentialBuckets(1, 4, 8), registers });
    this.batchBytes = new Histogram({ name: "qjm_batch_bytes", help: "Bytes of records in each batch the master sends to the journal nodes.", buckets: exponentialBuckets(256, 4, 9), registers });
  }

  /** A write answered: `ok` counts as acked, with its latency since `arrivedMs` (performance.now()). */
  answered(ok: boolean, arrivedMs: number, nowMs: number): void {
    if (!ok) {
      this.failed++;
      return;
    }
    this.acked++;
    this.writeLatency.observe((nowMs - arrivedMs) / 1000);
  }

  batch(records: number, bytes: number): void {
    this.batchRecords.observe(records);
    this.batchBytes.observe(bytes);
  }
}

/** A journal node's series: fsyncs, snapshots stored, compaction. */
export class JournalMetrics {
  readonly fsync: Histogram;
  readonly snapshotsStored: Counter;
  readonly segmentsPurged: Counter;
  readonly segmentsMerged: Counter;

  constructor(registers: Registry[]) {
    this.fsync = new Histogram({ name: "qjm_journal_fsync_seconds", help: "Duration of each fsync/fdatasync of a journal file.", buckets: FSYNC_BUCKETS, registers });
    this.snapshotsStored = new Counter({ name: "qjm_snapshots_stored_total", help: "Snapshot uploads this journal node completed and kept.", registers });
    this.segmentsPurged = new Counter({ name: "qjm_segments_purged_total", help: "Segment files deleted below the durable snapshot (compaction).", registers });
    this.segmentsMerged = new Counter({ name: "qjm_segments_merged_total", help: "Small finalized segments merged into larger ones (compaction).", registers });
  }
}

/** A replica's series: snapshots it took, uploaded and loaded. */
export class ReplicaMetrics {
  readonly snapshotsTaken: Counter;
  readonly snapshotsUploaded: Counter;
  readonly snapshotsLoaded: Counter;
  readonly gauges: ReplicaGauges;

  constructor(registers: Registry[]) {
    this.gauges = new ReplicaGauges(registers);
    this.snapshotsTaken = new Counter({ name: "qjm_snapshots_taken_total", help: "Snapshots (BGSAVE) of this replica's Redis saved.", registers });
    this.snapshotsUploaded = new Counter({ name: "qjm_snapshots_uploaded_total", help: "Snapshots uploaded to a majority of journal nodes (durable).", registers });
    this.snapshotsLoaded = new Counter({ name: "qjm_snapshots_loaded_total", help: "Snapshots loaded into this replica's Redis (bootstrap: the journal was purged below it).", registers });
  }
}

/** Gauges every actor shows, set from its status() at each scrape. */
class StatusGauges {
  readonly lastTxid: Gauge;
  readonly committedTxid: Gauge;

  constructor(registers: Registry[]) {
    this.lastTxid = new Gauge({ name: "qjm_last_txid", help: "The last txid this actor holds (journal node), sent (master) or heard committed (replica).", registers });
    this.committedTxid = new Gauge({ name: "qjm_committed_txid", help: "The commit index as this actor knows it.", registers });
  }

  set(s: ActorStatus): void {
    this.lastTxid.set(s.lastTxid);
    this.committedTxid.set(s.committedTxid);
  }
}

/** The master's gauges, from its status at each scrape: whether it serves, and each journal node as it sees it. */
class MasterGauges {
  readonly writing: Gauge;
  readonly nodeHealthy: Gauge;
  readonly nodeLag: Gauge;

  constructor(registers: Registry[]) {
    this.writing = new Gauge({ name: "qjm_writer", help: "1 while this actor is the master serving writes.", registers });
    const labelNames = ["node"] as const;
    this.nodeHealthy = new Gauge({ name: "qjm_journal_node_healthy", help: "As the master sees each journal node: 1 counted for acks, 0 masked or catching up.", labelNames, registers });
    this.nodeLag = new Gauge({ name: "qjm_journal_node_lag_txids", help: "As the master sees each journal node: committed txids it does not hold yet.", labelNames, registers });
  }

  set(s: ActorStatus): void {
    this.writing.set(s.role === "master" && s.health === "writing" ? 1 : 0);
    // A data node's per-node series exist only while it is master.
    this.nodeHealthy.reset();
    this.nodeLag.reset();
    if (s.role !== "master") return;
    const health = (s.details.journalNodes ?? {}) as Record<string, string>;
    const lag = (s.details.journalNodeLag ?? {}) as Record<string, number | null>;
    for (const [node, h] of Object.entries(health)) {
      this.nodeHealthy.set({ node }, h === "healthy" ? 1 : 0);
      const behind = lag[node];
      if (typeof behind === "number") this.nodeLag.set({ node }, behind);
    }
  }
}

/** A replica's gauges, from its status at each scrape. */
class ReplicaGauges {
  readonly appliedTxid: Gauge;
  readonly lag: Gauge;

  constructor(registers: Registry[]) {
    this.appliedTxid = new Gauge({ name: "qjm_replica_applied_txid", help: "The last txid this node's Redis applied (a data node serving as master: its commit index).", registers });
    this.lag = new Gauge({ name: "qjm_replica_lag_txids", help: "Committed txids this replica has not applied yet (committed - applied).", registers });
  }

  set(s: ActorStatus): void {
    // A data node while master: its Redis ran every committed write (and is the source of the others).
    const applied = s.role === "replica" ? s.appliedTxid : s.committedTxid;
    this.appliedTxid.set(applied);
    this.lag.set(Math.max(0, s.committedTxid - applied));
  }
}

export class ActorMetrics {
  readonly registry = new Registry();
  /** GET this for the metrics (Prometheus text); null when the actor serves none. */
  url: string | null = null;
  private masterMetrics: MasterMetrics | null = null;
  private journalMetrics: JournalMetrics | null = null;
  private replicaMetrics: ReplicaMetrics | null = null;
  private readonly gauges: StatusGauges;
  private readonly rates = new Map<string, RateMeter>();
  private statusSource: (() => ActorStatus) | null = null;

  /** `processMetrics`: prom-client's process series (RSS, CPU, heap, event-loop lag) too, as qjm_process_*… */
  constructor(readonly labels: ActorLabels, options: { processMetrics?: boolean } = {}) {
    this.registry.setDefaultLabels({ ...labels });
    this.gauges = new StatusGauges([this.registry]);
    // Its event-loop lag percentiles include the sampling period, as they included prom-client's default 10 ms.
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry, prefix: "qjm_", eventLoopMonitoringPrecision: PROCESS_LOOP_SAMPLE_MS });
  }

  /** Metrics of an actor built without a served endpoint (tests, the simulator): counted, never read. */
  static detached(cluster: string, id: string, role: string): ActorMetrics {
    return new ActorMetrics({ cluster, id, role });
  }

  get master(): MasterMetrics {
    return (this.masterMetrics ??= new MasterMetrics([this.registry]));
  }

  get journal(): JournalMetrics {
    return (this.journalMetrics ??= new JournalMetrics([this.registry]));
  }

  get replica(): ReplicaMetrics {
    return (this.replicaMetrics ??= new ReplicaMetrics([this.registry]));
  }

  /** The actor's status as it answers it: with its metrics URL and its rate (acked writes/s, applied or journaled txids/s). */
  decorate(s: ActorStatusBody, nowMs = Date.now()): ActorStatus {
    let meter = this.rates.get(s.role);
    if (meter === undefined) this.rates.set(s.role, (meter = new RateMeter()));
    const total = s.role === "master" ? this.master.acked : s.role === "replica" ? s.appliedTxid : s.lastTxid;
    return { ...s, metricsUrl: this.url, rate: meter.sample(nowMs, total) };
  }

  /** Where the status-mirroring gauges are read from at each scrape. */
  watchStatus(source: () => ActorStatus): void {
    this.statusSource = source;
  }

  /** The Prometheus text of every series, the gauges refreshed from the actor's status first. */
  async scrape(): Promise<string> {
    if (this.statusSource !== null) {
      const s = this.statusSource();
      this.gauges.set(s);
      this.masterMetrics?.gauges.set(s);
      this.replicaMetrics?.gauges.set(s);
    }
    return await this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
