/**
 * One process of the quorum skeleton (bench/skeleton.ts): the write path's required steps and nothing else, so that
 * the bench can tell the cost of the design on this host from the cost of redis-qjm's own code.
 *
 *   node skeleton_node.js journal <natsUrl> <name> <file>   appends each batch to <file>, fdatasyncs it, acks it
 *   node skeleton_node.js master <natsUrl> <redisPort>      a write: SET on its Redis, then into the next batch; a batch
 *                                                            is answered once a majority of journals acked it
 *
 * As redis-qjm's master does: one batch in flight at a time, the next one filling meanwhile (group commit), one
 * fan-out publish per batch, each journal's append and fdatasync synchronous calls. Left out: the replication link
 * (the master reads no effect back), records, epochs, checks, replicas, logging, metrics.
 */
import fs from "node:fs";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { decode, encode } from "../src/protocol/codec.js";
import { SKELETON_SUBJECTS as S, SKELETON_JOURNALS } from "./skeleton_subjects.js";

/** Acks that commit a batch: a majority of the journals. */
const MAJORITY = Math.floor(SKELETON_JOURNALS / 2) + 1;
/** Bytes of the batch number in front of every batch and ack. */
const SEQ_BYTES = 4;

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

async function master(nc: NatsConnection, redisPort: number): Promise<void> {
  const redis = new Redis({ port: redisPort, host: "127.0.0.1", enableAutoPipelining: true, maxRetriesPerRequest: 0 });
  let filling: Msg[] = [];
  let inFlight: { seq: number; writes: Msg[]; acks: number } | null = null;
  let seq = 0;
  let txid = 0;
  const send = (): void => {
    if (inFlight !== null || filling.length === 0) return;
    inFlight = { seq: ++seq, writes: filling, acks: 0 };
    filling = [];
    const head = Buffer.alloc(SEQ_BYTES);
    head.writeUInt32BE(inFlight.seq >>> 0);
    nc.publish(S.batch, Buffer.concat([head, ...inFlight.writes.map((m) => m.data)]), { reply: S.ack });
  };
  nc.subscribe(S.ack, {
    callback: (err, msg) => {
      if (err !== null || inFlight === null || msg.data.length !== SEQ_BYTES) return;
      if (Buffer.from(msg.data).readUInt32BE(0) !== inFlight.seq >>> 0 || ++inFlight.acks !== MAJORITY) return;
      for (const w of inFlight.writes) w.respond(encode({ ok: true, txid: ++txid, reply: "OK" }));
      inFlight = null;
      send();
    },
  });
  nc.subscribe(S.write, {
    callback: (err, msg) => {
      if (err !== null) return;
      const body = decode(msg.data) as unknown;
      if (!Array.isArray(body) || body.length !== 3) return void msg.respond(encode({ ok: false, code: "BAD_REQUEST" }));
      redis.set(String(body[1]), String(body[2])).then(
        () => {
          filling.push(msg);
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

async function main(): Promise<void> {
  const [role, url, ...rest] = process.argv.slice(2);
  const nc = await connect({ servers: url, name: `skeleton-${role}`, reconnect: false });
  // The bench stops this process by pid; a lost server ends it too.
  void nc.closed().then(() => process.exit(0));
  if (role === "journal") await journal(nc, rest[0], rest[1]);
  else if (role === "master") await master(nc, Number(rest[0]));
  else throw new Error(`unknown role ${role}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`skeleton: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
