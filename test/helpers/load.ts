/** Client load for fault tests, recorded in a History, and the checks several fault tests share. */
import { Redis } from "ioredis";
import { request } from "../../src/nats/bus.js";
import { subjects } from "../../src/protocol/subjects.js";
import { scanRecords } from "../../src/segment/record.js";
import type { TestCluster } from "./harness.js";
import { History, describeOp, uniqueSet, type Op } from "./history.js";

export interface Load {
  /** Writes answered so far (any outcome). */
  done(): number;
  /** Acked writes so far. */
  acks(): number;
  /** Every write that was not acked, described. */
  readonly failures: string[];
  /** Every completed write with the time it was sent and its latency. */
  readonly samples: { atMs: number; latencyMs: number; op: Op }[];
  stop(): Promise<void>;
}

/** `clients` closed-loop clients writing unique keys (`uniqueSet`) until stop(), each write recorded in `history`. */
export function startLoad(tc: TestCluster, history: History, clients: number, tag: string, timeoutMs = 10000): Load {
  let running = true;
  let done = 0;
  let acks = 0;
  const failures: string[] = [];
  const samples: Load["samples"] = [];
  const finished = Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; running; i++) {
        const atMs = performance.now();
        const op = await history.run(c, uniqueSet(c, i, tag), (args) => tc.write(args, timeoutMs));
        samples.push({ atMs, latencyMs: performance.now() - atMs, op });
        done++;
        if (op.status === "ok") acks++;
        else failures.push(describeOp(op));
      }
    }),
  );
  return {
    done: () => done,
    acks: () => acks,
    failures,
    samples,
    async stop() {
      running = false;
      await finished;
    },
  };
}

/** The keys of the history's acked writes that a Redis does not hold. */
export async function ackedMissingFrom(port: number, history: History, password: string): Promise<string[]> {
  const r = new Redis({ port, host: "127.0.0.1", password });
  try {
    const keys = history.oks().map((op) => String(op.args[1]));
    const missing: string[] = [];
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      (await r.mget(...chunk)).forEach((v, j) => v === null && missing.push(chunk[j]));
    }
    return missing;
  } finally {
    r.disconnect();
  }
}

/** `txid:checksum` of every record a journal node serves from `from` to `to` (uncommitted included). */
export async function journalFingerprint(tc: TestCluster, node: string, from: number, to: number): Promise<string[]> {
  const out: string[] = [];
  for (let txid = from; txid <= to; ) {
    const r = (await request(await tc.connectAs("m1"), subjects(tc.cluster.cluster).journalRead(node), { type: "read", fromTxid: txid, bytesMax: 512 * 1024, recordsMax: 8192, uncommitted: true }, 5000)) as {
      ok: boolean;
      read?: { records: Uint8Array; count: number };
      code?: string;
    };
    if (!r.ok || r.read === undefined || r.read.count === 0) throw new Error(`${node} does not serve txid ${txid}: ${r.code ?? "nothing"}`);
    const records = Buffer.from(r.read.records.buffer, r.read.records.byteOffset, r.read.records.byteLength);
    for (const rec of scanRecords(records).records) {
      if (rec.txid > to) break;
      out.push(`${rec.txid}:${records.readUInt32BE(rec.offset + 20)}`);
      txid = rec.txid + 1;
    }
  }
  return out;
}
