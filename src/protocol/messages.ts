/**
 * Every message type and its validation. Bodies arrive as `unknown` from the codec; `parse*` turns them into
 * typed values or throws a BAD_REQUEST QjmError that says which field is wrong.
 */
import { ErrorCode, QjmError, type ErrorReply } from "./errors.js";
import type { Role } from "./subjects.js";
import { decode } from "./codec.js";

/** A segment as a journal node holds it: [startTxid, endTxid]; endTxid = startTxid - 1 when it holds no record. */
export interface SegmentState {
  startTxid: number;
  endTxid: number;
  inProgress: boolean;
}

/** What a journal node reports of itself (getState, newEpoch, prepareRecovery). */
export interface JournalState {
  nodeId: string;
  promisedEpoch: number;
  /** Epoch of the writer that last started a segment here. */
  writerEpoch: number;
  firstTxid: number;
  lastTxid: number;
  committedTxid: number;
  /** The newest segment, if any. */
  lastSegment: SegmentState | null;
  /** Set when the node refuses to serve: a corrupt segment on disk. */
  fault: string | null;
  /** The cluster this node was formatted for; null until formatted (a new or wiped node). */
  clusterId: string | null;
  /** Formatted into a running cluster (after a wipe): takes part in no quorum until the writer restores it. */
  restoring: boolean;
}

export type JournalRequest =
  | { type: "getState" }
  /** Phase 1 of becoming the writer: the node promises to ignore every lower epoch (must be strictly higher). */
  | { type: "newEpoch"; epoch: number; clusterId?: string }
  /**
   * Opens the in-progress segment that starts at txid; the node's log must end at txid - 1 (or past it, for a writer
   * that recovered a shorter log). `catchUp`: the writer's catch-up of a node that lacks records opens its current
   * segment past a hole (the missing finalized segments are copied in after); only this variant may leave a hole.
   */
  | { type: "startSegment"; epoch: number; txid: number; clusterId?: string; catchUp?: true }
  /** A batch of records; `records` is their concatenation. committedTxid is the writer's commit index. */
  | { type: "journal"; epoch: number; segmentTxid: number; firstTxid: number; count: number; records: Uint8Array; committedTxid: number; trace?: true }
  /** Writer recovery, phase 1: report the state of the segment that starts at segmentTxid. */
  | { type: "prepareRecovery"; epoch: number; segmentTxid: number }
  /** Writer recovery: records of the chosen segment from firstTxid on, replacing what the node holds from there. */
  | { type: "recoveryAppend"; epoch: number; segmentTxid: number; firstTxid: number; count: number; records: Uint8Array }
  /**
   * Writer recovery, phase 2: hold exactly this segment (truncating what is beyond it), persist the decision.
   * `lastRecord`: the print of the chosen copy's last record; a node whose copy differs there refuses.
   */
  | { type: "acceptRecovery"; epoch: number; segment: SegmentState; lastRecord: RecordPrint }
  /** Closes a segment at endTxid (idempotent). */
  | { type: "finalize"; epoch: number; startTxid: number; endTxid: number }
  /** Gives an unformatted node its cluster id; `restoring` when it joins a cluster that already has a log. */
  /** `epoch`: needed to format again a node that promised one (it is promised too, so stale formats are fenced). */
  | { type: "format"; clusterId: string; restoring: boolean; epoch?: number }
  /** The node's segments (what a peer copies finalized segments by). */
  | { type: "getManifest" }
  /** A snapshot at txid is fsynced on a majority: the log wholly below it may be purged. */
  | { type: "snapshotDurable"; txid: number; clusterId: string }
  /** A finalized segment copied from a peer into a hole of this node's log, in chunks from firstTxid. */
  | { type: "syncSegment"; epoch: number; clusterId: string; segment: SegmentState; firstTxid: number; count: number; records: Uint8Array }
  /** The writer saw this node's log complete: it takes part in quorums again. */
  | { type: "markRestored"; epoch: number; clusterId: string }
  /** Records from fromTxid on; committed ones only unless `uncommitted` (recovery reads). */
  | { type: "read"; fromTxid: number; bytesMax: number; recordsMax: number; uncommitted: boolean };

export type JournalRequestType = JournalRequest["type"];

/** A batch of records (the `journal` request). */
export type JournalBatch = Extract<JournalRequest, { type: "journal" }>;

/** The most journal nodes one BatchFanout may name (a cluster has 3 or 5; the bound keeps a bad message cheap). */
export const FANOUT_NODES_MAX = 16;

/**
 * One batch for several journal nodes, published once on `subjects.batch` (issue #13): the `journal` request's fields,
 * `to`, the nodes that must append it (a node not named ignores it: it is out of step, or being caught up), and `re`,
 * the master's tag for it, which each answer carries back.
 */
export type BatchFanout = JournalBatch & { to: string[]; re: string };

/** A named node's answer to a BatchFanout, on its own `subjects.batchAck`: its JournalReply and the fan-out's `re`. */
export type FanoutReply = JournalReply & { re: string };

export interface ReadResult {
  /** Concatenated records, starting at fromTxid. */
  records: Uint8Array;
  count: number;
  lastTxid: number;
  committedTxid: number;
}

export interface PrepareResult {
  state: JournalState;
  /** This node's copy of the segment, or null if it holds none. */
  segment: SegmentState | null;
  /** Epoch in which this node last accepted a recovery decision for the segment, 0 if never. */
  acceptedInEpoch: number;
  /** The print of the copy's last record (null: no copy, or the node does not know it). */
  lastRecord: RecordPrint | null;
}

/** A record as a recovery recognizes it: its epoch and its CRC (u32 each). */
export interface RecordPrint {
  epoch: number;
  crc: number;
}

/**
 * Trace stamps (traceSample): milliseconds on `performance.timeOrigin + performance.now()`, monotonic within a process
 * and comparable between processes of one host only (each host's wall clock anchors its timeOrigin).
 */
export interface JournalStamps {
  /** The batch request handed to the node's queue. */
  recv: number;
  /** Its turn came (the requests before it in the queue done). */
  started: number;
  /** Its records written and fdatasynced. */
  durable: number;
  /** Its reply about to be sent. */
  replied: number;
}

/** A traced write as the master saw it; 0: that point was not reached (a write with no record, say). */
export interface WriteTrace {
  recv: number;
  /** The command and its marker handed to the Redis connection. */
  executed: number;
  /** Its marker seen on the replication link: its record cut. */
  cut: number;
  /** The first send of the batch holding its record. */
  batchSent: number;
  /** Each journal node's ack of that batch, in arrival order: its own stamps and the master's receipt. */
  acks: ({ node: string; acked: number } & Partial<JournalStamps>)[];
  committed: number;
  replied: number;
}

/** With traceSample > 0, a replica's run of records applied (txids fromTxid..toTxid) at `at` (a trace stamp). */
export interface TraceApplied {
  replica: string;
  fromTxid: number;
  toTxid: number;
  at: number;
}

/**
 * The master's commit index, fanned out on `committed` (subjects.ts) for a commit no batch fan-out carried within
 * commitHintDelayMs (src/master/commit_hints.ts): every txid of the segment that starts at `segmentTxid` up to
 * `committedTxid` is committed, by the writer of `epoch`.
 */
export interface CommitHint {
  epoch: number;
  segmentTxid: number;
  committedTxid: number;
}

export type JournalReply =
  | ({ ok: true } & { state: JournalState; trace?: JournalStamps })
  | ({ ok: true } & { manifest: SegmentState[]; state: JournalState })
  | ({ ok: true } & { read: ReadResult })
  | ({ ok: true } & { prepare: PrepareResult })
  | ErrorReply;

/**
 * The reply to a client write. `reply` is Redis's, typed (ReplyValue: a status is a string, a bulk string bytes; see
 * src/redis/reply_value.ts). `duplicate`: the write's id was committed already (a retry); the reply is the one the
 * journal kept for it, and the write was not applied again. `master` and `epoch`: the node that answered and the epoch
 * it serves, so a client learns where to send its next writes (`write.<master>`; an older master names neither).
 */
export type WriteReply = { ok: true; txid: number; reply: unknown; duplicate?: true; trace?: WriteTrace; master?: string; epoch?: number } | ErrorReply;

/**
 * A write's id (issue #11 item 3): the client that sent it and the client's sequence number for it. A retry carries
 * the same id, so the master can tell it from a new write and answer it from the dedupe window.
 */
export interface WriteId {
  client: string;
  seq: number;
  /**
   * The seq of the write of the same connection sent just before this one and still unanswered, if any: the master
   * does not run this write while that one was refused and not yet run again (src/master/write_order.ts).
   */
  after?: number;
}

const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** A client id: 1..64 characters of [A-Za-z0-9_-] (so as many bytes). */
export function isClientId(v: unknown): v is string {
  return typeof v === "string" && CLIENT_ID.test(v);
}

export interface Heartbeat {
  role: Role;
  id: string;
  pid: number;
  /** Drawn at the process's start (src/actor/incarnation.ts): a new one means the actor restarted. */
  incarnation?: string;
  epoch: number;
  lastTxid: number;
  committedTxid: number;
  appliedTxid: number;
  health: string;
  /** From a replica: journal nodes that recently served it records that fail validation, with why. */
  journalNodeFaults?: Record<string, string>;
  /** From a data node: its election priority (0: never takes over). */
  priority?: number;
}

/**
 * A heartbeat's body, if it is the named actor's own: a subject alone proves nothing, so its role and id must be the
 * ones the subject names. Null for anything else (not msgpack, another actor's, not a map).
 */
export function heartbeatOf(data: Uint8Array, role: string, id: string): Record<string, unknown> | null {
  let hb: unknown;
  try {
    hb = decode(data);
  } catch {
    return null;
  }
  return isObject(hb) && hb.role === role && hb.id === id ? hb : null;
}

export interface ActorStatus extends Heartbeat {
  redisUrl: string | null;
  /** Its Prometheus endpoint (GET); null when it serves none (metricsPort 0, or its port was taken). */
  metricsUrl: string | null;
  /**
   * Per second over the last few seconds (src/metrics/rate.ts): acked writes at the master, applied txids at a replica,
   * journaled txids at a journal node.
   */
  rate: number;
  /** Role-specific details (per-journal-node health at the master, lag at a replica…). */
  details: Record<string, unknown>;
}

/** A status as an actor builds it; ActorMetrics.decorate adds the metrics URL and the rate. */
export type ActorStatusBody = Omit<ActorStatus, "metricsUrl" | "rate">;

// ---- validation ----

function bad(message: string): never {
  throw new QjmError(ErrorCode.BAD_REQUEST, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function uint(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) bad(`${key} must be a non-negative integer`);
  return v;
}

function bytes(o: Record<string, unknown>, key: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) bad(`${key} must be a byte string`);
  return v;
}

function text(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== "string" || v.length === 0 || v.length > 200) bad(`${key} must be a non-empty string`);
  return v;
}

function optionalText(o: Record<string, unknown>, key: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : text(o, key);
}

/** A flag that is either absent or true (so that a request without it parses to the same object as before). */
function optionalTrue(o: Record<string, unknown>, key: string): Record<string, true> {
  if (o[key] === undefined || o[key] === null || o[key] === false) return {};
  if (o[key] !== true) bad(`${key} must be a boolean`);
  return { [key]: true };
}

function bool(o: Record<string, unknown>, key: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean") bad(`${key} must be a boolean`);
  return v;
}

/** The largest epoch a record can carry (a u32 field). */
export const EPOCH_MAX = 0xffffffff;

function u32(o: Record<string, unknown>, key: string): number {
  const v = uint(o, key);
  if (v > EPOCH_MAX) bad(`${key} must fit in 32 bits`);
  return v;
}

function optionalU32(o: Record<string, unknown>, key: string): number | undefined {
  return o[key] === undefined || o[key] === null ? undefined : u32(o, key);
}

function parseRecordPrint(v: unknown): RecordPrint {
  if (!isObject(v)) bad("lastRecord must be a map");
  return { epoch: u32(v, "epoch"), crc: u32(v, "crc") };
}

export function parseSegmentState(v: unknown): SegmentState {
  if (!isObject(v)) bad("segment must be a map");
  const s = { startTxid: uint(v, "startTxid"), endTxid: uint(v, "endTxid"), inProgress: bool(v, "inProgress") };
  if (s.startTxid < 1 || s.endTxid < s.startTxid - 1) bad("segment bounds are inconsistent");
  return s;
}

export function parseJournalRequest(v: unknown): JournalRequest {
  if (!isObject(v)) bad("request must be a map");
  switch (v.type) {
    case "getState":
      return { type: "getState" };
    case "newEpoch":
      return { type: "newEpoch", epoch: u32(v, "epoch"), clusterId: optionalText(v, "clusterId") };
    case "startSegment":
      return { type: "startSegment", epoch: u32(v, "epoch"), txid: uint(v, "txid"), clusterId: optionalText(v, "clusterId"), ...optionalTrue(v, "catchUp") };
    case "format":
      return { type: "format", clusterId: text(v, "clusterId"), restoring: bool(v, "restoring"), epoch: optionalU32(v, "epoch") };
    case "getManifest":
      return { type: "getManifest" };
    case "snapshotDurable":
      return { type: "snapshotDurable", txid: uint(v, "txid"), clusterId: text(v, "clusterId") };
    case "syncSegment":
      return {
        type: "syncSegment",
        epoch: u32(v, "epoch"),
        clusterId: text(v, "clusterId"),
        segment: parseSegmentState(v.segment),
        firstTxid: uint(v, "firstTxid"),
        count: uint(v, "count"),
        records: bytes(v, "records"),
      };
    case "markRestored":
      return { type: "markRestored", epoch: u32(v, "epoch"), clusterId: text(v, "clusterId") };
    case "journal":
      return {
        type: "journal",
        epoch: u32(v, "epoch"),
        segmentTxid: uint(v, "segmentTxid"),
        firstTxid: uint(v, "firstTxid"),
        count: uint(v, "count"),
        records: bytes(v, "records"),
        committedTxid: uint(v, "committedTxid"),
        ...optionalTrue(v, "trace"),
      };
    case "prepareRecovery":
      return { type: "prepareRecovery", epoch: u32(v, "epoch"), segmentTxid: uint(v, "segmentTxid") };
    case "recoveryAppend":
      return {
        type: "recoveryAppend",
        epoch: u32(v, "epoch"),
        segmentTxid: uint(v, "segmentTxid"),
        firstTxid: uint(v, "firstTxid"),
        count: uint(v, "count"),
        records: bytes(v, "records"),
      };
    case "acceptRecovery":
      return { type: "acceptRecovery", epoch: u32(v, "epoch"), segment: parseSegmentState(v.segment), lastRecord: parseRecordPrint(v.lastRecord) };
    case "finalize":
      return { type: "finalize", epoch: u32(v, "epoch"), startTxid: uint(v, "startTxid"), endTxid: uint(v, "endTxid") };
    case "read":
      return {
        type: "read",
        fromTxid: uint(v, "fromTxid"),
        bytesMax: uint(v, "bytesMax"),
        recordsMax: uint(v, "recordsMax"),
        uncommitted: bool(v, "uncommitted"),
      };
    default:
      bad(`unknown journal request type ${JSON.stringify(v.type)}`);
  }
}

/** Validates a BatchFanout: a `journal` request naming 1..FANOUT_NODES_MAX distinct nodes, and its tag. */
export function parseBatchFanout(v: unknown): BatchFanout {
  if (!isObject(v)) bad("fan-out must be a map");
  if (v.type !== "journal") bad("a fan-out carries a journal request");
  const to = v.to;
  if (!Array.isArray(to) || to.length === 0 || to.length > FANOUT_NODES_MAX) bad(`to must list 1 to ${FANOUT_NODES_MAX} nodes`);
  const nodes = to.map((n, i) => (text({ n }, "n"), to.indexOf(n) === i ? (n as string) : bad(`to names ${String(n)} twice`)));
  return { ...(parseJournalRequest(v) as JournalBatch), to: nodes, re: text(v, "re") };
}

/** Validates a FanoutReply: the fan-out's tag, and the node's JournalReply. */
export function parseFanoutReply(v: unknown): { re: string; reply: JournalReply } {
  if (!isObject(v)) bad("reply must be a map");
  return { re: text(v, "re"), reply: parseJournalReply(v) };
}

function parseState(v: unknown): JournalState {
  if (!isObject(v)) bad("state must be a map");
  return {
    nodeId: typeof v.nodeId === "string" ? v.nodeId : bad("nodeId must be a string"),
    promisedEpoch: uint(v, "promisedEpoch"),
    writerEpoch: uint(v, "writerEpoch"),
    firstTxid: uint(v, "firstTxid"),
    lastTxid: uint(v, "lastTxid"),
    committedTxid: uint(v, "committedTxid"),
    lastSegment: v.lastSegment === null || v.lastSegment === undefined ? null : parseSegmentState(v.lastSegment),
    fault: typeof v.fault === "string" ? v.fault : null,
    clusterId: typeof v.clusterId === "string" ? v.clusterId : null,
    restoring: v.restoring === true,
  };
}

/** Validates a journal node's reply (the master and replicas trust nothing they did not check). */
function parseErrorReply(v: Record<string, unknown>): ErrorReply {
  const code = typeof v.code === "string" && v.code in ErrorCode ? (v.code as ErrorReply["code"]) : ErrorCode.INTERNAL;
  return { ok: false, code, message: typeof v.message === "string" ? v.message : "" };
}

export function parseJournalReply(v: unknown): JournalReply {
  if (!isObject(v)) bad("reply must be a map");
  if (v.ok === false) return parseErrorReply(v);
  if (v.ok !== true) bad("reply.ok must be a boolean");
  if (isObject(v.read)) {
    const r = v.read;
    return { ok: true, read: { records: bytes(r, "records"), count: uint(r, "count"), lastTxid: uint(r, "lastTxid"), committedTxid: uint(r, "committedTxid") } };
  }
  if (isObject(v.prepare)) {
    const p = v.prepare;
    return {
      ok: true,
      prepare: {
        state: parseState(p.state),
        segment: p.segment === null || p.segment === undefined ? null : parseSegmentState(p.segment),
        acceptedInEpoch: uint(p, "acceptedInEpoch"),
        lastRecord: p.lastRecord === null || p.lastRecord === undefined ? null : parseRecordPrint(p.lastRecord),
      },
    };
  }
  if (Array.isArray(v.manifest)) return { ok: true, manifest: v.manifest.map(parseSegmentState), state: parseState(v.state) };
  if (v.trace !== undefined) return { ok: true, state: parseState(v.state), trace: parseJournalStamps(v.trace) };
  return { ok: true, state: parseState(v.state) };
}

function stamp(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) bad(`${key} must be a non-negative number`);
  return v;
}

function parseJournalStamps(v: unknown): JournalStamps {
  if (!isObject(v)) bad("trace must be a map");
  return { recv: stamp(v, "recv"), started: stamp(v, "started"), durable: stamp(v, "durable"), replied: stamp(v, "replied") };
}

/** A write reply's trace (the bench reads it): validated, since it crossed the bus. */
export function parseWriteTrace(v: unknown): WriteTrace {
  if (!isObject(v)) bad("trace must be a map");
  if (!Array.isArray(v.acks)) bad("trace.acks must be an array");
  const acks = v.acks.map((a: unknown) => {
    if (!isObject(a)) bad("trace.acks[] must be maps");
    const own = a.recv === undefined ? {} : parseJournalStamps(a);
    return { node: text(a, "node"), acked: stamp(a, "acked"), ...own };
  });
  const at = (key: string): number => stamp(v, key);
  return { recv: at("recv"), executed: at("executed"), cut: at("cut"), batchSent: at("batchSent"), acks, committed: at("committed"), replied: at("replied") };
}

export function parseTraceApplied(v: unknown): TraceApplied {
  if (!isObject(v)) bad("a trace must be a map");
  return { replica: text(v, "replica"), fromTxid: uint(v, "fromTxid"), toTxid: uint(v, "toTxid"), at: stamp(v, "at") };
}

/** A commit hint off the bus; BAD_REQUEST when a field is missing or out of range. */
export function parseCommitHint(v: unknown): CommitHint {
  if (!isObject(v)) bad("a commit hint must be a map");
  const hint = { epoch: u32(v, "epoch"), segmentTxid: uint(v, "segmentTxid"), committedTxid: uint(v, "committedTxid") };
  if (hint.epoch < 1 || hint.segmentTxid < 1) bad("a commit hint names an epoch and a segment (both from 1)");
  return hint;
}

/** A parsed client write: its command and arguments as byte strings, and its id when the client sent one. */
export interface WriteRequest {
  /** A single command; for a transaction, `["EXEC"]` (what the write is, for logs and metrics). */
  args: Buffer[];
  /**
   * The command as it came (`{ resp }`): its RESP bytes, which `args` are views of; sent to Redis as they are. Null
   * for the other forms.
   */
  resp: Buffer | null;
  id: WriteId | null;
  /** A transaction (`{ tx }`): its commands, run between MULTI and EXEC; null for a single command. */
  tx: Buffer[][] | null;
  /** WATCH: the transaction is aborted (nil reply) if one of `keys` was modified by a record after `txid`. */
  watch: WatchSpec | null;
}

/** What a transaction watched: its keys, and the txid the watching node had applied when they were watched. */
export interface WatchSpec {
  txid: number;
  keys: Buffer[];
}

/** Bounds of a transaction request (config: txCommandsMax, txWatchKeysMax). */
export interface TxLimits {
  commandsMax: number;
  watchKeysMax: number;
}

const NO_TX_LIMITS: TxLimits = { commandsMax: Number.MAX_SAFE_INTEGER, watchKeysMax: Number.MAX_SAFE_INTEGER };

/**
 * A client write: either `[command, ...args]` (old clients, no id), `{ args: [command, ...args], id?: { client,
 * seq } }`, `{ resp, id? }` (the command as one RESP array of bulk strings, exactly: what the front door forwards, one
 * byte string instead of an argument each), or a transaction `{ tx: [[command, ...args], ...], watch?: { txid, keys: [...] }, id? }` (at most
 * `limits.commandsMax` commands and `limits.watchKeysMax` watched keys; its bytes are the write's bound). Each
 * argument is a string, a byte string or an integer (sent as its decimal text). Any other shape, or a map with
 * another key, is a BAD_REQUEST.
 */
export function parseWriteRequest(v: unknown, limits: TxLimits = NO_TX_LIMITS): WriteRequest {
  if (Array.isArray(v)) return { args: parseWriteArgs(v), resp: null, id: null, tx: null, watch: null };
  if (!isObject(v)) throw new QjmError(ErrorCode.BAD_REQUEST, "a write must be a msgpack array [command, ...args] or a map { args, id } or { tx, watch, id }");
  const id = v.id === undefined || v.id === null ? null : parseWriteId(v.id);
  if (v.tx !== undefined) return parseTxRequest(v, id, limits);
  if (v.resp !== undefined) return parseRespRequest(v, id);
  for (const key of Object.keys(v)) {
    if (key !== "args" && key !== "id") throw new QjmError(ErrorCode.BAD_REQUEST, `a write map has no key ${JSON.stringify(key.slice(0, 32))} (only args and id, resp and id, or tx, watch and id)`);
  }
  if (!Array.isArray(v.args)) throw new QjmError(ErrorCode.BAD_REQUEST, "a write's args must be a msgpack array [command, ...args]");
  return { args: parseWriteArgs(v.args), resp: null, id, tx: null, watch: null };
}

function parseRespRequest(v: Record<string, unknown>, id: WriteId | null): WriteRequest {
  for (const key of Object.keys(v)) if (key !== "resp" && key !== "id") bad(`a write map has no key ${JSON.stringify(key.slice(0, 32))} with resp (only resp and id)`);
  if (!(v.resp instanceof Uint8Array)) bad("a write's resp must be a msgpack byte string");
  const resp = Buffer.from(v.resp.buffer, v.resp.byteOffset, v.resp.byteLength);
  return { args: commandOfResp(resp), resp, id, tx: null, watch: null };
}

/**
 * The arguments of one command in RESP (`*<n>\r\n` then n `$<len>\r\n<bytes>\r\n`, n ≥ 1, decimal numbers without
 * sign or leading zero, nothing after), as views of `resp`; anything else is a BAD_REQUEST. Strict, so that Redis
 * reads these bytes as exactly this command. No copy and no object but the views: a 10k-argument write is one buffer
 * across the bus, not ten thousand (s24: packing, unpacking and collecting them stalled the master).
 */
export function commandOfResp(resp: Buffer): Buffer[] {
  const end = resp.length;
  let at = 0;
  // `<prefix><decimal>\r\n` at `at`: the number; `at` moves past the line.
  const header = (prefix: number, what: string): number => {
    if (at >= end || resp[at] !== prefix) bad(`resp: expected '${String.fromCharCode(prefix)}' at byte ${at}`);
    let n = 0;
    let i = at + 1;
    for (; i < end && resp[i] !== 0x0d; i++) {
      const d = resp[i] - 0x30;
      if (d < 0 || d > 9 || (n === 0 && i > at + 1) || i - at > 15) bad(`resp: bad ${what} length at byte ${at}`);
      n = n * 10 + d;
    }
    if (i === at + 1 || i + 1 >= end || resp[i + 1] !== 0x0a) bad(`resp: bad ${what} line at byte ${at}`);
    at = i + 2;
    return n;
  };
  const count = header(0x2a /* * */, "array");
  if (count === 0) bad("resp: a write must name a command");
  // Each argument takes at least 6 bytes ($0\r\n\r\n): a count past that is refused before anything is allocated.
  if (count > (end - at) / 6) bad(`resp: ${count} arguments cannot fit in ${end} bytes`);
  const args = new Array<Buffer>(count);
  for (let k = 0; k < count; k++) {
    const len = header(0x24 /* $ */, "bulk");
    if (at + len + 2 > end || resp[at + len] !== 0x0d || resp[at + len + 1] !== 0x0a) bad(`resp: bulk string ${k} not ended by CRLF`);
    args[k] = resp.subarray(at, at + len);
    at += len + 2;
  }
  if (at !== end) bad(`resp: ${end - at} bytes after the command`);
  return args;
}

function parseTxRequest(v: Record<string, unknown>, id: WriteId | null, limits: TxLimits): WriteRequest {
  for (const key of Object.keys(v)) {
    if (key !== "tx" && key !== "watch" && key !== "id") bad(`a transaction map has no key ${JSON.stringify(key.slice(0, 32))} (only tx, watch and id)`);
  }
  if (!Array.isArray(v.tx)) bad("a transaction's tx must be a msgpack array of commands [[command, ...args], ...]");
  if (v.tx.length > limits.commandsMax) bad(`a transaction of ${v.tx.length} commands exceeds txCommandsMax ${limits.commandsMax}`);
  const tx = v.tx.map((c: unknown, i: number) => {
    if (!Array.isArray(c)) bad(`command ${i} of the transaction must be a msgpack array [command, ...args]`);
    return parseWriteArgs(c);
  });
  return { args: [Buffer.from("EXEC")], resp: null, id, tx, watch: v.watch === undefined || v.watch === null ? null : parseWatch(v.watch, limits) };
}

function parseWatch(v: unknown, limits: TxLimits): WatchSpec {
  if (!isObject(v)) bad("a transaction's watch must be a map { txid, keys }");
  for (const key of Object.keys(v)) if (key !== "txid" && key !== "keys") bad(`a watch has no key ${JSON.stringify(key.slice(0, 32))} (only txid and keys)`);
  const txid = v.txid;
  if (typeof txid !== "number" || !Number.isSafeInteger(txid) || txid < 0) bad("watch.txid must be a non-negative safe integer");
  if (!Array.isArray(v.keys) || v.keys.length === 0) bad("watch.keys must be a non-empty array of keys");
  if (v.keys.length > limits.watchKeysMax) bad(`${v.keys.length} watched keys exceed txWatchKeysMax ${limits.watchKeysMax}`);
  return { txid, keys: parseWriteArgs(v.keys) };
}

function parseWriteArgs(v: unknown[]): Buffer[] {
  if (v.length === 0) throw new QjmError(ErrorCode.BAD_REQUEST, "a write must name a command");
  return v.map((arg, i) => {
    if (arg instanceof Uint8Array) return Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
    if (typeof arg === "string") return Buffer.from(arg);
    if (typeof arg === "number" && Number.isSafeInteger(arg)) return Buffer.from(String(arg));
    throw new QjmError(ErrorCode.BAD_REQUEST, `argument ${i} must be a string, a byte string or a safe integer`);
  });
}

function parseWriteId(v: unknown): WriteId {
  if (!isObject(v)) bad("a write's id must be a map { client, seq }");
  for (const key of Object.keys(v)) if (key !== "client" && key !== "seq" && key !== "after") bad(`a write's id has no key ${JSON.stringify(key.slice(0, 32))} (only client, seq and after)`);
  if (!isClientId(v.client)) bad("id.client must be 1..64 characters of [A-Za-z0-9_-]");
  const seq = v.seq;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) bad("id.seq must be a positive safe integer");
  if (v.after === undefined || v.after === null) return { client: v.client, seq };
  const after = v.after;
  if (typeof after !== "number" || !Number.isSafeInteger(after) || after < 1 || after >= seq) bad("id.after must be a positive safe integer below id.seq");
  return { client: v.client, seq, after };
}

// ---------------------------------------------------------------------------------------------------------------
// Snapshots: RDB files stored on journal nodes, named by the txid they hold everything up to.

/** A snapshot as a journal node holds it (fsynced, checksummed). */
export interface SnapshotInfo {
  txid: number;
  bytes: number;
  /** SHA-256 of the RDB bytes, hex. */
  sha256: string;
}

export type SnapshotRequest =
  /** Opens an upload of a snapshot; its chunks follow in order. */
  | { type: "snapshotBegin"; clusterId: string; txid: number; bytes: number; sha256: string }
  | { type: "snapshotChunk"; txid: number; offset: number; data: Uint8Array }
  /** The last chunk was sent: check size and SHA-256, fsync, and keep it. */
  | { type: "snapshotEnd"; txid: number }
  /** The snapshots held here, and the newest this node knows a majority holds. */
  | { type: "snapshotList" }
  | { type: "snapshotRead"; txid: number; offset: number; length: number };

export type SnapshotReply =
  | { ok: true; snapshots: SnapshotInfo[]; durableTxid: number }
  | { ok: true; data: Uint8Array }
  | { ok: true; stored: boolean }
  | ErrorReply;

function sha256Hex(o: Record<string, unknown>, key: string): string {
  const v = text(o, key);
  if (!/^[0-9a-f]{64}$/.test(v)) bad(`${key} must be a hex SHA-256`);
  return v;
}

export function parseSnapshotRequest(v: unknown): SnapshotRequest {
  if (!isObject(v)) bad("request must be a map");
  switch (v.type) {
    case "snapshotBegin":
      return { type: "snapshotBegin", clusterId: text(v, "clusterId"), txid: uint(v, "txid"), bytes: uint(v, "bytes"), sha256: sha256Hex(v, "sha256") };
    case "snapshotChunk":
      return { type: "snapshotChunk", txid: uint(v, "txid"), offset: uint(v, "offset"), data: bytes(v, "data") };
    case "snapshotEnd":
      return { type: "snapshotEnd", txid: uint(v, "txid") };
    case "snapshotList":
      return { type: "snapshotList" };
    case "snapshotRead":
      return { type: "snapshotRead", txid: uint(v, "txid"), offset: uint(v, "offset"), length: uint(v, "length") };
    default:
      return bad(`unknown snapshot request type ${JSON.stringify(v.type)}`);
  }
}

/** A snapshot's {txid, bytes, sha256}: on the bus, and as the descriptor a journal node keeps beside the RDB. */
export function parseSnapshotInfo(v: unknown): SnapshotInfo {
  if (!isObject(v)) bad("snapshot must be a map");
  return { txid: uint(v, "txid"), bytes: uint(v, "bytes"), sha256: sha256Hex(v, "sha256") };
}

export function parseSnapshotReply(v: unknown): SnapshotReply {
  if (!isObject(v)) bad("reply must be a map");
  if (v.ok === false) return parseErrorReply(v);
  if (v.ok !== true) bad("reply.ok must be a boolean");
  if (Array.isArray(v.snapshots)) return { ok: true, snapshots: v.snapshots.map(parseSnapshotInfo), durableTxid: uint(v, "durableTxid") };
  if (v.data !== undefined) return { ok: true, data: bytes(v, "data") };
  return { ok: true, stored: bool(v, "stored") };
}

// ---------------------------------------------------------------------------------------------------------------
// Control of data nodes (issue #11): a planned switchover.

export type ControlRequest =
  /** To the master: drain, then hand over to `to` (or to the best standby). */
  | { type: "handover"; to: string | null }
  /** From the draining master to the standby it chose: campaign now, without waiting for the master's silence. */
  | { type: "campaign"; from: string }
  /** From a standby that has not heard the master for a while: which role and epoch do you hold? */
  | { type: "probe" };

/** A data node's role and epoch (0 unless master), as a probe's answer reports them. */
export interface RoleReply {
  ok: true;
  type: "role";
  role: "replica" | "candidate" | "master";
  epoch: number;
}

export type ControlReply = { ok: true; type: "handedOver"; from: string; to: string; epoch: number } | { ok: true; type: "campaigning" } | RoleReply | ErrorReply;

/** A probe's answer, checked (null: not a role reply — from a node of another version, or garbled). */
export function parseRoleReply(v: unknown): RoleReply | null {
  if (!isObject(v) || v.ok !== true || v.type !== "role") return null;
  if (v.role !== "replica" && v.role !== "candidate" && v.role !== "master") return null;
  if (typeof v.epoch !== "number" || !Number.isSafeInteger(v.epoch) || v.epoch < 0) return null;
  return { ok: true, type: "role", role: v.role, epoch: v.epoch };
}

const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function parseControlRequest(v: unknown): ControlRequest {
  if (!isObject(v)) bad("a control request must be a map");
  if (v.type === "handover") {
    if (v.to !== undefined && v.to !== null && (typeof v.to !== "string" || !NODE_ID.test(v.to))) bad("to must be a data node id");
    return { type: "handover", to: typeof v.to === "string" ? v.to : null };
  }
  if (v.type === "campaign") {
    if (typeof v.from !== "string" || !NODE_ID.test(v.from)) bad("from must be a data node id");
    return { type: "campaign", from: v.from };
  }
  if (v.type === "probe") return { type: "probe" };
  bad("unknown control request type");
}

// ---------------------------------------------------------------------------------------------------------------
// Read index (issue #12 item 3): a node's linearizable read asks the master for a committed txid it confirmed with a
// majority of journal nodes after the request arrived.

/** The request on `readIndex`: nothing but its type (the master answers what it holds when it confirmed). */
export interface ReadIndexRequest {
  type: "readIndex";
}

/** The master's answer: its committed txid and epoch, once its epoch was confirmed by a majority of journal nodes. */
export type ReadIndexReply = { ok: true; txid: number; epoch: number } | ErrorReply;

export function parseReadIndexRequest(v: unknown): ReadIndexRequest {
  if (!isObject(v) || v.type !== "readIndex") bad("a read-index request is { type: \"readIndex\" }");
  return { type: "readIndex" };
}

/** Validates the master's answer (a node trusts no body it did not check). */
export function parseReadIndexReply(v: unknown): ReadIndexReply {
  if (!isObject(v)) bad("a read-index reply must be a map");
  if (v.ok === false) return parseErrorReply(v);
  if (v.ok !== true) bad("reply.ok must be a boolean");
  return { ok: true, txid: uint(v, "txid"), epoch: u32(v, "epoch") };
}

// ---------------------------------------------------------------------------------------------------------------
// Pub/sub (issue #12 item 5): a PUBLISH on one node's front door, published on `pubsub` for every other node's door.

/**
 * One published message, on `pubsub(<node>)` (msgpack; the node it was published on is the subject's last token): the
 * channel and the message (bytes, any), and `shard: true` for SPUBLISH. Never journaled.
 */
export interface PubSubMessage {
  shard: boolean;
  channel: Uint8Array;
  message: Uint8Array;
}

/** Validates a message off the bus: anyone who may publish there could have sent it. Throws BAD_REQUEST. */
export function parsePubSubMessage(v: unknown): PubSubMessage {
  if (!isObject(v)) bad("a pub/sub message must be a map");
  if (v.shard !== undefined && typeof v.shard !== "boolean") bad("shard must be a boolean");
  for (const key of Object.keys(v)) if (!PUBSUB_KEYS.has(key)) bad(`unknown key ${key.slice(0, 32)}`);
  return { shard: v.shard === true, channel: bytes(v, "channel"), message: bytes(v, "message") };
}

const PUBSUB_KEYS: ReadonlySet<string> = new Set(["shard", "channel", "message"]);
