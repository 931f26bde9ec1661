/**
 * A client write from the bus to Redis and back: decoded and bounded at the bus, handed to the MasterCore (which
 * admits, queues or answers it), executed on the Redis served once admitted — the command, then its marker, back to
 * back on the same connection, a script under the script watch — and Redis's outcome fed back; the core's answer
 * goes to the client. Its record comes off the replication stream (effect_stream.ts).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/config.js";
import { maxPayload } from "../nats/bus.js";
import { ErrorCode, QjmError, errorReply } from "../protocol/errors.js";
import { parseWriteRequest, type WatchSpec, type WriteId as ClientWriteId, type WriteReply } from "../protocol/messages.js";
import type { Classification, CommandTable } from "../redis/command_table.js";
import { replyValueOf, valueOrThrow } from "../redis/reply_value.js";
import type { RespConnection } from "../redis/resp_connection.js";
import type { RespValue } from "../redis/resp_parser.js";
import { classifyTransaction, transactionKeys } from "../redis/transaction.js";
import { assert } from "../util/assert.js";
import type { Logger } from "../util/log.js";
import type { MasterMetrics } from "../metrics/actor_metrics.js";
import type { EffectStream, Step } from "./effect_stream.js";
import type { MasterCore, Outcome, WriteId } from "./master_core.js";
import type { MasterRedis } from "./master_redis.js";
import type { ReadGuard } from "./read_guard.js";
import type { WriteTracer } from "./write_trace.js";

/** A client write as the driver knows it; the core knows it by its id. */
interface DriverWrite {
  /** Its command; let go once executed (a 10k-argument write's views must not live until the commit: GC, s24). */
  args: Buffer[];
  /** The command's RESP bytes as the client sent them (`{ resp }`), sent to Redis as they are; null: encoded from args. */
  resp: Buffer | null;
  /** A transaction's commands (run between MULTI and EXEC), or null for one command. */
  tx: Buffer[][] | null;
  watch: WatchSpec | null;
  respond: (reply: WriteReply) => void;
  /** The client's id of the write (the same on its retries), or null: never deduped. */
  clientId: ClientWriteId | null;
  /** performance.now() at its arrival: the write latency histogram's start. */
  arrivedMs: number;
  /** Its command's verdict at admission (isScript), reused at execute when Redis's command table is still that one. */
  classified: { table: CommandTable; verdict: Classification } | null;
}

/** What an executed write's args become (nothing reads them after execute). */
const EXECUTED: Buffer[] = [];

/** The commands script_watch.ts checks (CommandTable.classify: @scripting, not readonly, no subcommands). */
const SCRIPT_COMMANDS = new Set(["EVAL", "EVALSHA", "FCALL"]);

export class WriteIntake {
  /** Every write the core has not answered yet. */
  private readonly writes = new Map<WriteId, DriverWrite>();
  private nextWriteId = 1;

  /** A transaction's bounds (config.ts), built once rather than per write. */
  private readonly txLimits: { commandsMax: number; watchKeysMax: number };

  constructor(
    private readonly core: MasterCore,
    private readonly step: Step,
    private readonly redis: MasterRedis,
    private readonly stream: EffectStream,
    private readonly config: Config,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly metrics: MasterMetrics,
    /** The front door's reads on this Redis wait for the writes they may have seen (no dirty reads). */
    private readonly guard: ReadGuard | null,
    private readonly tracer: WriteTracer,
    /** This master's id, named in every answered write with its epoch (a client sends its next ones to `write.<id>`). */
    private readonly masterId: string,
  ) {
    this.txLimits = { commandsMax: config.txCommandsMax, watchKeysMax: config.txWatchKeysMax };
  }

  /**
   * A write request off the bus (`body`: `raw` as the bus decoded it, once): answered once the core answers it (a bad
   * request throws, as a typed error).
   */
  onWrite(body: unknown, raw: Uint8Array): Promise<WriteReply> {
    // writeBytesMax 0: whatever nats-server accepts from a client in one message (its max_payload) is a write.
    const configured = this.config.writeBytesMax > 0;
    const writeBytesMax = configured ? this.config.writeBytesMax : maxPayload(this.nc);
    if (raw.length > writeBytesMax) {
      const limit = configured ? "writeBytesMax" : "nats-server's max_payload";
      throw new QjmError(ErrorCode.PAYLOAD_TOO_LARGE, `write of ${raw.length} bytes exceeds ${limit} ${writeBytesMax}`);
    }
    const arrivedMs = performance.now();
    const trace = this.tracer.on ? this.tracer.sample() : null;
    const { args, resp, id: clientId, tx, watch } = parseWriteRequest(body, this.txLimits);
    return new Promise<WriteReply>((respond) => {
      const id = this.nextWriteId++;
      if (trace !== null) this.tracer.admitted(id, trace);
      const w: DriverWrite = { args, resp, tx, watch, respond, clientId, arrivedMs, classified: null };
      this.writes.set(id, w);
      this.step(() => this.core.write(id, raw.length, tx === null && this.isScript(w), Date.now(), clientId));
    });
  }

  /** The core's answer to a write (each exactly once). */
  answer(id: WriteId, reply: WriteReply): void {
    const w = this.writes.get(id);
    this.writes.delete(id);
    this.stream.answered(id);
    this.stream.watches.answered(id);
    this.guard?.answered(id);
    if (w === undefined) return;
    this.metrics.answered(reply.ok, w.arrivedMs, performance.now());
    const trace = this.tracer.on ? this.tracer.answered(id) : undefined;
    const writer = this.core.writer;
    if (!reply.ok || writer === null) return w.respond(reply);
    // A new object, not the core's (not ours to change), named by this master, traced if it was. Built field by field:
    // a spread of the core's replies (of several shapes) took ~3 µs per write, 3 % of the master's CPU at 256 clients.
    const named: WriteReply = { ok: true, txid: reply.txid, reply: reply.reply, master: this.masterId, epoch: writer.epoch };
    if (reply.duplicate === true) named.duplicate = true;
    if (trace !== undefined) named.trace = trace;
    w.respond(named);
  }

  /** A script is a barrier: nothing is admitted behind it until the read of the keys it touched is sent. */
  private isScript(w: DriverWrite): boolean {
    const table = this.redis.commands;
    if (table != null) {
      const verdict = table.classify(w.args);
      w.classified = { table, verdict };
      return verdict.ok && verdict.script;
    }
    return SCRIPT_COMMANDS.has(w.args[0]?.toString("latin1").toUpperCase() ?? "");
  }

  /** Runs an admitted write on Redis: the command, then its marker, back to back on the same connection. */
  execute(id: WriteId): void {
    const { writer, commands, scriptWatch } = this.redis;
    assert(writer !== null && commands !== null && scriptWatch !== null, "execute needs Redis");
    const w = this.writes.get(id);
    assert(w !== undefined, `write ${id} admitted but unknown`);
    if (w.tx !== null) return this.executeTransaction(id, w, w.tx, commands, writer);
    // Classified once: a pure function of the arguments and the table.
    const verdict = w.classified?.table === commands ? w.classified.verdict : commands.classify(w.args);
    if (!verdict.ok) return this.core.rejected(id, errorReply(verdict.code, verdict.message));
    // Before it is sent: a read whose reply comes after this may reflect it. Its keys once, for both.
    const keys = latin1(commands.keysOf(w.args));
    this.guard?.executed(id, keys);
    this.stream.watches.executed(id, keys);
    const { channel, marker } = this.stream.mark(id, w.clientId, verdict.script);
    const markerArgs = ["PUBLISH", channel, String(marker)];
    // Same connection, back to back (one socket write for a plain write): Redis runs the command, then the marker,
    // with no other client between.
    const run = verdict.script ? scriptWatch.run(writer, verdict.name, w.args.slice(1)) : null;
    if (run !== null) void run.readSent.then(() => this.step(() => this.core.barrierReleased(id)));
    else this.core.barrierReleased(id);
    if (this.tracer.on) this.tracer.executed(id);
    const [reply, published] = run === null ? writer.send([w.resp ?? w.args, markerArgs]) : [run.reply, writer.call(markerArgs)];
    w.args = EXECUTED;
    w.resp = null;
    w.classified = null;
    reply.then(
      (value) => this.onOutcome(id, value.type === "error" ? { ok: false, message: value.value } : { ok: true, value: replyValueOf(value, 0, true) }),
      (err: Error) => this.onOutcome(id, { ok: false, message: err.message }),
    );
    // A reset discards this Redis and its connection, answering the write itself: its lost marker is no failure then.
    published.then(valueOrThrow).catch((err: Error) => {
      if (this.redis.writer === writer && !this.core.resetting) {
        this.step(() => this.core.fail(`marker not written: ${err.message}`));
      }
    });
    run?.repair.then(
      (repair) => this.stream.onScriptRepair(id, repair),
      (err: Error) => this.onScriptUnverified(id, err),
    );
  }

  /**
   * A transaction: MULTI, its commands, EXEC, then its marker, back to back on the writer's connection (nothing of
   * another write can come between: one connection, one socket write), so Redis propagates its writes as one block
   * that is one record. EXEC's reply (an array, per-command errors inside it; EXECABORT) is the write's. A WATCH that
   * fails the master's check (watch_core.ts) runs only the marker: a record without effects, answered nil, as Redis.
   */
  private executeTransaction(id: WriteId, w: DriverWrite, tx: Buffer[][], commands: CommandTable, writer: RespConnection): void {
    const verdict = classifyTransaction(commands, tx);
    if (!verdict.ok) return this.core.rejected(id, errorReply(verdict.code, verdict.message));
    const watches = this.stream.watches;
    if (w.watch !== null) watches.started(this.core.writer?.lastTxid ?? 0);
    const check = w.watch === null ? { ok: true as const } : watches.check(w.watch.txid, w.watch.keys.map((k) => k.toString("latin1")));
    const keys = latin1(check.ok ? transactionKeys(commands, tx) : []);
    this.guard?.executed(id, keys);
    watches.executed(id, keys);
    const { channel, marker } = this.stream.mark(id, w.clientId, false);
    const markerArgs = ["PUBLISH", channel, String(marker)];
    this.core.barrierReleased(id);
    if (!check.ok) {
      this.log.debug({ id, why: check.why }, "a watched transaction is aborted");
      const [published] = writer.send([markerArgs]);
      this.onOutcome(id, { ok: true, value: null });
      return this.watchMarker(published, writer);
    }
    const replies = writer.send([["MULTI"], ...tx, ["EXEC"], markerArgs]);
    // MULTI's and each QUEUED reply say nothing EXEC does not (a queued-time error makes it EXECABORT); a connection
    // lost rejects them all, which EXEC's and the marker's handlers below take care of.
    for (let i = 0; i < replies.length - 2; i++) replies[i].catch(() => {});
    replies[replies.length - 2].then(
      (value) => this.onOutcome(id, value.type === "error" ? { ok: false, message: value.value } : { ok: true, value: replyValueOf(value, 0, true) }),
      (err: Error) => this.onOutcome(id, { ok: false, message: err.message }),
    );
    this.watchMarker(replies[replies.length - 1], writer);
  }

  /** A reset discards this Redis and its connection, answering the write itself: its lost marker is no failure then. */
  private watchMarker(published: Promise<RespValue>, writer: RespConnection): void {
    published.then(valueOrThrow).catch((err: Error) => {
      if (this.redis.writer === writer && !this.core.resetting) {
        this.step(() => this.core.fail(`marker not written: ${err.message}`));
      }
    });
  }

  /** Redis's answer: to the core, and to the record waiting for it (a write whose record keeps it). */
  private onOutcome(id: WriteId, outcome: Outcome): void {
    this.step(() => {
      this.core.outcome(id, outcome);
      this.stream.outcome(id, outcome);
    });
  }

  /** A script that could not be checked is not journaled: answered as refused, and a reset to the journal undoes it. */
  private onScriptUnverified(id: WriteId, err: Error): void {
    if (!this.writes.has(id) || !this.core.serving) return;
    this.log.warn({ err, id }, "a script's writes could not be verified; undoing it by a reset to the journal");
    // Not journaled, and the reset (same epoch: client input never fails the writer) rebuilds Redis without it.
    this.step(() => {
      this.core.rejected(id, errorReply(ErrorCode.EFFECTS_REFUSED, `script not journaled, and undone: ${err.message}`));
      this.core.startReset(`script not verified: ${err.message}`);
    });
  }
}

function latin1(keys: Buffer[] | null): string[] | null {
  return keys === null ? null : keys.map((k) => k.toString("latin1"));
}
