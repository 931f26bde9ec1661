/**
 * One process of the quorum skeleton (bench/skeleton.ts): the write path's required steps and nothing else, so that
 * the bench can tell the cost of the design on this host from the cost of redis-qjm's own code.
 *
 *   node skeleton_node.js journal <natsUrl> <name> <file>        appends each batch to <file>, fdatasyncs it, acks it
 *   node skeleton_node.js master <natsUrl> <redisPort>           a write: SET on its Redis, then into the next batch; a
 *                                                                 batch is answered once a majority of journals acked it
 *   node skeleton_node.js replica <natsUrl> <name> <redisPort> <trace 0|1>
 *                                                                 keeps the fanned-out writes, applies them to its Redis
 *                                                                 once a commit index covers them
 *
 * As redis-qjm does: one batch in flight at a time, the next one filling meanwhile (group commit), one fan-out publish
 * per batch that the journals and the replicas take, each journal's append and fdatasync synchronous calls, the commit
 * index carried by the next batch or, when none follows within COMMIT_HINT_DELAY_MS, published on its own. Left out:
 * the replication link (the master reads no effect back, a replica applies with plain SETs), records, epochs, checks,
 * logging, metrics.
 */
import fs from "node:fs";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { defaults } from "../src/config/config.js";
import { decode, encode } from "../src/protocol/codec.js";
import { traceNow } from "../src/util/trace_clock.js";
import type { TraceApplied } from "../src/protocol/messages.js";
import { SKELETON_JOURNALS, SKELETON_SUBJECTS as S, type SkeletonBatch } from "./skeleton_subjects.js";

/** Acks that commit a batch: a majority of the journals. */
const MAJORITY = Math.floor(SKELETON_JOURNALS / 2) + 1;
/** Bytes of the batch number in front of every batch and ack. */
const SEQ_BYTES = 4;
/** A commit no batch carried goes out on its own after this, as redis-qjm's commitHintDelayMs. */
const COMMIT_HINT_DELAY_MS = defaults.commitHintDelayMs;

function redisAt(port: number): Redis {
  return new Redis({ port, host: "127.0.0.1", enableAutoPipelining: true, maxRetriesPerRequest: 0 });
}

async function journal(nc: NatsConnection, name: string, file: string): Promise<void> {
  const fd = fs.openSync(file, "a");
  let at = 0;
  nc.subscribe(S.batch, {
    callback: (err, msg) => {
      if (err !== null || msg.data.length < SEQ_BYTES || msg.reply === undefined) return;
      fs.writeSync(fd, msg.data, 0, msg.data.length, at);
      at += msg.data.length;
      fs.fdatasyncSync(fd);
      nc.publish(msg.reply, msg.data.subarray(0, SEQ_BYTES));
    },
  });
  await nc.flush();
  nc.publish(S.ready, name);
}

interface Pending {
  msg: Msg;
  key: string;
  value: string;
}

async function master(nc: NatsConnection, redisPort: number): Promise<void> {
  const redis = redisAt(redisPort);
  let filling: Pending[] = [];
  let inFlight: { seq: number; first: number; writes: Pending[]; acks: number } | null = null;
  let seq = 0;
  let nextTxid = 1;
  let committed = 0;
  let hinted = 0;
  const send = (): void => {
    if (inFlight !== null || filling.length === 0) return;
    inFlight = { seq: ++seq, first: nextTxid, writes: filling, acks: 0 };
    nextTxid += filling.length;
    filling = [];
    const head = Buffer.alloc(SEQ_BYTES);
    head.writeUInt32BE(inFlight.seq >>> 0);
    const batch: SkeletonBatch = { first: inFlight.first, committed, kv: inFlight.writes.map((w) => [w.key, w.value]) };
    nc.publish(S.batch, Buffer.concat([head, encode(batch)]), { reply: S.ack });
    hinted = committed;
  };
  const hintLater = (): void => {
    setTimeout(() => {
      if (committed > hinted) nc.publish(S.committed, encode({ committed }));
      hinted = committed;
    }, COMMIT_HINT_DELAY_MS);
  };
  nc.subscribe(S.ack, {
    callback: (err, msg) => {
      if (err !== null || inFlight === null || msg.data.length !== SEQ_BYTES) return;
      if (Buffer.from(msg.data).readUInt32BE(0) !== inFlight.seq >>> 0 || ++inFlight.acks !== MAJORITY) return;
      const at = traceNow();
      inFlight.writes.forEach((w, i) => w.msg.respond(encode({ ok: true, txid: inFlight!.first + i, reply: "OK", committed: at })));
      committed = inFlight.first + inFlight.writes.length - 1;
      inFlight = null;
      send();
      if (committed > hinted) hintLater();
    },
  });
  nc.subscribe(S.write, {
    callback: (err, msg) => {
      if (err !== null) return;
      const body = decode(msg.data) as unknown;
      if (!Array.isArray(body) || body.length !== 3) return void msg.respond(encode({ ok: false, code: "BAD_REQUEST" }));
      const [key, value] = [String(body[1]), String(body[2])];
      redis.set(key, value).then(
        () => {
          filling.push({ msg, key, value });
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

async function replica(nc: NatsConnection, name: string, redisPort: number, trace: boolean): Promise<void> {
  const redis = redisAt(redisPort);
  /** Fanned-out writes not applied yet, from txid `first` on. */
  let kept: [string, string][] = [];
  let first = 1;
  let committed = 0;
  let applying = false;
  const apply = async (): Promise<void> => {
    if (applying) return;
    applying = true;
    while (committed >= first && kept.length > 0) {
      const run = kept.splice(0, Math.min(kept.length, committed - first + 1));
      const from = first;
      first += run.length;
      await Promise.all(run.map(([k, v]) => redis.set(k, v)));
      const done: TraceApplied = { replica: name, fromTxid: from, toTxid: from + run.length - 1, at: traceNow() };
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
      const b = decode(msg.data.subarray(SEQ_BYTES)) as SkeletonBatch;
      // Batches come in order on one subscription: a gap would be a lost message, which the bench then sees as lag.
      if (b.first === first + kept.length) kept.push(...b.kv);
      learn(b.committed);
    },
  });
  nc.subscribe(S.committed, { callback: (err, msg) => void (err === null && learn((decode(msg.data) as { committed: number }).committed)) });
  await redis.ping();
  await nc.flush();
  nc.publish(S.ready, name);
}

async function main(): Promise<void> {
  const [role, url, ...rest] = process.argv.slice(2);
  const nc = await connect({ servers: url, name: `skeleton-${role}`, reconnect: false });
  // The bench stops this process by pid; a lost server ends it too.
  void nc.closed().then(() => process.exit(0));
  if (role === "journal") await journal(nc, rest[0], rest[1]);
  else if (role === "master") await master(nc, Number(rest[0]));
  else if (role === "replica") await replica(nc, rest[0], Number(rest[1]), rest[2] === "1");
  else throw new Error(`unknown role ${role}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`skeleton: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
