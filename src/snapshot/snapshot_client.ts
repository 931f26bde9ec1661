/**
 * Moving snapshots between an actor and the journal nodes, in bounded chunks with a bounded window per node:
 * upload to every node at once (a snapshot counts once a majority fsynced it; then every node hears it is durable),
 * and download of the newest durable snapshot from any node that holds it, checked end to end by SHA-256 (a bad
 * copy is dropped and another node's used). Memory stays at chunk × window whatever the snapshot's size.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { quorumSize, type Config } from "../config/config.js";
import { request } from "../nats/bus.js";
import { ErrorCode, QjmError, toErrorReply } from "../protocol/errors.js";
import { parseSnapshotReply, type JournalRequest, type SnapshotInfo, type SnapshotReply, type SnapshotRequest } from "../protocol/messages.js";
import { snapshotSubjectOf, subjects } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "../master/journal_client.js";
import { transferProgress, type TransferProgress } from "../util/progress.js";
import { firstSuccesses } from "../util/quorum.js";

export type SnapshotLimits = Pick<Config, "journalNodes" | "snapshotChunkBytes" | "snapshotChunksInflightMax" | "journalRequestTimeoutMs" | "snapshotUploadIdleMs">;

/** How often an upload that found another copy of its snapshot under way on a node asks that node again. */
export const UNDER_WAY_POLL_MS = 100;

/** SHA-256 and size of a file, streamed. */
export async function fileDigest(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

export class SnapshotClient {
  private readonly s;
  constructor(
    private readonly nc: NatsConnection,
    private readonly jc: JournalClient,
    cluster: string,
    private readonly limits: SnapshotLimits,
    private readonly log: Logger,
  ) {
    this.s = subjects(cluster);
  }

  async call(node: string, req: SnapshotRequest): Promise<SnapshotReply> {
    try {
      return parseSnapshotReply(await request(this.nc, snapshotSubjectOf(this.s, node, req.type), req, this.limits.journalRequestTimeoutMs));
    } catch (err) {
      return toErrorReply(err);
    }
  }

  /** Every node's snapshots, and the newest txid any node knows to be held by a majority. */
  async list(): Promise<{ byNode: Map<string, SnapshotInfo[]>; durableTxid: number }> {
    const byNode = new Map<string, SnapshotInfo[]>();
    let durableTxid = 0;
    await Promise.all(
      this.limits.journalNodes.map(async (node) => {
        const r = await this.call(node, { type: "snapshotList" });
        if (!r.ok || !("snapshots" in r)) return;
        byNode.set(node, r.snapshots);
        durableTxid = Math.max(durableTxid, r.durableTxid);
      }),
    );
    return { byNode, durableTxid };
  }

  /**
   * The newest durable snapshot txid that the first majority of nodes to answer report (a durable snapshot is marked on
   * a majority, which any majority meets), and the cluster id the first of them reports — without waiting for the
   * slowest: a stopped node answers only when its request times out, and a replica's snapshot check waited for it with
   * its applying stopped, journalRequestTimeoutMs each time (issue #13 P6). 0 and null when no majority answered.
   */
  async durable(): Promise<{ durableTxid: number; clusterId: string | null }> {
    const attempts = this.limits.journalNodes.map(async (node) => {
      const listed = await this.call(node, { type: "snapshotList" });
      if (!listed.ok || !("snapshots" in listed)) return null;
      const state = await this.jc.call(node, { type: "getState" });
      return { durableTxid: listed.durableTxid, clusterId: state.ok && "state" in state ? state.state.clusterId : null };
    });
    const answers = await firstSuccesses(attempts, quorumSize(this.limits.journalNodes.length));
    if (answers.length < quorumSize(this.limits.journalNodes.length)) return { durableTxid: 0, clusterId: null };
    return { durableTxid: Math.max(...answers.map((a) => a.durableTxid)), clusterId: answers.find((a) => a.clusterId !== null)?.clusterId ?? null };
  }

  /**
   * Uploads `file` (a snapshot holding every record up to txid) to every journal node; once a majority fsynced it,
   * tells those nodes it is durable (a later holder when its copy completes). Returns the majority that holds it;
   * throws NO_QUORUM if fewer than a majority do.
   */
  async upload(file: string, txid: number, clusterId: string, onProgress?: (p: TransferProgress) => void): Promise<string[]> {
    const { bytes, sha256 } = await fileDigest(file);
    const info: SnapshotInfo = { txid, bytes, sha256 };
    const started = Date.now();
    let slowest = 0;
    const attempts = this.limits.journalNodes.map(async (node): Promise<string | null> => {
      const handle = await fsp.open(file, "r");
      const read = async (offset: number, length: number): Promise<Uint8Array> => {
        const buf = Buffer.allocUnsafe(length);
        const { bytesRead } = await handle.read(buf, 0, length, offset);
        if (bytesRead !== length) throw new Error(`${file} shrank while it was uploaded`);
        return buf;
      };
      const sent = (at: number): void => {
        if (at <= slowest) return;
        slowest = at;
        onProgress?.(transferProgress(at, bytes, Date.now() - started));
      };
      try {
        await this.uploadTo(node, info, clusterId, read, sent);
        return node;
      } catch (err) {
        this.log.warn({ node, txid, err: (err as Error).message }, "snapshot upload to a journal node failed");
        return null;
      } finally {
        await handle.close();
      }
    });
    // Durable once a majority holds it: a stopped or partitioned node answers only when its requests time out, and
    // waiting for it held back every purge (issue #13 P6). Its copy goes on (its own open handle); if it completes,
    // that node is marked then.
    const quorum = quorumSize(this.limits.journalNodes.length);
    const holders = await firstSuccesses(attempts, quorum);
    if (holders.length < quorum) {
      throw new QjmError(ErrorCode.NO_QUORUM, `snapshot ${txid} stored on ${holders.length} of ${this.limits.journalNodes.length} journal nodes`);
    }
    const durable: JournalRequest = { type: "snapshotDurable", txid, clusterId };
    await this.jc.callAll(holders, durable);
    this.limits.journalNodes.forEach((node, i) => {
      if (!holders.includes(node)) void attempts[i].then((held) => (held === null ? undefined : this.jc.call(node, durable)), () => undefined);
    });
    return holders;
  }

  /**
   * Begins an upload to `node`. Another replica's copy of the same snapshot under way there (SNAPSHOT_UNDER_WAY: it
   * snapshotted at the same txid) is waited for: once stored, the node holds this snapshot and answers so; if it is
   * given up, this upload begins. Bounded: a copy silent for snapshotUploadIdleMs is dropped by the node, and this
   * waits at most that plus a request timeout.
   */
  private async begin(node: string, info: SnapshotInfo, clusterId: string): Promise<SnapshotReply> {
    const deadline = Date.now() + this.limits.snapshotUploadIdleMs + this.limits.journalRequestTimeoutMs;
    for (;;) {
      const begun = await this.call(node, { type: "snapshotBegin", clusterId, ...info });
      if (begun.ok || begun.code !== ErrorCode.SNAPSHOT_UNDER_WAY || Date.now() >= deadline) return begun;
      await new Promise((resolve) => setTimeout(resolve, UNDER_WAY_POLL_MS));
    }
  }

  /**
   * Sends one snapshot to `node`, chunk by chunk as `read` gives them, with a window of unanswered chunks (they leave
   * in order on one connection and the node handles them in order: the window keeps the pipe full). The node checks
   * size and SHA-256 at the end.
   */
  private async uploadTo(node: string, info: SnapshotInfo, clusterId: string, read: (offset: number, length: number) => Promise<Uint8Array>, onSent: (bytes: number) => void = () => {}): Promise<void> {
    const begun = await this.begin(node, info, clusterId);
    if (!begun.ok) throw new Error(`${begun.code}: ${begun.message}`);
    if ("stored" in begun && begun.stored) return;
    const chunk = this.limits.snapshotChunkBytes;
    const window: { end: number; reply: Promise<SnapshotReply> }[] = [];
    const settle = async (): Promise<void> => {
      const { end, reply } = window.shift()!;
      const r = await reply;
      if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
      onSent(end);
    };
    for (let offset = 0; offset < info.bytes; offset += chunk) {
      const data = await read(offset, Math.min(chunk, info.bytes - offset));
      window.push({ end: offset + data.length, reply: this.call(node, { type: "snapshotChunk", txid: info.txid, offset, data }) });
      if (window.length >= this.limits.snapshotChunksInflightMax) await settle();
    }
    while (window.length > 0) await settle();
    const ended = await this.call(node, { type: "snapshotEnd", txid: info.txid });
    if (!ended.ok) throw new Error(`${ended.code}: ${ended.message}`);
  }

  /** Copies of the newest snapshot at or below the durable mark, in configured node order (the same node first every time). */
  private newestDurable(byNode: Map<string, SnapshotInfo[]>, durableTxid: number): (SnapshotInfo & { node: string })[] {
    const copies = [...byNode].flatMap(([node, snaps]) => snaps.filter((s) => s.txid <= durableTxid).map((s) => ({ node, ...s })));
    const newest = Math.max(0, ...copies.map((c) => c.txid));
    const rank = (node: string): number => this.limits.journalNodes.indexOf(node);
    return copies.filter((c) => c.txid === newest).sort((a, b) => rank(a.node) - rank(b.node));
  }

  /**
   * Keeps the newest durable snapshot on `node` (a node that was wiped, or missed the upload): copied from a node that
   * holds it, then marked durable there too, so the snapshot the purged log depends on stays on a majority. False if it
   * could not be copied now.
   */
  async ensureOn(node: string, clusterId: string): Promise<boolean> {
    const { byNode, durableTxid } = await this.list();
    if (durableTxid === 0) return true;
    if (!byNode.has(node)) return false;
    const copies = this.newestDurable(byNode, durableTxid);
    if (copies.length === 0) return true;
    if (!copies.some((c) => c.node === node)) {
      const source = copies[0];
      const read = async (offset: number, length: number): Promise<Uint8Array> => {
        const r = await this.call(source.node, { type: "snapshotRead", txid: source.txid, offset, length });
        if (!r.ok || !("data" in r) || r.data.length !== length) throw new Error(`snapshot ${source.txid} from ${source.node}: no chunk at ${offset}`);
        return r.data;
      };
      const { node: _from, ...info } = source;
      const copied = await this.uploadTo(node, info, clusterId, read).then(
        () => true,
        (err: Error) => (this.log.warn({ node, from: source.node, txid: source.txid, err: err.message }, "could not copy the durable snapshot"), false),
      );
      if (!copied) return false;
      this.log.info({ node, from: source.node, txid: source.txid }, "copied the durable snapshot to a journal node");
    }
    const marked = await this.jc.call(node, { type: "snapshotDurable", txid: durableTxid, clusterId });
    return marked.ok;
  }

  /**
   * Downloads the newest durable snapshot into `dest` (replaced), trying each node that holds it until one copy's
   * SHA-256 matches. Null if no durable snapshot exists.
   */
  async download(dest: string, onProgress?: (p: TransferProgress) => void): Promise<(SnapshotInfo & { node: string }) | null> {
    const { byNode, durableTxid } = await this.list();
    if (durableTxid === 0) return null;
    const candidates = this.newestDurable(byNode, durableTxid);
    const failures: string[] = [];
    for (const c of candidates) {
      try {
        await this.downloadFrom(c.node, c, dest, onProgress);
        return c;
      } catch (err) {
        failures.push(`${c.node}: ${(err as Error).message}`);
        this.log.warn({ node: c.node, txid: c.txid, err: (err as Error).message }, "snapshot copy refused; trying another journal node");
      }
    }
    throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `no good copy of snapshot ${candidates[0]?.txid ?? durableTxid}: ${failures.join("; ") || "no node holds it"}`);
  }

  private async downloadFrom(node: string, info: SnapshotInfo, dest: string, onProgress?: (p: TransferProgress) => void): Promise<void> {
    const out = await fsp.open(dest, "w");
    const hash = createHash("sha256");
    const started = Date.now();
    try {
      const chunk = this.limits.snapshotChunkBytes;
      const window: { offset: number; reply: Promise<SnapshotReply> }[] = [];
      let next = 0;
      let written = 0;
      while (written < info.bytes) {
        while (next < info.bytes && window.length < this.limits.snapshotChunksInflightMax) {
          window.push({ offset: next, reply: this.call(node, { type: "snapshotRead", txid: info.txid, offset: next, length: chunk }) });
          next += chunk;
        }
        const { offset, reply } = window.shift()!;
        const r = await reply;
        if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
        if (!("data" in r) || r.data.length !== Math.min(chunk, info.bytes - offset)) throw new Error(`short chunk at ${offset}`);
        hash.update(r.data);
        await out.write(r.data, 0, r.data.length, offset);
        written += r.data.length;
        onProgress?.(transferProgress(written, info.bytes, Date.now() - started));
      }
      const digest = hash.digest("hex");
      if (digest !== info.sha256) throw new QjmError(ErrorCode.SNAPSHOT_CORRUPT, `snapshot ${info.txid} from ${node} has SHA-256 ${digest.slice(0, 12)}…, not ${info.sha256.slice(0, 12)}…`);
      await out.sync();
    } finally {
      await out.close();
    }
  }
}
