/**
 * The RESP front door of a data node (issue #12, phase 1): a TCP server that speaks RESP2/RESP3 so that redis-cli,
 * ioredis and redis-benchmark work unchanged. The thin driver of the pure parts in this folder: requests are framed
 * (request_framing.ts), routed (router.ts) and answered by the door itself (local_commands.ts), by the node's own
 * Redis (upstream.ts: reads, COMMAND, INFO), or through the journal (writes, with the package's client over the node's
 * NATS connection: one client id for the door, a sequence number per write, retried across a failover like any
 * client's). Replies are encoded for the connection's protocol (resp_encoder.ts); session.ts keeps them in order.
 *
 * Bounds (src/config/config.ts): respConnectionsMax connections (more are answered `-ERR max number of clients
 * reached` and closed, as Redis does), respPipelineMax requests in flight per connection (then the socket is not
 * read), one request at most respRequestBytesMax bytes (0: the write bound, writeBytesMax or nats-server's
 * max_payload), respUpstreamConnections shared connections per protocol to the node's Redis.
 *
 * Pub/sub (pubsub.ts): the door's PubSubIndex knows which connection listens to what; a PUBLISH is delivered to this
 * door's subscribers at once and sent to every other door over NATS (pubsub_bus.ts), which delivers it to theirs.
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import type { NatsConnection } from "@nats-io/transport-node";
import { clientOn, QjmClientError, type OrderedWriter, type QjmClient, type WriteResult } from "../client/client.js";
import type { Config, ConsistencyLevel } from "../config/config.js";
import type { ReadGuard } from "../master/read_guard.js";
import { maxPayload } from "../nats/bus.js";
import { ErrorCode } from "../protocol/errors.js";
import type { ActorStatus } from "../protocol/messages.js";
import type { CommandTable } from "../redis/command_table.js";
import { encodeCommand, type RespValue } from "../redis/resp_parser.js";
import type { Logger } from "../util/log.js";
import { ConnectionState } from "./connection_state.js";
import { answerLocal, infoWithQjm, type LocalAnswer } from "./local_commands.js";
import type { Protocol } from "./resp_encoder.js";
import { refusalInTransaction } from "../redis/transaction.js";
import { noMultiRefusal, queueingRefusal } from "./transaction_state.js";
import { clientCommandRefusal } from "./client_command.js";
import { route, writeError, type LocalCommand, type Route } from "./router.js";
import { Session, type DoorServices, type WriteOutcome } from "./session.js";
import { Upstream } from "./upstream.js";
import { ReadPath } from "./read_path.js";
import { array, bulk, integer } from "./resp_encoder.js";
import { numsubReply, PUBSUB_HELP, PubSubIndex, type PubSubRequest, type PushFrame } from "./pubsub.js";
import { PubSubBus } from "./pubsub_bus.js";
import { subjects } from "../protocol/subjects.js";
import { DOOR_LOOP_PROBE_MS, InflightGate } from "./inflight_gate.js";
import { TurnBudget } from "../util/turn_budget.js";

export interface DoorOptions {
  id: string;
  port: number;
  config: Config;
  nc: NatsConnection;
  log: Logger;
  redisPort: number;
  redisPassword: string;
  /** The node's command table (undefined while it starts). */
  commands: () => CommandTable | undefined;
  /** The node's status: role, epoch, txids (INFO's qjm section). */
  status: () => ActorStatus;
  /** The node's role, cheaply (HELLO): building the whole status on every local command would cost each PING. */
  role: () => "master" | "replica";
  /** Null while the node may serve reads; else the refusal (read_gate.ts). Absent: always. */
  readRefusal?: () => string | null;
  /** What the node's Redis holds committed: a replica's applied txid, a serving master's committed txid. */
  visibleTxid?: () => number;
  /** The master role's guard against dirty reads, while this node is master. */
  guard?: () => ReadGuard | null;
}

/** What a write's body holds besides its command's RESP bytes: the map, the write id (a 64-character client id). */
const RESP_BODY_SLACK_BYTES = 256;

export class RespDoor implements DoorServices {
  readonly pipelineMax: number;
  readonly requestBytesMax: number;
  readonly outputBytesMax: number;
  readonly outputBytesPause: number;
  readonly waitMaxMs: number;
  readonly log: Logger;
  readonly budget: TurnBudget;
  readonly inflight: InflightGate;
  /** The loop-delay probe's timer (probeLoop). */
  private probe: NodeJS.Timeout | null = null;
  /** Pub/sub messages waiting to be delivered here, in order (each taken in steps within the turn budget). */
  private readonly deliveries: { steps: Generator<void, number>; bytes: number; done: (receivers: number) => void }[] = [];
  /** Channel and message bytes of `deliveries` (respPubsubBacklogBytesMax). */
  private deliveryBytes = 0;
  /** The deliveries ran out of the turn's budget: a later turn goes on with them. */
  private deliveryParked = false;
  /** Messages from other nodes dropped because the backlog was full (INFO qjm's dropped counts them too). */
  private backlogDropped = 0;
  private readonly reads: ReadPath;
  private readonly server: net.Server;
  private readonly sessions = new Set<Session>();
  private readonly upstream: Upstream;
  private readonly writer: QjmClient;
  private nextId = 1;
  /** Request bytes buffered over all connections (respBufferedBytesMax). */
  private bufferedTotal = 0;
  /** Connections closed because their unread replies passed respOutputBytesMax (INFO qjm). */
  closedForOutput = 0;
  /** Subscribed connections closed past pub/sub's output bounds (INFO qjm). */
  closedForPubsubOutput = 0;
  readonly pubsubOutput: { hardBytes: number; softBytes: number; softMs: number };
  private readonly subscribers: PubSubIndex<Session>;
  private bus: PubSubBus | null = null;
  /** PUBLISHes on this door (INFO qjm). */
  private published = 0;
  private redisVersion = "7.0.0";

  constructor(private readonly o: DoorOptions) {
    const c = o.config;
    this.log = o.log;
    this.pipelineMax = c.respPipelineMax;
    this.outputBytesMax = c.respOutputBytesMax;
    this.outputBytesPause = c.respOutputBytesPause;
    this.waitMaxMs = c.respWaitMaxMs;
    this.budget = new TurnBudget(c.respTurnBudgetMs);
    this.inflight = new InflightGate(c.respInflightMax, this.budget, c.respInflightBytesMax);
    this.requestBytesMax = c.respRequestBytesMax > 0 ? c.respRequestBytesMax : c.writeBytesMax > 0 ? c.writeBytesMax : maxPayload(o.nc);
    this.upstream = new Upstream({ port: o.redisPort, password: o.redisPassword, connections: c.respUpstreamConnections, connectTimeoutMs: c.redisStartTimeoutMs });
    this.writer = clientOn(o.nc, c);
    this.reads = new ReadPath({
      config: c,
      nc: o.nc,
      log: o.log,
      commands: o.commands,
      refusal: () => o.readRefusal?.() ?? null,
      visibleTxid: o.visibleTxid ?? (() => 0),
      guard: o.guard ?? (() => null),
      read: (protocol, args) => this.upstream.call(protocol, args),
      master: this.writer.master,
    });
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.pubsubOutput = { hardBytes: c.respPubsubOutputBytesMax, softBytes: c.respPubsubOutputBytesSoft, softMs: c.respPubsubOutputSoftMs };
    this.subscribers = new PubSubIndex<Session>({
      perConnection: c.respPubsubSubscriptionsMax,
      total: c.respPubsubSubscriptionsTotalMax,
      perConnectionBytes: c.respPubsubNameBytesMax,
      totalBytes: c.respPubsubNameBytesTotalMax,
    });
  }

  get port(): number {
    return this.o.port;
  }

  get connections(): number {
    return this.sessions.size;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.o.port, this.o.config.respHost, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.server.on("error", (err) => this.log.error({ err }, "front door: server error"));
    // Subscribed from the start, whatever the clients listen to: a SUBSCRIBE confirmed is then never ahead of NATS's
    // interest (a message published on another node right after it arrives), and the door holds one subscription.
    const subject = subjects(this.o.config.cluster);
    this.bus = new PubSubBus(this.o.nc, subject.pubsub(this.o.id), subject.pubsubAll, this.log, (m) => {
      if (this.deliver(m.shard, m.channel as Buffer, m.message as Buffer) !== null) return;
      if (this.backlogDropped++ % 1000 === 0) this.log.warn({ backlogBytes: this.deliveryBytes, dropped: this.backlogDropped }, "pub/sub: deliveries behind past respPubsubBacklogBytesMax, a message from another node dropped for this door's subscribers");
    });
    void this.learnVersion();
    this.probeLoop();
    this.log.info({ port: this.o.port, host: this.o.config.respHost, requestBytesMax: this.requestBytesMax }, "RESP front door listening");
  }

  /** Every DOOR_LOOP_PROBE_MS, the timer's lateness adjusts the requests the door lets in flight (InflightGate). */
  private probeLoop(): void {
    let due = performance.now() + DOOR_LOOP_PROBE_MS;
    this.probe = setInterval(() => {
      const now = performance.now();
      this.inflight.adjust(now - due, this.o.config.respLoopDelayTargetMs);
      due = now + DOOR_LOOP_PROBE_MS;
    }, DOOR_LOOP_PROBE_MS);
    this.probe.unref();
  }

  async stop(): Promise<void> {
    if (this.probe !== null) clearInterval(this.probe);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.bus?.close();
    for (const s of this.sessions) s.close();
    this.reads.close();
    this.upstream.close();
    await this.writer.close();
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.sessions.size >= this.o.config.respConnectionsMax) {
      socket.on("error", () => {});
      socket.end("-ERR max number of clients reached\r\n");
      return;
    }
    const addr = `${socket.remoteAddress}:${socket.remotePort}`;
    const level = this.o.config.respConsistency as ConsistencyLevel;
    const txLimits = { commandsMax: this.o.config.txCommandsMax, bytesMax: this.requestBytesMax, watchKeysMax: this.o.config.txWatchKeysMax };
    const state = new ConnectionState(this.nextId++, addr, `${socket.localAddress}:${socket.localPort}`, Date.now(), this.o.config.respPassword !== "", level, txLimits);
    this.sessions.add(new Session(socket, state, this));
  }

  /** HELLO reports the node's redis-server version (asked once; a default until it answers). */
  private async learnVersion(): Promise<void> {
    const reply = await this.upstream.call(2, [Buffer.from("INFO"), Buffer.from("server")]).catch(() => null);
    const version = reply?.type === "bulk" ? /redis_version:([^\r\n]+)/.exec(reply.value?.toString("latin1") ?? "")?.[1] : undefined;
    if (version !== undefined) this.redisVersion = version;
  }

  // ---- DoorServices ----

  route(args: readonly Buffer[], state: ConnectionState): Route {
    return route(args, { commands: this.o.commands(), authenticated: state.authenticated, protocol: state.protocol, subscriptions: state.pubsub.total });
  }

  pubsub(r: Exclude<PubSubRequest, { op: "error" }>, session: Session): PushFrame[] | RespValue | Promise<RespValue> {
    const own = session.state.pubsub;
    switch (r.op) {
      case "subscribe": {
        const out = this.subscribers.subscribe(session, own, r.kind, r.names);
        return "error" in out ? out.error : out.frames;
      }
      case "unsubscribe":
        return this.subscribers.unsubscribe(session, own, r.kind, r.names);
      case "publish":
        return this.publish(r.shard, r.channel, r.message);
      case "channels":
        return array(this.subscribers.channels(r.shard, r.pattern).map((n) => bulk(n)));
      case "numsub":
        return numsubReply(r.names, this.subscribers.numsub(r.shard, r.names));
      case "numpat":
        return integer(this.subscribers.patternCount);
      case "help":
        return array(PUBSUB_HELP.map((l) => ({ type: "simple", value: l })));
    }
  }

  /** PUBLISH / SPUBLISH: refused whole if the bus cannot carry it; else this door's receivers, and out to the others. */
  private publish(shard: boolean, channel: Buffer, message: Buffer): RespValue | Promise<RespValue> {
    if (this.deliveryBytes + channel.length + message.length > this.o.config.respPubsubBacklogBytesMax) {
      return { type: "error", value: `ERR qjm ${ErrorCode.OVERLOADED} this door's pub/sub deliveries are ${this.deliveryBytes} bytes behind (respPubsubBacklogBytesMax): publish again later` };
    }
    const refused = this.bus === null ? "ERR qjm: the front door is not started" : this.bus.publish(shard, channel, message);
    if (refused !== null) return { type: "error", value: refused };
    this.published++;
    return this.deliver(shard, channel, message)!.then((n) => integer(n));
  }

  /**
   * Queues a message for this door's subscribers: delivered in order, in steps within the turn budget. Null when the
   * backlog is past respPubsubBacklogBytesMax (not queued); else the receivers, once every one was handed it.
   */
  private deliver(shard: boolean, channel: Buffer, message: Buffer): Promise<number> | null {
    const bytes = channel.length + message.length;
    if (this.deliveryBytes + bytes > this.o.config.respPubsubBacklogBytesMax) return null;
    const steps = this.subscribers.delivering(shard, channel, message, (s, frame) => s.push(frame));
    const done = new Promise<number>((resolve) => this.deliveries.push({ steps, bytes, done: resolve }));
    this.deliveryBytes += bytes;
    if (!this.deliveryParked) this.runDeliveries();
    return done;
  }

  /** Delivers the queued messages, oldest first, until the turn's budget is spent; a later turn goes on. */
  private runDeliveries(): void {
    while (this.deliveries.length > 0) {
      const job = this.deliveries[0];
      for (;;) {
        if (!this.budget.spend()) {
          this.deliveryParked = true;
          return this.budget.later(() => {
            this.deliveryParked = false;
            this.runDeliveries();
          });
        }
        const r = job.steps.next();
        if (r.done !== true) continue;
        this.deliveries.shift();
        this.deliveryBytes -= job.bytes;
        job.done(r.value);
        break;
      }
    }
  }

  local(command: LocalCommand, args: readonly Buffer[], session: Session): LocalAnswer {
    const now = Date.now();
    // RESET leaves every channel and pattern (the connection's state is reset in answerLocal).
    if (command === "reset") this.subscribers.drop(session, session.state.pubsub);
    return answerLocal(command, args, session.state, {
      password: this.o.config.respPassword,
      redisVersion: this.redisVersion,
      role: this.o.role,
      self: session.asClient(),
      clients: () => [...this.sessions].map((s) => s.asClient()),
      nowMs: now,
    });
  }

  /** The node's applied (or committed) txid may have moved: reads waiting for it go on. */
  advanced(): void {
    this.reads.advanced();
  }

  readData(protocol: Protocol, args: readonly Buffer[], state: ConnectionState): Promise<RespValue> {
    // COMMAND describes the server, not the data: served whatever the node's phase (Redis too serves it while loading).
    if (args[0].length === 7 && args[0].toString("latin1").toLowerCase() === "command") return this.upstream.call(protocol, args);
    return this.reads.read(protocol, args, state);
  }

  waitTxid(txid: number, timeoutMs: number): Promise<boolean> {
    return this.reads.waitFor(txid, Date.now() + timeoutMs);
  }

  read(protocol: Protocol, args: readonly Buffer[]): Promise<RespValue> {
    return this.upstream.call(protocol, args);
  }

  finish(answer: Extract<LocalAnswer, { upstream: Buffer[] }>, reply: RespValue, _session: Session): RespValue {
    if (answer.then !== "info" || (reply.type !== "bulk" && reply.type !== "verbatim") || reply.value === null) return reply;
    const s = this.o.status();
    const prefix = reply.type === "verbatim" ? reply.value.subarray(0, 4) : Buffer.alloc(0);
    const text = reply.value.subarray(prefix.length).toString("utf8");
    const info = infoWithQjm(text, answer.upstream.slice(1), {
      node: this.o.id,
      role: s.role,
      health: s.health,
      epoch: s.epoch,
      committedTxid: s.committedTxid,
      // The master's Redis executed every write it journaled (committed or not yet): its position is the last txid.
      appliedTxid: s.role === "master" ? s.lastTxid : s.appliedTxid,
      connections: this.sessions.size,
      closedForOutput: this.closedForOutput,
      pubsub: {
        channels: this.subscribers.channelCount,
        patterns: this.subscribers.patternCount,
        published: this.published,
        received: this.bus?.received ?? 0,
        dropped: (this.bus?.dropped ?? 0) + this.backlogDropped,
        closedForOutput: this.closedForPubsubOutput,
      },
    });
    return { type: reply.type, value: Buffer.concat([prefix, Buffer.from(info, "utf8")]) };
  }

  ordered(): OrderedWriter {
    return this.writer.ordered();
  }

  write(writer: OrderedWriter, args: readonly Buffer[]): Promise<WriteOutcome> {
    // Decided before the write leaves: a large write's arguments are not held until it commits (views that live
    // through scavenges cost the loop: s24). A Redis error comes after effects only for a script.
    const errorAfterEffects = this.committedError(ErrorCode.REDIS_ERROR, args);
    // As its RESP bytes (one buffer on the bus, sent to Redis as is: s24), unless those would pass the master's write
    // bound where its msgpack form would not (RESP spends ~4 more bytes per argument).
    const resp = encodeCommand(args);
    const c = this.o.config;
    const bound = c.writeBytesMax > 0 ? c.writeBytesMax : maxPayload(this.o.nc);
    const sent = resp.length + RESP_BODY_SLACK_BYTES <= bound ? writer.writeResp(resp) : writer.write(args[0].toString("latin1"), ...args.slice(1));
    return this.outcome(sent, errorAfterEffects);
  }

  private async outcome(sent: Promise<WriteResult>, errorAfterEffects: boolean): Promise<WriteOutcome> {
    try {
      const result = await sent;
      return { ok: true, value: result.typed, txid: result.txid };
    } catch (err) {
      if (!(err instanceof QjmClientError)) throw err;
      const committed = err.code === ErrorCode.REDIS_ERROR ? errorAfterEffects : this.committedError(err.code, null);
      return { ok: false, error: writeError(err.code, err.message, err.outcomeUnknown), committed };
    }
  }

  async transaction(writer: OrderedWriter, tx: Buffer[][], watch: { txid: number; keys: Buffer[] } | null): Promise<WriteOutcome> {
    try {
      const result = await writer.transaction(tx, watch ?? undefined);
      return { ok: true, value: result.typed, txid: result.txid };
    } catch (err) {
      if (err instanceof QjmClientError) return { ok: false, error: writeError(err.code, err.message, err.outcomeUnknown), committed: this.committedError(err.code, null) };
      throw err;
    }
  }

  noMultiRefusal(args: readonly Buffer[], doorRun: boolean): string | null {
    const commands = this.o.commands();
    const no = noMultiRefusal(commands, args);
    if (no !== null || !doorRun) return no;
    // CLIENT's subcommands are the door's (SETINFO too, which Redis 7.0's table lacks).
    return args[0].length === 6 && args[0].toString("latin1").toLowerCase() === "client" ? clientCommandRefusal(args) : queueingRefusal(commands, args);
  }

  txRefusal(args: readonly Buffer[]): string | null {
    const commands = this.o.commands();
    const why = commands === undefined ? null : refusalInTransaction(commands, args);
    return why === null ? null : `ERR qjm ${why.code} ${why.message}`;
  }

  watchPoint(state: ConnectionState): Promise<number> {
    return this.reads.watchPoint(state);
  }

  /**
   * An error answered only once the write committed with its effects (its reply carries no txid): a script's Redis
   * error after it wrote (Redis keeps those writes), EFFECTS_REFUSED, a committed write whose reply was lost. A plain
   * command's Redis error had no effects.
   */
  private committedError(code: string, args: readonly Buffer[] | null): boolean {
    if (code === ErrorCode.EFFECTS_REFUSED || code === ErrorCode.REPLY_UNDELIVERABLE) return true;
    // A transaction's Redis errors come inside EXEC's reply (ok, with its txid); EXECABORT ran nothing.
    if (code !== ErrorCode.REDIS_ERROR || args === null) return false;
    const verdict = this.o.commands()?.classify(args);
    return verdict === undefined || (verdict.ok && verdict.script);
  }

  buffered(_session: Session, delta: number): void {
    this.bufferedTotal += delta;
    if (this.bufferedTotal <= this.o.config.respBufferedBytesMax) return;
    // Past the budget: the connection holding the most goes (pausing them all could stall every client for good).
    let largest: Session | null = null;
    for (const s of this.sessions) if (largest === null || s.bufferedBytes > largest.bufferedBytes) largest = s;
    if (largest === null) return;
    this.log.warn({ client: largest.state.id, addr: largest.state.addr, bufferedBytes: largest.bufferedBytes, total: this.bufferedTotal }, "front door: buffered requests past respBufferedBytesMax, closing the connection holding the most");
    largest.close();
  }

  closed(session: Session): void {
    this.subscribers.drop(session, session.state.pubsub);
    this.sessions.delete(session);
  }
}
