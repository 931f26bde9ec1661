/**
 * A front-door read with the consistency its connection asked for (issue #12 items 2 and 3); the thin driver of
 * TxidWaiters (txid_waiters.ts) and, on the master, of its ReadGuard (src/master/read_guard.ts):
 *
 *   1. the floor: `session` — the highest txid the connection has seen (its writes, its earlier reads); `linearizable`
 *      — the master's read index (its committed txid, confirmed by a majority of journal nodes after the read
 *      arrived), and the session's floor; `eventual` — none;
 *   2. the read gate (read_gate.ts: LOADING while the node's Redis is not a committed prefix), then a wait until the
 *      node applied the floor, then the gate again (the node may have changed role meanwhile);
 *   3. the read on the node's Redis; on the master through its ReadGuard, at every level: the reply is given only
 *      once every write of the keys read that it may reflect is committed (no dirty reads), and read again after a
 *      reset or a failed term undid effects;
 *   4. the connection has now seen what this node had applied.
 *
 * Every wait is bounded by respReadTimeoutMs: past it the read is answered `-TRYAGAIN qjm …` and no value is given.
 */
import type { QjmClient } from "../client/client.js";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/config.js";
import type { ReadGuard } from "../master/read_guard.js";
import { request } from "../nats/bus.js";
import { QjmError } from "../protocol/errors.js";
import { parseReadIndexReply } from "../protocol/messages.js";
import { subjects } from "../protocol/subjects.js";
import type { CommandTable } from "../redis/command_table.js";
import type { RespValue } from "../redis/resp_parser.js";
import type { Logger } from "../util/log.js";
import type { ConnectionState } from "./connection_state.js";
import { ReadIndexRounds, type ReadIndexResult } from "./read_index_rounds.js";
import { error, type Protocol } from "./resp_encoder.js";
import { TxidWaiters } from "./txid_waiters.js";

export interface ReadPathOptions {
  config: Config;
  nc: NatsConnection;
  log: Logger;
  commands: () => CommandTable | undefined;
  /** Null while reads of the data may be served; else the refusal (read_gate.ts). */
  refusal: () => string | null;
  /** What this node's Redis holds committed: a replica's applied txid, a serving master's committed txid. */
  visibleTxid: () => number;
  /** The master role's guard against dirty reads, while this node is master. */
  guard: () => ReadGuard | null;
  /** The read itself, on the node's Redis, in the connection's protocol. */
  read: (protocol: Protocol, args: readonly Buffer[]) => Promise<RespValue>;
  /** The master this node's writes go to (its door's client, master_choice.ts): its read indexes are asked of it too. */
  master?: QjmClient["master"];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** `promise`'s value, or `late` at `deadlineMs` (the timer is cleared either way: reads may be many). */
async function untilDeadline<T>(promise: Promise<T>, deadlineMs: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<T>((r) => (timer = setTimeout(() => r(late), Math.max(0, deadlineMs - Date.now()))))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A pause between read-index attempts (a failover in progress: no master answers, or a deposed one refuses). */
const READ_INDEX_RETRY_MS = 50;

export class ReadPath {
  private readonly waiters = new TxidWaiters();
  private readonly resolvers = new Map<number, (reached: boolean) => void>();
  private nextWaiter = 1;
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Infinity;
  /** One read-index request to the master at a time, shared by the reads that wait for it. */
  private readonly readIndexRounds = new ReadIndexRounds(() => this.askReadIndex());

  constructor(private readonly o: ReadPathOptions) {
    this.waiters.advance(o.visibleTxid());
  }

  /** The node's applied (or committed) txid may have moved: waiters it satisfies go on. */
  advanced(): void {
    for (const id of this.waiters.advance(this.o.visibleTxid())) this.settle(id, true);
  }

  /** Waits until this node applied `txid` (true), or `deadlineMs` passed (false). */
  waitFor(txid: number, deadlineMs: number): Promise<boolean> {
    this.advanced();
    const id = this.nextWaiter++;
    if (!this.waiters.wait(id, txid, deadlineMs)) return Promise.resolve(true);
    const reached = new Promise<boolean>((resolve) => this.resolvers.set(id, resolve));
    // O(1) per waiter: the timer moves only for a deadline earlier than the one it is set for.
    if (deadlineMs < this.timerAtMs) this.arm(deadlineMs);
    return reached;
  }

  close(): void {
    this.arm(null);
    for (const id of [...this.resolvers.keys()]) {
      this.waiters.cancel(id);
      this.settle(id, false);
    }
  }

  /**
   * WATCH's point: the txid this node had applied when the keys were watched (after waiting, bounded, for the
   * session's floor, so a connection's own write before WATCH does not abort its EXEC). Reads after WATCH see at
   * least that state, so any modification they did not see has a higher txid: the master's check aborts on it.
   */
  async watchPoint(state: ConnectionState): Promise<number> {
    if (state.consistency !== "eventual" && state.observedTxid > 0) await this.waitFor(state.observedTxid, Date.now() + this.o.config.respReadTimeoutMs);
    return this.o.visibleTxid();
  }

  /** One read of the data, at the connection's level: the reply, or the error the client gets. */
  async read(protocol: Protocol, args: readonly Buffer[], state: ConnectionState): Promise<RespValue> {
    const deadlineMs = Date.now() + this.o.config.respReadTimeoutMs;
    let floor = state.consistency === "eventual" ? 0 : state.observedTxid;
    // Session after a committed write answered an error (its txid untold): the read index covers it.
    const untold = state.consistency === "session" && state.untoldWrite;
    if (state.consistency === "linearizable" || untold) {
      const index = await this.readIndex(deadlineMs);
      if (typeof index === "string") return error(`TRYAGAIN qjm: no read index from the master within ${this.o.config.respReadTimeoutMs} ms (${index})`);
      floor = Math.max(floor, index);
      if (untold) {
        state.untoldWrite = false;
        state.observed(index);
      }
    }
    const refused = this.o.refusal();
    if (refused !== null) return error(refused);
    if (floor > 0 && !(await this.waitFor(floor, deadlineMs))) {
      return error(`TRYAGAIN qjm: this node has applied txid ${this.o.visibleTxid()}, this ${state.consistency} read needs ${floor}; waited ${this.o.config.respReadTimeoutMs} ms (retry, or read on another node)`);
    }
    const again = this.o.refusal();
    if (again !== null) return error(again);
    const reply = await this.guarded(() => this.o.read(protocol, args), args, deadlineMs);
    // A refusal showed nothing; a read (Redis's own errors included) showed at most what the node has applied.
    const refusal = reply.type === "error" && (reply.value.startsWith("TRYAGAIN qjm") || reply.value.startsWith("LOADING qjm"));
    if (!refusal) state.observed(this.o.visibleTxid());
    return reply;
  }

  /** On the master, through its guard (no dirty reads); elsewhere the read as it is. */
  private async guarded(run: () => Promise<RespValue>, args: readonly Buffer[], deadlineMs: number): Promise<RespValue> {
    const guard = this.o.guard();
    if (guard === null) {
      const reply = await run();
      // The node took over as master while the read was on its way: its Redis may now hold writes not yet committed,
      // which this reply may show (review s20). Read again, through the master's guard.
      return this.o.guard() === null ? reply : await this.guarded(run, args, deadlineMs);
    }
    const keys = this.o.commands()?.keysOf(args) ?? null;
    const r = await guard.guard(keys, run, deadlineMs);
    if (r.ok) return r.value;
    if (r.why === "timeout") return error(`TRYAGAIN qjm: writes of the keys read are not committed after ${this.o.config.respReadTimeoutMs} ms`);
    return error(this.o.refusal() ?? "LOADING qjm: this node's Redis is not serving reads while its master role ends; try again shortly or read from another node");
  }

  /** The master's read index: its committed txid, confirmed after this call began; or why none came in time. */
  private async readIndex(deadlineMs: number): Promise<number | string> {
    let why = "no attempt";
    while (Date.now() < deadlineMs) {
      const r = await untilDeadline(this.readIndexRounds.get(), deadlineMs, { ok: false, why: `waited ${this.o.config.respReadTimeoutMs} ms (${why})` });
      if (r.ok) return r.txid;
      why = r.why;
      if (deadlineMs - Date.now() <= READ_INDEX_RETRY_MS) break;
      await sleep(READ_INDEX_RETRY_MS);
    }
    this.o.log.debug({ why }, "no read index");
    return why;
  }

  /** One read-index request to the master (a round of ReadIndexRounds); a failure is a result, never a throw. */
  private async askReadIndex(): Promise<ReadIndexResult> {
    // As writes: the master known, whom a frozen master in the queue group cannot stand in for; else the queue group.
    const master = this.o.master?.target() ?? null;
    const s = subjects(this.o.config.cluster);
    try {
      const reply = parseReadIndexReply(await request(this.o.nc, master === null ? s.readIndex : s.readIndexTo(master), { type: "readIndex" }, this.o.config.respReadTimeoutMs));
      return reply.ok ? { ok: true, txid: reply.txid } : { ok: false, why: `${reply.code} ${reply.message}` };
    } catch (err) {
      // No answer as master (gone, stepped down, frozen): the queue group until a heartbeat names one again.
      this.o.master?.failed(master);
      return { ok: false, why: err instanceof QjmError ? `${err.code} ${err.message}` : (err as Error).message };
    }
  }

  private settle(id: number, reached: boolean): void {
    const resolve = this.resolvers.get(id);
    this.resolvers.delete(id);
    resolve?.(reached);
  }

  /** One timer, at the earliest deadline; when it fires, the waiters past theirs leave and it is set for the next. */
  private arm(atMs: number | null): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAtMs = atMs ?? Infinity;
    if (atMs === null) return;
    this.timer = setTimeout(() => {
      for (const id of this.waiters.expire(Date.now())) this.settle(id, false);
      this.arm(this.waiters.nextDeadlineMs());
    }, Math.max(0, atMs - Date.now()));
  }
}
