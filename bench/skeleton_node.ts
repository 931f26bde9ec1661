/**
 * One process of the quorum skeleton (bench/skeleton.ts): the write path's required steps and nothing else, so that
 * the bench can tell the cost of the design on this host from the cost of redis-qjm's own code.
 *
 *   node skeleton_node.js journal <natsUrl> <name> <file>        appends each batch to <file>, fdatasyncs it, acks it
 *   node skeleton_node.js master <natsUrl> <redisPort> <trace>   a write: SET on its Redis, then into the next batch;
 *                                                                 answered once a majority of journals acked its batch
 *   node skeleton_node.js replica <natsUrl> <name> <redisPort> <trace>
 *                                                                 keeps the fanned-out writes, applies them to its Redis
 *                                                                 once a commit index covers them
 *
 * As redis-qjm does: one batch in flight at a time, the next one filling meanwhile (group commit), one fan-out publish
 * per batch that the journals and the replicas take, each journal's append and fdatasync synchronous calls, the commit
 * index carried by the next batch or published on its own when none follows (redis-qjm's own CommitHints decides).
 * Left out: the replication link (the master reads no effect back), records, epochs, checks, logging, metrics. The
 * master encodes a batch's SETs once, in RESP, and a replica writes those bytes to its Redis as they are.
 */
import fs from "node:fs";
import net from "node:net";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { defaults, quorumSize } from "../src/config/config.js";
import { CommitHints } from "../src/master/commit_hints.js";
import { decode, encode } from "../src/protocol/codec.js";
import type { TraceApplied } from "../src/protocol/messages.js";
import { encodeCommand } from "../src/redis/resp_parser.js";
import { traceNow } from "../src/util/trace_clock.js";
import { SEQ_BYTES, SKELETON_JOURNALS, SKELETON_SUBJECTS as S, type SkeletonAck, type SkeletonBatch } from "./skeleton_subjects.js";

const MAJORITY = quorumSize(SKELETON_JOURNALS);
/** The skeleton has one writer, forever: redis-qjm's CommitHints wants an epoch and a segment all the same. */
const ONLY_EPOCH = 1;
/** What Redis answers to each SET a replica sends, and the first byte of an error reply. */
const OK = Buffer.from("+OK\r\n");
const MINUS = 0x2d;

/** A process that can no longer do its part ends, loudly: the bench then sees a failed target, not a fast one. */
function fail(why: string): never {
  process.stderr.write(`skeleton: ${why}\n`);
  process.exit(1);
}

/** A message body, or the process ends (a skeleton meets only its own messages). */
function decoded<T>(data: Uint8Array): T {
  try {
    return decode(data) as T;
  } catch (err) {
    return fail(`undecodable message: ${(err as Error).message}`);
  }
}

async function journal(nc: NatsConnection, name: string, file: string): Promise<void> {
  const fd = fs.openSync(file, "a");
  nc.subscribe(S.batch, {
    callback: (err, msg) => {
      if (err !== null || msg.data.length < SEQ_BYTES || msg.reply === undefined) return;
      fs.writeSync(fd, msg.data);
      fs.fdatasyncSync(fd);
      const ack: SkeletonAck = { seq: Buffer.from(msg.data).readUInt32BE(0), journal: name };
      nc.publish(msg.reply, encode(ack));
    },
  });
  await nc.flush();
  nc.publish(S.ready, name);
}

/**
 * The key and value of a client's `["SET", key, value]`, or null: a client's bad body is answered (as redis-qjm's
 * master answers it), where a bad message of the skeleton's own processes ends the process.
 */
function setArgs(data: Uint8Array): [string, string] | null {
  let body: unknown;
  try {
    body = decode(data);
  } catch {
    return null;
  }
  return Array.isArray(body) && body.length === 3 ? [String(body[1]), String(body[2])] : null;
}

interface Pending {
  msg: Msg;
  /** Its SET in RESP, as the replicas write it. */
  set: Buffer;
}

interface Batch {
  seq: number;
  first: number;
  writes: Pending[];
  acked: Set<string>;
}

async function master(nc: NatsConnection, redisPort: number, trace: boolean): Promise<void> {
  const redis = new Redis({ port: redisPort, host: "127.0.0.1", enableAutoPipelining: true, maxRetriesPerRequest: 0 });
  const hints = new CommitHints(defaults.commitHintDelayMs, true);
  let hintTimer: NodeJS.Timeout | null = null;
  let filling: Pending[] = [];
  let inFlight: Batch | null = null;
  let seq = 0;
  let nextTxid = 1;
  let committed = 0;
  const send = (): void => {
    if (inFlight !== null || filling.length === 0) return;
    inFlight = { seq: ++seq, first: nextTxid, writes: filling, acked: new Set() };
    nextTxid += filling.length;
    filling = [];
    const head = Buffer.alloc(SEQ_BYTES);
    head.writeUInt32BE(inFlight.seq >>> 0);
    const batch: SkeletonBatch = { first: inFlight.first, count: inFlight.writes.length, committed, sets: Buffer.concat(inFlight.writes.map((w) => w.set)) };
    nc.publish(S.batch, Buffer.concat([head, encode(batch)]), { reply: S.ack });
    hints.fannedOut(ONLY_EPOCH, committed);
  };
  // As src/master/master.ts sendHint: one timer at most, cleared once a fan-out carried what was owed.
  const sendHint = (): void => {
    if (!hints.owes) {
      if (hintTimer !== null) clearTimeout(hintTimer);
      hintTimer = null;
      return;
    }
    if (hintTimer !== null) return;
    const { publish, againInMs } = hints.decide(performance.now());
    if (publish !== null) nc.publish(S.committed, encode({ committed: publish.txid }));
    if (againInMs !== null) hintTimer = setTimeout(() => ((hintTimer = null), sendHint()), againInMs);
  };
  const commit = (b: Batch): void => {
    const at = trace ? traceNow() : 0;
    b.writes.forEach((w, i) => w.msg.respond(encode(trace ? { ok: true, txid: b.first + i, reply: "OK", committedAt: at } : { ok: true, txid: b.first + i, reply: "OK" })));
    committed = b.first + b.writes.length - 1;
    hints.committed({ epoch: ONLY_EPOCH, segmentTxid: 1, txid: committed }, performance.now());
    inFlight = null;
    send();
    sendHint();
  };
  nc.subscribe(S.ack, {
    callback: (err, msg) => {
      if (err !== null || inFlight === null) return;
      const ack = decoded<SkeletonAck>(msg.data);
      if (ack.seq !== inFlight.seq >>> 0 || inFlight.acked.has(ack.journal)) return;
      if (inFlight.acked.add(ack.journal).size === MAJORITY) commit(inFlight);
    },
  });
  nc.subscribe(S.write, {
    callback: (err, msg) => {
      if (err !== null) return;
      const kv = setArgs(msg.data);
      if (kv === null) return void msg.respond(encode({ ok: false, code: "BAD_REQUEST" }));
      const [key, value] = kv;
      redis.set(key, value).then(
        () => {
          filling.push({ msg, set: encodeCommand(["SET", key, value]) });
          send();
        },
        (e: Error) => msg.respond(encode({ ok: false, code: "REDIS", message: e.message })),
      );
    },
  });
  await redis.ping();
  await nc.flush();
  nc.publish(S.ready, "master");
}

/** A raw connection to a Redis: `run(bytes, n)` writes n pipelined SETs and resolves once their n +OKs came back. */
async function rawRedis(port: number): Promise<(bytes: Uint8Array, n: number) => Promise<void>> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.setNoDelay(true);
  socket.on("error", (err) => fail(`replica's Redis: ${err.message}`));
  let want = 0;
  let got: Buffer = Buffer.alloc(0);
  let done: (() => void) | null = null;
  socket.on("data", (chunk: Buffer) => {
    got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
    if (got.length < want) return;
    // Only +OK (5 bytes each) adds up to the count: an error reply ("-…") anywhere, or a surplus, is a failure.
    if (got.length > want || got.includes(MINUS)) fail(`replica's Redis answered ${got.toString().slice(0, 80)}`);
    got = Buffer.alloc(0);
    done?.();
  });
  return (bytes, n) =>
    new Promise<void>((resolve) => {
      want = n * OK.length;
      done = resolve;
      socket.write(bytes);
    });
}

async function replica(nc: NatsConnection, name: string, redisPort: number, trace: boolean): Promise<void> {
  const run = await rawRedis(redisPort);
  /** Fanned-out batches not applied yet, in txid order. */
  const kept: { first: number; count: number; sets: Uint8Array }[] = [];
  /** The last txid heard of in a batch, and the last commit index. */
  let heard = 0;
  let committed = 0;
  let applying = false;
  const apply = async (): Promise<void> => {
    if (applying) return;
    applying = true;
    while (kept.length > 0 && kept[0].first + kept[0].count - 1 <= committed) {
      const b = kept.shift()!;
      await run(b.sets, b.count);
      const done: TraceApplied = { replica: name, fromTxid: b.first, toTxid: b.first + b.count - 1, at: traceNow() };
      if (trace) nc.publish(S.applied, encode(done));
    }
    applying = false;
  };
  const learn = (c: number): void => {
    if (c <= committed) return;
    committed = c;
    void apply();
  };
  nc.subscribe(S.batch, {
    callback: (err, msg) => {
      if (err !== null || msg.data.length < SEQ_BYTES) return;
      const b = decoded<SkeletonBatch>(msg.data.subarray(SEQ_BYTES));
      // A lost batch would stall this replica for good, and the bench would read its silence as no lag at all.
      if (b.first !== heard + 1) fail(`batch from txid ${b.first} after txid ${heard}`);
      heard += b.count;
      kept.push({ first: b.first, count: b.count, sets: b.sets });
      learn(b.committed);
    },
  });
  nc.subscribe(S.committed, { callback: (err, msg) => void (err === null && learn(decoded<{ committed: number }>(msg.data).committed)) });
  await nc.flush();
  nc.publish(S.ready, name);
}

async function main(): Promise<void> {
  const [role, url, ...rest] = process.argv.slice(2);
  const nc = await connect({ servers: url, name: `skeleton-${role}`, reconnect: false });
  // The bench stops this process by pid; losing the server before that is a failure.
  void nc.closed().then((err) => (err ? fail(`nats connection lost: ${err.message}`) : process.exit(0)));
  if (role === "journal") await journal(nc, rest[0], rest[1]);
  else if (role === "master") await master(nc, Number(rest[0]), rest[1] === "1");
  else if (role === "replica") await replica(nc, rest[0], Number(rest[1]), rest[2] === "1");
  else fail(`unknown role ${role}`);
}

main().catch((err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
