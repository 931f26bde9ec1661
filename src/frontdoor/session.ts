/**
 * One front-door connection: requests framed off the socket, each routed (router.ts) and answered, the replies
 * written back in request order however they complete (a pipelined write waits for the journal while a read after it
 * is ready). Bounded: at most `pipelineMax` requests in flight; past it, while the socket's output is full, and while
 * the reply bytes waiting plus those expected of the requests under way pass `outputBytesPause` (reply_budget.ts),
 * the door stops reading the socket (TCP back-pressure) instead of buffering; a client that reads is never closed for
 * its replies' size (only past reply_budget.ts's backstop). Requests are taken within the door's share of the event
 * loop's turn (src/util/turn_budget.ts), the rest in later turns. Its buffered request bytes are reported to the door, which
 * bounds their sum. Nothing after a QUIT is read.
 *
 * Order within a connection, as a pipeline runs on Redis: consecutive writes are sent at once, concurrently (the
 * master admits them in the order they arrive), and so are consecutive reads; a read waits until the connection's
 * earlier writes are answered, and a write until its earlier reads are, so a pipelined `INCR n`, `GET n`, `INCR n`
 * reads 1. The writes go through one ordered group per connection (src/client/ordered_writes.ts): applied in request
 * order even when retried across a failover. What a read waits for besides (this node applying the connection's
 * writes, a read index, the master's uncommitted writes) is read_path.ts's.
 */
import type net from "node:net";
import type { OrderedWriter } from "../client/client.js";
import type { RespValue } from "../redis/resp_parser.js";
import type { ReplyValue } from "../segment/record.js";
import type { Logger } from "../util/log.js";
import type { DoorClient } from "./client_command.js";
import type { ConnectionState } from "./connection_state.js";
import { parseLastTxid, parseQjmWait, type LocalAnswer } from "./local_commands.js";
import { DoorProtocolError, RequestReader } from "./request_framing.js";
import { commandReply, replyArgs, execReply } from "./reply_shapes.js";
import { MixedExec, type ExecHost } from "./exec_mixed.js";
import type { DoorQueued } from "./transaction_state.js";
import { encodeResp, type Protocol } from "./resp_encoder.js";
import { EXEC_ABORT_PREFIX, type LocalCommand, type QjmCommand, type Route, type TxCommand } from "./router.js";
import { OutputLimit, parsePubSub, type PubSubCommand, type PubSubRequest, type PushFrame } from "./pubsub.js";
import { ReplyBudget } from "./reply_budget.js";
import { requestWeight, type InflightGate } from "./inflight_gate.js";
import type { TurnBudget } from "../util/turn_budget.js";

/** What a session needs from its door. */
export interface DoorServices {
  readonly pipelineMax: number;
  readonly requestBytesMax: number;
  /** Reply bytes waiting for the client past which the connection is closed (client-output-buffer-limit). */
  readonly outputBytesMax: number;
  /** Reply bytes waiting (and estimated for the requests under way) past which no new request is taken (reply_budget.ts). */
  readonly outputBytesPause: number;
  /** The door's share of each event-loop turn, shared by its connections (src/util/turn_budget.ts). */
  readonly budget: TurnBudget;
  /** Requests in flight over all the door's connections (respInflightMax). */
  readonly inflight: InflightGate;
  /** Connections closed past outputBytesMax (counted here, shown by INFO qjm). */
  closedForOutput: number;
  readonly log: Logger;
  route(args: readonly Buffer[], state: ConnectionState): Route;
  local(command: LocalCommand, args: readonly Buffer[], session: Session): LocalAnswer;
  /** The largest QJM.WAIT timeout (respWaitMaxMs). */
  readonly waitMaxMs: number;
  /**
   * A read of the data at the connection's consistency (read_path.ts): the reply, or the error the client gets
   * (LOADING, TRYAGAIN…); rejects when the node's Redis cannot be reached.
   */
  readData(protocol: Protocol, args: readonly Buffer[], state: ConnectionState): Promise<RespValue>;
  /** Waits until this node applied `txid` (true) or `timeoutMs` passed (false): QJM.WAIT. */
  waitTxid(txid: number, timeoutMs: number): Promise<boolean>;
  /** A command on the node's own Redis, in `protocol`; rejects when that Redis cannot be reached. */
  read(protocol: Protocol, args: readonly Buffer[]): Promise<RespValue>;
  /** The upstream reply of a local answer (INFO, CONFIG GET), finished by the door. */
  finish(answer: Extract<LocalAnswer, { upstream: Buffer[] }>, reply: RespValue, session: Session): RespValue;
  /** This connection's buffered request bytes changed by `delta` (the door bounds their sum over its connections). */
  buffered(session: Session, delta: number): void;
  /** A connection's ordered group of writes (opened on its first write). */
  ordered(): OrderedWriter;
  /** A write through the journal, in `writer`'s order: Redis's typed reply, or the error text the client gets. */
  write(writer: OrderedWriter, args: readonly Buffer[]): Promise<WriteOutcome>;
  /** A transaction (EXEC) through the journal, in `writer`'s order: EXEC's typed reply (null: a WATCH aborted it). */
  transaction(writer: OrderedWriter, tx: Buffer[][], watch: { txid: number; keys: Buffer[] } | null): Promise<WriteOutcome>;
  /** Why `args` may not run inside a transaction (the master's rule, redis/transaction.ts), or null. */
  txRefusal(args: readonly Buffer[]): string | null;
  /**
   * Redis's own error for a command it never queues (flagged no_multi), or null; `doorRun`: a command the door runs
   * itself at EXEC, whose arity and subcommand Redis checks when queueing it (transaction_state.ts queueingRefusal).
   */
  noMultiRefusal(args: readonly Buffer[], doorRun: boolean): string | null;
  /** The txid a WATCH records: what this node had applied (after the session's floor). */
  watchPoint(state: ConnectionState): Promise<number>;
  closed(session: Session): void;
  /** Pub/sub's client-output-buffer-limit: a connection with a subscription is closed past these (pubsub.ts OutputLimit). */
  readonly pubsubOutput: { hardBytes: number; softBytes: number; softMs: number };
  /** Subscribed connections closed past pubsubOutput (counted here, shown by INFO qjm). */
  closedForPubsubOutput: number;
  /**
   * A pub/sub command, answered at once: its frames ((UN)SUBSCRIBE: one per name), or its reply (PUBLISH: the
   * receivers on this node; PUBSUB …; an error).
   */
  pubsub(request: Exclude<PubSubRequest, { op: "error" }>, session: Session): PushFrame[] | RespValue | Promise<RespValue>;
}

/**
 * A write's outcome at the door: Redis's typed reply and its txid, or the error text the client gets; `committed` when
 * that error was answered after the write committed with effects, its txid untold (read_path.ts then asks a read index).
 */
export type WriteOutcome = { ok: true; value: ReplyValue; txid: number } | { ok: false; error: string; committed: boolean };

interface Slot {
  bytes: Buffer | null;
  /** A large value's own bytes, written after `bytes` as they are (never copied into one reply buffer). */
  tail?: Buffer[];
  /** CLIENT REPLY OFF or SKIP when the request was taken: its reply is dropped (pub/sub frames excepted). */
  silent?: true;
  /** Close the connection once this reply is written (QUIT, a protocol error). */
  close: boolean;
  /** The request's weight in the door's in-flight bound (requestWeight); 0 for a slot no request took. */
  weight?: number;
}

export class Session {
  private readonly reader: RequestReader;
  /** Replies in request order; slots[head] is the next to write. */
  private slots: Slot[] = [];
  private head = 0;
  /** The run of consecutive reads or writes in flight: the next one of the other kind waits for all of it. */
  private run: { kind: "read" | "write"; gate: Promise<void> | null; done: Promise<void> } | null = null;
  private stopped = false;
  private outputFull = false;
  /** Replies of one event-loop turn leave in one socket write. */
  private corked = false;
  /** pump() is running: a reply written meanwhile does not start another (no recursion through a long pipeline). */
  private pumping = false;
  /** This connection's writes, applied in request order even when retried across a failover. */
  private writer: OrderedWriter | null = null;
  /** Bytes of replies ready but not yet handed to the socket (waiting for an earlier one). */
  private readyBytes = 0;
  /** Request bytes buffered, as last told to the door. */
  private charged = 0;
  /** A request read past the door's in-flight bound that must wait for room (pastGate); taken first once there is. */
  private held: Buffer[] | null = null;
  /** The txid of this connection's WATCHes (the lowest), known once each WATCH ran in order; null: none pending. */
  private watchTxid: { txid: number; unsettled: number } | null = null;
  /** Pub/sub's output bounds, once the connection subscribed. */
  private pubsubLimit: OutputLimit | null = null;
  /** Replies bounded by bytes: when the next request may be taken, when a client is past the backstop. */
  private readonly replies: ReplyBudget;
  /** Requests taken whose reply is not ready yet. */
  private unanswered = 0;
  /** The door's turn budget ran out while requests were waiting: a later turn takes them (the socket is paused meanwhile). */
  private parked = false;
  /** Takes requests again once the door has room for them (InflightGate). */
  private readonly wake = (): void => this.pump();

  constructor(
    private readonly socket: net.Socket,
    readonly state: ConnectionState,
    private readonly door: DoorServices,
  ) {
    this.reader = new RequestReader({ requestBytesMax: door.requestBytesMax, unauthenticated: !state.authenticated });
    this.replies = new ReplyBudget(door.outputBytesPause, door.outputBytesMax);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => {
      this.outputFull = false;
      this.pump();
    });
    socket.on("error", (err) => door.log.debug({ err, client: state.id }, "front-door connection error"));
    socket.on("close", () => {
      this.stopped = true;
      door.inflight.forget(this.wake);
      this.charge(0);
      door.closed(this);
    });
  }

  /** Requests taken and not yet answered on the socket. */
  get inFlight(): number {
    return this.slots.length - this.head;
  }

  /** Request bytes this connection holds buffered (a request not yet complete, or not yet taken). */
  get bufferedBytes(): number {
    return this.charged;
  }

  /** This connection as CLIENT LIST and CLIENT KILL see it (client_command.ts). */
  asClient(): DoorClient {
    return { state: this.state, inFlight: this.inFlight, kill: () => this.close() };
  }

  close(): void {
    this.stopped = true;
    this.charge(0);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    try {
      this.reader.push(chunk);
    } catch (err) {
      return this.protocolError(err);
    }
    this.pump();
    if (!this.stopped) this.charge(this.pendingBytes());
  }

  /** What this connection holds of requests not taken: the reader's bytes, and a request held at the gate. */
  private pendingBytes(): number {
    return this.reader.pendingBytes + (this.held === null ? 0 : requestWeight(this.held));
  }

  private charge(bytes: number): void {
    if (bytes === this.charged) return;
    const delta = bytes - this.charged;
    this.charged = bytes;
    this.door.buffered(this, delta);
  }

  /** Takes requests while under the bound; pauses the socket at it. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.take();
    } finally {
      this.pumping = false;
    }
  }

  private take(): void {
    // One request a take goes past a spent budget (pastGate): a pipeline of 2,000 PINGs went whole in one turn.
    let pastBudget = false;
    while (!this.stopped && !this.parked && this.room(false)) {
      let args: Buffer[] | undefined;
      try {
        args = this.held ?? this.reader.next();
      } catch (err) {
        return this.protocolError(err);
      }
      if (args === undefined) break;
      this.held = null;
      // Past this turn's budget only what the door answers itself on an idle connection goes now (pastGate): a PING
      // parked behind every pipelining connection's turn waited 2.4 s in CI with the loop never late by 100 ms.
      if (!this.door.budget.spend()) {
        if (pastBudget || !this.pastGate(args)) {
          this.held = args;
          this.park();
          break;
        }
        pastBudget = true;
      }
      if (!this.door.inflight.room && !this.pastGate(args)) {
        this.held = args;
        break;
      }
      if (args.length > 0) this.dispatch(args);
    }
    if (!this.stopped) this.charge(this.pendingBytes());
    // The door's bound stops the reading only of a connection holding a request it refused: any other reads on, so an
    // idle one's next PING is seen and goes past the gate. Paused, a probe's second PING waited its turn behind every
    // pipelining connection (2.5–5.3 s in CI under redis-benchmark -c 100 -P 16, the loop at most 284 ms late).
    // Reading on is for what may go past the gate (a small local command): a connection partway through a request
    // larger than any such command waits paused as before (review s27: an 8 MiB SET past a full bound was read to its
    // end and held, 8 MiB buffered per connection where TCP used to slow it; a crowd of large writers then reached
    // respBufferedBytesMax and was closed).
    const gated = !this.door.inflight.room && (this.held !== null || this.reader.pendingBytes > PAST_GATE_READ_BYTES);
    const full = this.parked || !this.room(false) || gated;
    // Only the door's bound held it: it waits its turn (a request answered anywhere on the door wakes it).
    if (full && !this.stopped && !this.parked && gated) this.door.inflight.wait(this.wake);
    if (full && !this.socket.isPaused()) this.socket.pause();
    else if (!full && this.socket.isPaused() && !this.stopped) this.socket.resume();
  }

  /**
   * Whether the next request may be taken: the socket takes output, under respPipelineMax, the replies' bytes bounded;
   * with `gate`, also the door's in-flight bound (without: the next request is read, and pastGate decides).
   */
  private room(gate: boolean): boolean {
    return !this.outputFull && this.inFlight < this.door.pipelineMax && (!gate || this.door.inflight.room) && this.replies.admits(this.outputBytes, this.unanswered);
  }

  /**
   * Past the door's in-flight bound a connection with nothing unanswered still gets a command the door answers itself
   * (PING, ECHO, CLIENT…, an empty request): it puts no work on the master, and its reply goes at once. Anything else
   * waits, held, for the connection's turn at the gate. Before, PING waited behind every pipelining connection (2.7 s
   * in CI under redis-benchmark -c 100 -P 16, with the master's loop stalled only 295 ms). The same past the turn's
   * budget (take).
   */
  private pastGate(args: Buffer[]): boolean {
    return this.unanswered === 0 && (args.length === 0 || this.door.route(args, this.state).kind === "local");
  }

  /** Out of this turn's door budget: the socket waits (paused) and a later turn goes on where this one stopped. */
  private park(): void {
    this.parked = true;
    this.door.budget.later(() => {
      this.parked = false;
      this.pump();
    });
  }

  private protocolError(err: unknown): void {
    if (!(err instanceof DoorProtocolError)) throw err;
    this.door.log.info({ client: this.state.id, addr: this.state.addr, reason: err.message }, "front door: protocol error, closing the connection");
    // Earlier requests are still answered first; nothing after the bad bytes is read.
    this.stopped = true;
    this.slots.push({ bytes: encodeResp({ type: "error", value: `ERR Protocol error: ${err.message}` }, this.state.protocol), close: true });
    this.flush();
  }

  private dispatch(args: Buffer[]): void {
    const slot: Slot = { bytes: null, close: false, weight: requestWeight(args) };
    if (this.state.replyOff || this.state.skipNext) slot.silent = true;
    this.state.skipNext = false;
    this.slots.push(slot);
    this.unanswered++;
    this.door.inflight.taken(slot.weight);
    this.state.lastActiveMs = Date.now();
    this.state.lastCommand = args[0].toString("latin1", 0, 32).toLowerCase();
    const route = this.door.route(args, this.state);
    if (this.state.tx.queueing && queues(route)) return this.queue(args, route, slot);
    // Local answers may change the protocol (HELLO, RESET): each reply is encoded in the protocol its request left.
    const done = (value: RespValue, protocol = this.state.protocol, close = false): void => this.fill(slot, encodeResp(value, protocol), close);
    switch (route.kind) {
      case "refuse":
        return done({ type: "error", value: route.error });
      case "local":
        return this.local(route.command, args, slot, done);
      case "read":
        return this.read(args, slot);
      case "write":
        return this.write(args, slot);
      case "qjm":
        return this.qjm(route.command, args, slot);
      case "tx":
        return this.transaction(route.command, args, slot);
      case "pubsub":
        return this.pubsub(route.command, args, slot);
    }
  }

  /**
   * (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBSUB: answered at once, in order with the replies before them. PUBLISH runs
   * after the connection's earlier writes are acknowledged (ordered as a read), so a subscriber told of a change can
   * read it; it answers the receivers on this node (Redis Cluster's PUBLISH), the other nodes get it over NATS.
   */
  private pubsub(command: PubSubCommand, args: Buffer[], slot: Slot): void {
    const request = parsePubSub(command, args);
    const answer = (): Promise<void> | void => {
      const protocol = this.state.protocol;
      const r = request.op === "error" ? request.error : this.door.pubsub(request, this);
      // PUBLISH: its receivers are counted once the door handed the message to them all (over later turns).
      if (r instanceof Promise) return r.then((v) => this.fill(slot, encodeResp(v, protocol), false));
      // Frames are pushed, as Redis pushes them: sent even with CLIENT REPLY OFF.
      if (Array.isArray(r)) delete slot.silent;
      this.fill(slot, Array.isArray(r) ? Buffer.concat(r.map((f) => f.bytes(protocol))) : encodeResp(r, protocol), false);
    };
    if (request.op !== "publish") return void answer();
    this.schedule("read", async () => await answer());
  }

  /** A message for this connection's subscriptions: after the replies before it, bounded as Redis bounds a subscriber. */
  push(frame: PushFrame): void {
    if (this.stopped || this.socket.destroyed) return;
    const bytes = frame.bytes(this.state.protocol);
    this.slots.push({ bytes, close: false });
    this.readyBytes += bytes.length;
    this.flush();
    this.checkOutput();
  }

  /**
   * A command after MULTI: queued (`+QUEUED`) as Redis queues it — a write or a read for the transaction's journal
   * write, the door's own commands (CLIENT, HELLO, SELECT, INFO, COMMAND, pub/sub…) to run in their place at EXEC
   * (exec_mixed.ts); refused otherwise (QJM.LASTTXID / QJM.WAIT, what the door refuses anyway): its error now, and EXEC
   * will answer EXECABORT.
   */
  private queue(args: Buffer[], route: Route, slot: Slot): void {
    const tx = this.state.tx;
    let answer: { ok: true } | { error: string };
    const door = doorQueued(route, args);
    const refusal = door === null && (route.kind === "write" || route.kind === "read") ? this.door.txRefusal(args) : null;
    const noMulti = this.door.noMultiRefusal(args, door !== null);
    if (noMulti !== null) answer = tx.refused(noMulti);
    else if (route.kind === "refuse" && route.error.startsWith(EXEC_ABORT_PREFIX)) {
      tx.clear(); // a refused EXEC (wrong arity) discards the transaction, as Redis's execCommandAbort
      answer = { error: route.error };
    } else if (route.kind === "refuse") answer = tx.refused(route.error);
    else if (refusal !== null) answer = tx.refused(refusal);
    else if (door !== null || route.kind === "write" || route.kind === "read" || (route.kind === "tx" && route.command === "unwatch")) answer = tx.add(args, door);
    else answer = tx.refused(`ERR qjm: '${args[0].toString("latin1", 0, 32).toLowerCase()}' is not supported inside MULTI`);
    this.fill(slot, encodeResp("ok" in answer ? { type: "simple", value: "QUEUED" } : { type: "error", value: answer.error }, this.state.protocol), false);
  }

  /** MULTI, EXEC, DISCARD, WATCH, UNWATCH (transaction_state.ts has Redis's rules). */
  private transaction(command: TxCommand, args: Buffer[], slot: Slot): void {
    const protocol = this.state.protocol;
    const done = (value: RespValue): void => this.fill(slot, encodeResp(value, protocol), false);
    const answered = (r: { ok: true } | { error: string }): void => done("ok" in r ? { type: "simple", value: "OK" } : { type: "error", value: r.error });
    const tx = this.state.tx;
    switch (command) {
      case "multi":
        return answered(tx.multi());
      case "discard":
        return answered(tx.discard());
      case "unwatch":
        tx.unwatch();
        return answered({ ok: true });
      case "watch":
        return this.watch(args, done);
      case "exec":
        return this.exec(slot);
    }
  }

  /**
   * WATCH: the keys are the transaction's at once (a pipelined `WATCH k; MULTI; …; EXEC` watches them); the txid is
   * taken in order after the connection's earlier writes, as a read (read_path.ts watchPoint), and EXEC — a write,
   * so after it — waits for it. Several WATCHes: the lowest.
   */
  private watch(args: Buffer[], done: (v: RespValue) => void): void {
    const tx = this.state.tx;
    const fresh = tx.watchedKeys === 0;
    const r = tx.watch(args.slice(1), 0);
    if ("error" in r) return done({ type: "error", value: r.error });
    // Read synchronously by EXEC's turn (it comes after the WATCHes' reads), so that nothing overtakes EXEC.
    const w = fresh || this.watchTxid === null ? (this.watchTxid = { txid: Number.MAX_SAFE_INTEGER, unsettled: 0 }) : this.watchTxid;
    w.unsettled++;
    const settle = (txid: number): void => {
      w.txid = Math.min(w.txid, txid);
      w.unsettled--;
      done({ type: "simple", value: "OK" });
    };
    // 0 when the point cannot be taken: older than any master's knowledge, so the EXEC is aborted (nil), never unchecked.
    this.schedule("read", () => this.door.watchPoint(this.state).then(settle, () => settle(0)));
  }

  /** EXEC: the queued commands go through the journal as one transaction write, in the connection's write order. */
  private exec(slot: Slot): void {
    const protocol = this.state.protocol;
    const r = this.state.tx.exec();
    if (r.kind === "error") return this.fill(slot, encodeResp({ type: "error", value: r.error }, protocol), false);
    const mixed = r.queued.some((q) => q.door !== null) ? new MixedExec(r.queued, this.execHost()) : null;
    // Nothing watched: the door's own commands run now, as they do outside MULTI; with a WATCH, once it held.
    if (r.watch === null) mixed?.run();
    const watchTxid = r.watch === null ? null : this.watchTxid;
    this.watchTxid = null;
    const send = (txid: number): Promise<WriteOutcome> => this.door.transaction((this.writer ??= this.door.ordered()), r.tx, r.watch === null ? null : { txid, keys: r.watch.keys });
    const answer = (w: WriteOutcome): void | Promise<void> => {
      if (w.ok) this.state.wrote(w.txid);
      else if (w.committed) this.state.wroteUntold();
      if (mixed !== null && w.ok && Array.isArray(w.value) && w.value.length === r.tx.length) {
        return mixed.reply(w.value, r.tx).then((bytes) => this.fill(slot, bytes, mixed.close));
      }
      // Each queued command's reply in its own shape; a WATCH abort is Redis's nil array (`*-1`; RESP3 null).
      this.fill(slot, encodeResp(w.ok ? execReply(r.tx, w.value, protocol) : { type: "error", value: w.error }, protocol), mixed?.close === true);
    };
    // Sent as soon as its turn comes, not a microtask later: a write pipelined after EXEC joins the same run of writes
    // and would be handed to the ordered group first (it ran before the EXEC on the master).
    this.schedule("write", () =>
      send(watchTxid === null || watchTxid.unsettled > 0 ? 0 : watchTxid.txid).then(answer, (err: Error) =>
        this.fill(slot, encodeResp({ type: "error", value: `ERR qjm INTERNAL ${err.message}` }, protocol), false),
      ),
    );
  }

  /** What a transaction's door commands need (exec_mixed.ts). */
  private execHost(): ExecHost {
    return {
      state: this.state,
      local: (command, args) => {
        const answer = this.door.local(command, args, this);
        if (this.state.authenticated) this.reader.authenticated();
        return answer;
      },
      pubsub: (request) => this.door.pubsub(request, this),
      read: (protocol, args) => this.door.read(protocol, args),
      finish: (answer, reply) => this.door.finish(answer, reply, this),
      unavailable,
    };
  }

  /** QJM.LASTTXID and QJM.WAIT answer after the connection's earlier writes, as a read would. */
  private qjm(command: QjmCommand, args: Buffer[], slot: Slot): void {
    const protocol = this.state.protocol;
    const done = (value: RespValue): void => this.fill(slot, encodeResp(value, protocol), false);
    if (command === "lasttxid") {
      const which = parseLastTxid(args);
      if (typeof which !== "string") return done(which.error);
      return this.schedule("read", () => Promise.resolve(done({ type: "integer", value: which === "seen" ? this.state.observedTxid : this.state.lastWriteTxid })));
    }
    const parsed = parseQjmWait(args, this.door.waitMaxMs);
    if ("error" in parsed) return done({ type: "error", value: parsed.error });
    this.schedule("read", () =>
      this.door.waitTxid(parsed.txid, parsed.timeoutMs).then((reached) => {
        // Reached: this connection's later session reads, on this node or any other, see at least that txid.
        if (reached) this.state.observed(parsed.txid);
        done({ type: "integer", value: reached ? 1 : 0 });
      }),
    );
  }

  private local(command: LocalCommand, args: Buffer[], slot: Slot, done: (v: RespValue, p?: Protocol, close?: boolean) => void): void {
    const answer = this.door.local(command, args, this);
    // Authenticated (AUTH, HELLO … AUTH): the full request bounds from the next request on.
    if (this.state.authenticated) this.reader.authenticated();
    // QUIT: nothing after it is read, as in Redis (a pipelined `QUIT; SET x 1` does not run the SET).
    if ("reply" in answer && answer.close === true) this.stopped = true;
    if ("reply" in answer && answer.quiet !== undefined) {
      if (answer.quiet === "always") delete slot.silent;
      else slot.silent = true;
    }
    if ("reply" in answer) return done(answer.reply, this.state.protocol, answer.close === true);
    const protocol = this.state.protocol;
    this.door.read(protocol, answer.upstream).then(
      (reply) => this.fill(slot, encodeResp(this.door.finish(answer, reply, this), protocol), false),
      (err: Error) => this.fill(slot, encodeResp(unavailable(err), protocol), false),
    );
  }

  private read(args: Buffer[], slot: Slot): void {
    const protocol = this.state.protocol;
    this.schedule("read", () => {
      // Run after the connection's earlier writes: the gate and the consistency's waits are asked then.
      return this.door.readData(protocol, args, this.state).then(
        (reply) => this.fillReply(slot, reply, protocol),
        (err: Error) => this.fill(slot, encodeResp(unavailable(err), protocol), false),
      );
    });
  }

  private write(request: Buffer[], slot: Slot): void {
    const protocol = this.state.protocol;
    let args: Buffer[] | null = request;
    const shapeArgs = replyArgs(request);
    this.schedule("write", () => {
      const sent = this.door.write((this.writer ??= this.door.ordered()), args!);
      args = null;
      return sent.then(
        (r) => {
          if (r.ok) this.state.wrote(r.txid);
          else if (r.committed) this.state.wroteUntold();
          this.fill(slot, encodeResp(r.ok ? commandReply(shapeArgs, r.value, protocol) : { type: "error", value: r.error }, protocol), false);
        },
        (err: Error) => this.fill(slot, encodeResp({ type: "error", value: `ERR qjm INTERNAL ${err.message}` }, protocol), false),
      );
    });
  }

  /** Starts `op` with the run of its kind, or once the run of the other kind before it is all answered. */
  private schedule(kind: "read" | "write", op: () => Promise<void>): void {
    if (this.run === null || this.run.kind !== kind) this.run = { kind, gate: this.run?.done ?? null, done: this.run?.done ?? Promise.resolve() };
    const run = this.run;
    const started = run.gate === null ? op() : run.gate.then(op);
    const done: Promise<void> = Promise.all([run.done, started]).then(() => {
      // The last of the run answered and nothing came after it: the next request starts at once.
      if (this.run === run && run.done === done) this.run = null;
    });
    run.done = done;
  }

  /** Reply bytes the client has not taken: ready ones waiting for an earlier reply, and the socket's buffer. */
  private get outputBytes(): number {
    return this.readyBytes + this.socket.writableLength;
  }

  /**
   * A read's reply: a large string (LARGE_REPLY_BYTES and more) goes out as its header, its value's own buffer and a
   * CRLF, not copied into one reply buffer (512 MiB would be one long synchronous copy on the node's loop).
   */
  private fillReply(slot: Slot, reply: RespValue, protocol: Protocol): void {
    if (reply.type !== "bulk" || reply.value === null || reply.value.length < LARGE_REPLY_BYTES) return this.fill(slot, encodeResp(reply, protocol), false);
    this.fill(slot, Buffer.from(`$${reply.value.length}\r\n`, "latin1"), false, [reply.value, CRLF]);
  }

  private fill(slot: Slot, bytes: Buffer, close: boolean, tail?: Buffer[]): void {
    // Counted even on a closed connection: every request taken is answered here once (the door's bound depends on it).
    this.unanswered--;
    this.door.inflight.answered(slot.weight);
    if (this.socket.destroyed) return;
    slot.bytes = slot.silent === true ? EMPTY : bytes;
    if (slot.silent !== true && tail !== undefined) slot.tail = tail;
    slot.close = close;
    const size = slotBytes(slot);
    this.readyBytes += size;
    const over = this.replies.filled(size, this.outputBytes);
    this.flush();
    this.checkOutput(over);
  }

  /**
   * Closes a connection whose client does not read: past respOutputBytesMax, or with a subscription past pub/sub's
   * bounds (Redis's client-output-buffer-limit normal / pubsub).
   */
  private checkOutput(over = false): void {
    const bytes = this.outputBytes;
    if (this.state.pubsub.total === 0) {
      if (over) this.overflow(`${bytes} reply bytes waiting, over respOutputBytesMax ${this.door.outputBytesMax} besides the largest reply`, false);
      return;
    }
    const o = this.door.pubsubOutput;
    this.pubsubLimit ??= new OutputLimit(o.hardBytes, o.softBytes, o.softMs);
    const why = this.pubsubLimit.check(bytes, Date.now());
    if (why !== null) this.overflow(`${why} (respPubsubOutputBytesMax / respPubsubOutputBytesSoft)`, true);
  }

  /** The client does not read its replies: closed as Redis's client-output-buffer-limit does. */
  private overflow(why: string, pubsub: boolean): void {
    this.door.log.info({ client: this.state.id, addr: this.state.addr, why, inFlight: this.inFlight, subscriptions: this.state.pubsub.total }, "front door: the client does not read its replies, closing the connection");
    if (pubsub) this.door.closedForPubsubOutput++;
    else this.door.closedForOutput++;
    this.stopped = true;
    this.slots = [];
    this.head = 0;
    this.readyBytes = 0;
    this.socket.destroy();
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }

  /** Writes the replies that are ready, in order. */
  private flush(): void {
    const before = this.inFlight;
    while (this.head < this.slots.length) {
      const slot = this.slots[this.head];
      if (slot.bytes === null) break;
      this.slots[this.head++] = undefined as unknown as Slot;
      this.readyBytes -= slotBytes(slot);
      if (this.socket.destroyed) continue;
      this.cork();
      if (slot.bytes.length > 0 && !this.socket.write(slot.bytes)) this.outputFull = true;
      for (const b of slot.tail ?? []) if (!this.socket.write(b)) this.outputFull = true;
      if (slot.close) {
        this.stopped = true;
        this.socket.end();
      }
    }
    if (this.head === this.slots.length) {
      this.slots = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
    if (this.inFlight < before) this.pump();
  }
}

/**
 * Past a full in-flight bound a connection holding no refused request reads on while what it has buffered of its next
 * request could still be a command the door answers itself (PING, ECHO, CLIENT SETNAME…); beyond this it waits paused.
 */
const PAST_GATE_READ_BYTES = 16 * 1024;
const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from("\r\n", "latin1");
/** Replies of a string this large are written as their value's own buffer (fillReply). */
const LARGE_REPLY_BYTES = 1024 * 1024;

function slotBytes(slot: Slot): number {
  let n = slot.bytes?.length ?? 0;
  for (const b of slot.tail ?? []) n += b.length;
  return n;
}

function unavailable(err: Error): RespValue {
  return { type: "error", value: `ERR qjm: this node's Redis cannot be reached: ${err.message.replace(/[\r\n]+/g, " ")}` };
}

/** A command queued after MULTI that the door runs itself at EXEC (exec_mixed.ts); null: one for the journal write. */
function doorQueued(route: Route, args: Buffer[]): DoorQueued | null {
  if (route.kind === "local") return { kind: "local", command: route.command };
  if (route.kind === "pubsub") return { kind: "pubsub", command: route.command };
  // COMMAND describes the node's Redis; its reply (COMMAND DOCS: hundreds of KiB) has no place in a journal record.
  if (route.kind === "read" && args[0].length === 7 && args[0].toString("latin1").toLowerCase() === "command") return { kind: "upstream" };
  return null;
}

/** Inside MULTI everything is queued (or refused into the transaction) but what ends or resets it, and QUIT. */
function queues(route: Route): boolean {
  if (route.kind === "tx") return route.command === "unwatch";
  if (route.kind === "local") return route.command !== "quit" && route.command !== "reset";
  return true;
}
