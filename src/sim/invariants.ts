/**
 * The safety properties, checked as the simulation runs (each at the event that could break it) and over the
 * journal nodes' disks every few steps:
 *  - never two writers established or committing in one epoch;
 *  - a committed txid never changes its record (learned from commits, and from every rebuild read after recovery);
 *  - every acked write stays in the committed log (a later writer's recovered log reaches it; some journal node
 *    serves it intact);
 *  - a replica applies only committed records, in txid order, each once;
 *  - a journal node's finalized segments hold the committed records (never a copy a recovery did not choose);
 *  - promised epochs never go down on a journal node, across restarts;
 *  - a corrupt record is never acked, applied or served onward (applied and recovered records equal the committed
 *    ones byte for byte; a journal node's append scans clean);
 *  - one master per epoch (issue #11): a writer serves, and a write is acked, only in the epoch that writer won (its
 *    recovery established it on a majority);
 *  - exactly once (issue #11): no write id (client, seq) is in two committed records, and a write acked to its client
 *    (a duplicate answered from a dedupe window included) names the committed record that holds its id;
 *  - one connection's order (ConnectionOrder below): its writes commit in the order it sent them.
 */
import { QjmError } from "../protocol/errors.js";
import { decodeRecordPayload, scanRecords } from "../segment/record.js";
import type { JournalState, WriteId } from "../protocol/messages.js";
import type { SimSegmentStore } from "./sim_disk.js";
import { KeyspaceCheck } from "./keyspace_check.js";

export class SimViolation extends Error {
  override name = "SimViolation";
}

interface CommittedRecord {
  epoch: number;
  payload: Uint8Array;
  /** Who taught us: a writer's commit, or a rebuild read. */
  source: string;
  /** The write id the payload carries (writeIdOf), decoded once when learnt. */
  write: WriteId | null;
}

function fail(message: string): never {
  throw new SimViolation(message);
}

function samePayload(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** The write id a committed record carries (null: a v1 record, or a payload that does not decode). */
function writeIdOf(payload: Uint8Array): WriteId | null {
  try {
    return decodeRecordPayload(payload).write;
  } catch (err) {
    // A payload a replica could not apply is for the apply path to report, not this invariant.
    if (err instanceof QjmError) return null;
    throw err;
  }
}

/**
 * How the client's group ended a write that got no OK: its retries' deadline passed with every attempt answered "not
 * applied" (NOT_WRITER, OVERLOADED), or with its outcome unknown; or a definite answer (a Redis error: committed, as
 * an error reply).
 */
export type GaveUp = "notApplied" | "unknown" | "answered";

/**
 * One connection's order (docs/resp.md "Order on one connection"; the client's group, src/client/ordered_writes.ts;
 * the master's side, src/master/write_order.ts). The writes a connection sends through the library's ordered group
 * (each with an id, in seq order; its attempts name the unanswered write sent just before, `id.after`) are promised:
 *
 *  (1) for two of its writes i < j (seq order, which is send order), both committed: i's txid < j's — except when the
 *      client gave i up with its outcome unknown (past its retries' deadline, after an attempt of it was abandoned: timed
 *      out, or cut short by an election): that attempt's copy may still be on its way, or wait in a master's queue, and
 *      commit at any later point, after writes the connection sent since (they no longer name i; no master can know).
 *      The library says so: "outcome unknown", nothing about where (ordered_writes.ts cutShort narrows it: seeds 80
 *      and 735; seed 1027 shows what stays open). Counted as `lateUnknown` (pairs) in a run's stats.
 *      Checked at the later of the two commits, so the exemption counts only if i was given up by then: while the
 *      client still retries i, nothing it sent after i may commit before it;
 *  (2) a write the client gave up as not applied (every attempt answered NOT_WRITER or OVERLOADED, none timed out or
 *      NO_QUORUM, and its deadline passed) never commits: a refused attempt is never run later — unless the bus
 *      delivered one of its attempts twice (NATS never does; the simulated bus may): the refused copy's twin may run
 *      (seed 52: the second copy overtook the first, was refused as ahead of its predecessor, and the first ran).
 *
 * Not promised, and not checked: writes without an id (another connection, without the library; their records carry
 * no id); order across connections. The master's memory of refusals is bounded (writeOrderRefusalsMax, -Ms): past
 * those bounds the race it closes reopens; the simulation's runs (seconds, hundreds of writes) stay well inside them,
 * so a break here is never the bounds'. Writes are identified by the id their record carries (learnt wherever
 * committed records are learnt: a writer's commit, a rebuild, a finalized segment).
 */
/** One connection's writes: how each ended (null: answered OK, or not yet), the committed ones, those sent twice. */
interface Connection {
  name: string;
  gaveUp: Map<number, GaveUp | null>;
  committed: { seq: number; txid: number }[];
  /** The same, txid by seq. */
  txidOf: Map<number, number>;
  /** The highest seq and the highest txid in `committed` (0: none). */
  maxSeq: number;
  maxTxid: number;
  twice: Set<number>;
}

class ConnectionOrder {
  /** Each connection by name, and the connection of each of its writes by `client#seq`. */
  private readonly connections = new Map<string, Connection>();
  private readonly connectionOf = new Map<string, Connection>();
  counts = { writes: 0, checkedPairs: 0, lateUnknown: 0, twinRan: 0 };

  /** Connection `connection`'s group took write `id` (its first attempt may be held while the group retries). */
  write(id: WriteId, connection: string): void {
    let c = this.connections.get(connection);
    if (c === undefined) this.connections.set(connection, (c = { name: connection, gaveUp: new Map(), committed: [], txidOf: new Map(), maxSeq: 0, maxTxid: 0, twice: new Set() }));
    c.gaveUp.set(id.seq, null);
    this.connectionOf.set(`${id.client}#${id.seq}`, c);
    this.counts.writes++;
  }

  /** An attempt of write `id` was delivered twice. */
  duplicated(id: WriteId): void {
    this.connectionOf.get(`${id.client}#${id.seq}`)?.twice.add(id.seq);
  }

  /** (2): a write given up as not applied committed — unless a twin of a refused copy ran. */
  private notApplied(c: Connection, id: WriteId, txid: number): void {
    if (c.twice.has(id.seq)) return void this.counts.twinRan++;
    fail(`write ${id.client}#${id.seq} committed at txid ${txid}, but the client gave it up as not applied`);
  }

  gaveUp(id: WriteId, how: GaveUp): void {
    const c = this.connectionOf.get(`${id.client}#${id.seq}`);
    if (c === undefined) return;
    c.gaveUp.set(id.seq, how);
    const committed = c.txidOf.get(id.seq);
    if (how === "notApplied" && committed !== undefined) this.notApplied(c, id, committed);
  }

  /** The record at `txid` holds write `id`: against every committed write of its connection, in both directions. */
  committed(id: WriteId, txid: number): void {
    const c = this.connectionOf.get(`${id.client}#${id.seq}`);
    if (c === undefined) return; // no connection's (sent without the library)
    if (c.gaveUp.get(id.seq) === "notApplied") this.notApplied(c, id, txid);
    // The usual case, a write after every committed one in both seq and txid: each pair is in order, as the loop below
    // would find them one by one.
    if (id.seq > c.maxSeq && txid > c.maxTxid) this.counts.checkedPairs += c.committed.length;
    else this.inversions(c, id, txid);
    c.committed.push({ seq: id.seq, txid });
    c.txidOf.set(id.seq, txid);
    c.maxSeq = Math.max(c.maxSeq, id.seq);
    c.maxTxid = Math.max(c.maxTxid, txid);
  }

  /** Write `id`, committed at `txid`, against each committed write of its connection. */
  private inversions(c: Connection, id: WriteId, txid: number): void {
    for (const other of c.committed) {
      this.counts.checkedPairs++;
      if (other.seq === id.seq || other.seq < id.seq === other.txid < txid) continue;
      const [earlier, later] = other.seq < id.seq ? [{ seq: other.seq, txid: other.txid }, { seq: id.seq, txid }] : [{ seq: id.seq, txid }, other];
      if (c.gaveUp.get(earlier.seq) === "unknown") {
        this.counts.lateUnknown++;
        continue;
      }
      fail(`connection ${c.name}: write ${id.client}#${earlier.seq} committed at txid ${earlier.txid}, after its later write ${id.client}#${later.seq} (txid ${later.txid}), and the client had not given it up`);
    }
  }
}

export class Invariants {
  private readonly committed = new Map<number, CommittedRecord>();
  maxCommitted = 0;
  private readonly ackedTxids = new Set<number>();
  maxAcked = 0;
  /** The highest txid a writer committed (a majority acked) in each epoch. */
  private readonly committedInEpoch = new Map<number, number>();
  /** The writer established in each epoch, and the end of the log it recovered. */
  private readonly writers = new Map<number, { writer: string; endTxid: number }>();
  /** Per journal node: the highest promise it ever replied with. */
  private readonly promised = new Map<string, number>();
  private readonly applied = new Map<string, number>();
  private readonly flipped = new Set<string>();
  /** `appliedFromFanout`: of `applied`, the records a replica took from the master's batch fan-out, not a read. */
  counts = { applied: 0, appliedFromFanout: 0, recoveredReads: 0, corruptReadsRefused: 0, fanoutsRefused: 0, writers: 0 };
  /** The committed record of each write id, `client#seq` → txid (learnt where committed records are learnt). */
  private readonly committedIds = new Map<string, number>();
  /** Per committed txid, the last record bytes found to hold it intact (holdsIntact). */
  private readonly intactBytes = new Map<number, Uint8Array>();
  /** Each connection's writes commit in its order (ConnectionOrder). */
  readonly connections = new ConnectionOrder();
  /** Every copy's keyspace, TTLs included, is the fold of the records it took (issue #10 class 2; keyspace_check.ts). */
  readonly keyspace = new KeyspaceCheck();
  /** Called once, when the first writer is established (the cluster is formatted). */
  onFirstWriter: () => void = () => {};

  /** A txid now known committed with this record (a writer's majority, or the recovered log). */
  learnCommitted(txid: number, epoch: number, payload: Uint8Array, source: string): void {
    const known = this.committed.get(txid);
    if (known !== undefined) {
      if (known.epoch !== epoch || !samePayload(known.payload, payload)) {
        fail(`committed txid ${txid} changed its record: epoch ${known.epoch} (from ${known.source}) then epoch ${epoch} (from ${source})`);
      }
      return;
    }
    // A copy (Buffer.slice would not be one): a payload read off a simulated disk is a view of its file, which a later
    // bit flip would change.
    const record: CommittedRecord = { epoch, payload: new Uint8Array(payload), source, write: null };
    this.committed.set(txid, record);
    this.maxCommitted = Math.max(this.maxCommitted, txid);
    this.learnWriteId(txid, record, source);
  }

  /** Exactly once: a write id committed under two txids is a retry applied twice (a dedupe window that forgot it). */
  private learnWriteId(txid: number, record: CommittedRecord, source: string): void {
    const write = (record.write = writeIdOf(record.payload));
    if (write === null) return;
    const key = `${write.client}#${write.seq}`;
    const other = this.committedIds.get(key);
    if (other !== undefined && other !== txid) fail(`write ${key} applied twice: committed at txid ${other} and at txid ${txid} (from ${source})`);
    if (other === undefined) this.connections.committed(write, txid);
    this.committedIds.set(key, txid);
  }

  /** Connection `connection`'s ordered group took write `id` (one connection's pipelined writes). */
  connectionWrite(id: WriteId, connection: string): void {
    this.connections.write(id, connection);
  }

  /** The bus delivered an attempt of write `id` twice. */
  connectionDuplicated(id: WriteId): void {
    this.connections.duplicated(id);
  }

  /** The client's group ended write `id` without an OK (GaveUp says how). */
  connectionGaveUp(id: WriteId, how: GaveUp): void {
    this.connections.gaveUp(id, how);
  }

  /**
   * The client got OK for its write `id` at `txid` (`duplicate`: answered from a dedupe window): the committed record
   * at that txid is the one holding this id, the first and only one.
   */
  ackedWrite(id: WriteId, txid: number, duplicate: boolean): void {
    const key = `${id.client}#${id.seq}`;
    const c = this.committed.get(txid);
    const what = duplicate ? "acked as a duplicate" : "acked";
    if (c === undefined) fail(`write ${key} ${what} at txid ${txid}, which is not committed`);
    const held = c.write;
    if (held === null || held.client !== id.client || held.seq !== id.seq) {
      fail(`write ${key} ${what} at txid ${txid}, whose committed record holds ${held === null ? "no write id" : `write ${held.client}#${held.seq}`}`);
    }
    const first = this.committedIds.get(key);
    if (first !== txid) fail(`write ${key} ${what} at txid ${txid}, but its id was committed at txid ${first}`);
  }

  /** `writer` starts serving `epoch`: it must be the one that won it. */
  writerServes(epoch: number, writer: string): void {
    const w = this.writers.get(epoch);
    if (w === undefined || w.writer !== writer) fail(`${writer} serves epoch ${epoch}, which ${w === undefined ? "nobody" : w.writer} won`);
  }

  /** The committed record at `txid` (for a data node's Redis, which must equal the committed prefix once converged). */
  committedPayload(txid: number): Uint8Array | null {
    return this.committed.get(txid)?.payload ?? null;
  }

  /** A writer's batch reached a majority: txids up to `committedTxid` are committed in `epoch` by `writer`. */
  writerCommitted(epoch: number, writer: string, committedTxid: number): void {
    this.committedInEpoch.set(epoch, Math.max(this.committedInEpoch.get(epoch) ?? 0, committedTxid));
    const w = this.writers.get(epoch);
    if (w === undefined || w.writer !== writer) fail(`${writer} committed in epoch ${epoch}, whose writer is ${w?.writer ?? "nobody"}`);
    for (const [e, later] of this.writers) {
      if (e > epoch && later.endTxid < committedTxid) {
        fail(`epoch ${epoch} committed txid ${committedTxid}, but epoch ${e}'s writer already recovered a log ending at ${later.endTxid}`);
      }
    }
  }

  /**
   * `writer` starts finalizing its segment, which ends at `lastTxid`: every record of it must be committed first. A
   * finalized segment is served to readers as committed (journal_core.ts knownCommittedTxid), so a roll of records
   * still in flight would vouch for what no majority acked to the writer yet.
   */
  writerRolls(writer: string, epoch: number, committedTxid: number, lastTxid: number): void {
    if (committedTxid !== lastTxid) fail(`${writer} rolls its segment in epoch ${epoch} at txid ${lastTxid} with only ${committedTxid} committed`);
  }

  /** Recovery finished: `writer` serves `epoch`, the log ends at endTxid. */
  writerEstablished(epoch: number, writer: string, endTxid: number): void {
    const w = this.writers.get(epoch);
    if (w !== undefined) fail(`two writers in epoch ${epoch}: ${w.writer} and ${writer}`);
    this.writers.set(epoch, { writer, endTxid });
    if (this.counts.writers++ === 0) this.onFirstWriter();
    // What earlier epochs committed must be in the log; a later epoch's commits need not (this writer is stale,
    // and will be fenced at its first batch).
    for (const [e, committed] of this.committedInEpoch) {
      if (e < epoch && endTxid < committed) {
        fail(`${writer} recovered a log ending at ${endTxid} in epoch ${epoch}: txid ${committed} committed in epoch ${e} is lost${this.ackedTxids.has(committed) ? " (an acked write)" : ""}`);
      }
    }
  }

  /** A rebuild read after recovery: every record up to the recovered end is committed. */
  recovered(writer: string, txid: number, epoch: number, payload: Uint8Array): void {
    this.counts.recoveredReads++;
    this.learnCommitted(txid, epoch, payload, `${writer}'s rebuild`);
  }

  /** A client got OK from `writer` for the write it journaled at txid in `epoch`. */
  acked(txid: number, epoch: number, payload: Uint8Array, writer: string): void {
    const w = this.writers.get(epoch);
    if (w === undefined || w.writer !== writer) fail(`${writer} acked txid ${txid} in epoch ${epoch}, which ${w === undefined ? "nobody" : w.writer} won`);
    const c = this.committed.get(txid);
    if (c === undefined) fail(`write at txid ${txid} acked but not committed`);
    if (c.epoch !== epoch || !samePayload(c.payload, payload)) fail(`write at txid ${txid} acked with a record other than the committed one`);
    this.ackedTxids.add(txid);
    this.maxAcked = Math.max(this.maxAcked, txid);
  }

  /** A replica applies a record (after its core validated it), read from a journal node or taken from the fan-out. */
  replicaApplies(replica: string, txid: number, epoch: number, payload: Uint8Array, from: "read" | "fanout" = "read"): void {
    const last = this.applied.get(replica) ?? 0;
    if (txid !== last + 1) fail(`${replica} applies txid ${txid} after ${last}: out of order or twice`);
    const c = this.committed.get(txid);
    if (c === undefined) fail(`${replica} applies txid ${txid}, which is not committed (committed up to ${this.maxCommitted})`);
    if (c.epoch !== epoch || !samePayload(c.payload, payload)) fail(`${replica} applies a record at txid ${txid} other than the committed one`);
    this.applied.set(replica, txid);
    this.counts.applied++;
    if (from === "fanout") this.counts.appliedFromFanout++;
  }

  /** A replica restarts from the applied txid its (persistent) Redis holds. */
  replicaResumes(replica: string, appliedTxid: number): void {
    const last = this.applied.get(replica) ?? 0;
    if (appliedTxid !== last) fail(`${replica} resumes at ${appliedTxid}, applied ${last}`);
  }

  /** A data node's Redis was wiped (it was a master's): its replica role applies from txid 1 again. */
  replicaWiped(replica: string): void {
    this.applied.set(replica, 0);
  }

  appliedBy(replica: string): number {
    return this.applied.get(replica) ?? 0;
  }

  /** A journal node answered with its state: its promise is a fact the writers act on. */
  journalReplied(node: string, state: JournalState): void {
    this.checkPromise(node, state.promisedEpoch, "replied");
    this.promised.set(node, Math.max(this.promised.get(node) ?? 0, state.promisedEpoch));
  }

  /** A journal node's state as it stands: after a (re)load from its disk, and after every step of the simulation. */
  journalState(node: string, state: Pick<JournalState, "promisedEpoch">): void {
    this.checkPromise(node, state.promisedEpoch, "holds");
  }

  private checkPromise(node: string, promisedEpoch: number, when: string): void {
    const before = this.promised.get(node) ?? 0;
    if (promisedEpoch < before) fail(`${node} ${when} promised epoch ${promisedEpoch}, below the ${before} it promised before`);
  }

  /** Records a journal node just appended read back clean (before the write the core checked them; now after). */
  journalAppended(node: string, store: SimSegmentStore, txids: number[]): void {
    for (const txid of [txids[0], txids[txids.length - 1]]) {
      if (!store.scanClean(txid)) fail(`${node} stored a corrupt record at txid ${txid}`);
    }
  }

  /**
   * `node` finalized `startTxid`..`endTxid`: its records are chosen, as a reader of committed records is told. Learned
   * as committed, so two nodes finalizing different records under one txid, or a writer committing another, fail.
   */
  journalFinalized(node: string, store: SimSegmentStore, startTxid: number, endTxid: number): void {
    for (let txid = startTxid; txid <= endTxid; txid++) {
      const bytes = store.recordAt(txid);
      // Bytes already found to hold the committed record intact: learnt again, they would change nothing.
      const known = this.intactBytes.get(txid);
      if (bytes !== null && known !== undefined && samePayload(known, bytes)) continue;
      const scan = bytes === null ? null : scanRecords(bytes);
      // A bit flipped since it was written is the flip's, not the protocol's: the paired checks catch those.
      if (scan === null || scan.stop !== undefined || scan.records.length !== 1) continue;
      this.learnCommitted(txid, scan.records[0].epoch, scan.records[0].payload, `${node}'s finalized segment`);
    }
  }

  bitFlipped(node: string): void {
    this.flipped.add(node);
  }

  corruptReadRefused(): void {
    this.counts.corruptReadsRefused++;
  }

  /** A replica ignored a batch fan-out (malformed, or its records fail the checks): it reads those txids instead. */
  fanoutRefused(): void {
    this.counts.fanoutsRefused++;
  }

  /**
   * Every committed txid is served intact by some journal node (not one that refuses service): an acked write
   * is never only in memory or only in a set-aside file.
   */
  checkDisks(stores: { node: string; store: SimSegmentStore; serving: boolean }[]): void {
    // Per store, the txids found intact on it here: its finalized-segment check below needs not read them again.
    const intactOn = stores.map(() => new Set<number>());
    for (const [txid, c] of this.committed) {
      let intact = false;
      for (let i = 0; i < stores.length; i++) {
        const { store, serving } = stores[i];
        if (!serving) continue;
        const rec = store.recordAt(txid);
        if (rec !== null && this.holdsIntact(txid, c, rec)) {
          intactOn[i].add(txid);
          intact = true;
          break;
        }
      }
      if (!intact) fail(`committed txid ${txid}${this.ackedTxids.has(txid) ? " (acked)" : ""} is held intact by no serving journal node`);
    }
    stores.forEach(({ node, store, serving }, i) => {
      if (serving) this.checkFinalized(node, store, intactOn[i]);
    });
  }

  /**
   * Whether `rec` (a record's bytes as a store serves them) is the committed record `c` at `txid`, intact. A scan's
   * verdict is a function of the bytes alone, and `c` never changes: bytes equal to ones already found intact are
   * intact without a second scan (every disk check meets the same records again, on every node).
   */
  private holdsIntact(txid: number, c: CommittedRecord, rec: Uint8Array): boolean {
    const known = this.intactBytes.get(txid);
    if (known !== undefined && samePayload(known, rec)) return true;
    const scan = scanRecords(rec);
    const intact = scan.stop === undefined && scan.records.length === 1 && scan.records[0].txid === txid && scan.records[0].epoch === c.epoch && samePayload(scan.records[0].payload, c.payload);
    // A copy: `rec` is a view of a simulated file, which a later write or bit flip changes.
    if (intact) this.intactBytes.set(txid, new Uint8Array(rec));
    return intact;
  }

  /**
   * A finalized segment is part of the decided log: every record of it that scans clean is the committed one (a
   * recovery that finalized a node's own uncommitted copy would leave another record under a committed txid).
   */
  private checkFinalized(node: string, store: SimSegmentStore, intact: ReadonlySet<number>): void {
    for (const range of store.finalizedRanges()) {
      for (let txid = range.startTxid; txid <= range.endTxid; txid++) {
        if (intact.has(txid)) continue; // the committed record, intact: found so on this store in this check
        const c = this.committed.get(txid);
        const rec = c === undefined ? null : store.recordAt(txid);
        if (c === undefined || rec === null || this.holdsIntact(txid, c, rec)) continue;
        const scan = scanRecords(rec);
        if (scan.stop !== undefined || scan.records.length !== 1) continue; // a flipped bit: refused when read, not another record
        if (scan.records[0].epoch !== c.epoch || !samePayload(scan.records[0].payload, c.payload)) {
          fail(`${node} holds a finalized record at committed txid ${txid} of epoch ${scan.records[0].epoch}, not the committed one of epoch ${c.epoch}${this.ackedTxids.has(txid) ? " (acked)" : ""}`);
        }
      }
    }
  }
}
