/**
 * The redis-qjm client (issue #11 item 3): what the CLI, the tests and the bench write through.
 *
 * Each connection is one client id (128 random bits, base64url); each write gets the next sequence number and keeps
 * it, with the id, across its retries. A write is retried on no responders, a timeout, NO_QUORUM, NOT_WRITER and
 * OVERLOADED, with jittered exponential backoff, for `retryForMs`; never on a definite answer. A master that keeps
 * the dedupe window answers a retry of a committed write with the original reply (`duplicate: true`) instead of
 * applying it again. Requests take the bus's path (src/nats/bus.ts), so large values travel as fragments.
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { loadConfig, type Config } from "../config/config.js";
import { CLIENT_USER, findNatsCredentials } from "../nats/auth.js";
import { connectBus, request, requestAll } from "../nats/bus.js";
import { clientTls, tlsHint, type NatsTls } from "../nats/tls.js";
import { decode } from "../protocol/codec.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { heartbeatOf, isClientId, type ActorStatus, type WriteId } from "../protocol/messages.js";
import { subjects, type Subjects } from "../protocol/subjects.js";
import { plainReply } from "../redis/reply_value.js";
import type { ReplyValue } from "../segment/record.js";
import { OrderedWrites, type OrderedFailure, type WriteRequestBody } from "./ordered_writes.js";
import { MasterChoice, type MasterHeard } from "./master_choice.js";
import { backoffMs, verdictOf } from "./retry.js";

export interface ConnectOptions {
  /** NATS server URL(s); default $QJM_NATS_URL or nats://127.0.0.1:4222. */
  servers?: string | string[];
  /**
   * Credentials file; default $QJM_NATS_CREDS_FILE, else `<QJM_DATA_DIR>/credentials/client.creds` when it exists
   * (`npm start` writes it). null: connect without credentials.
   */
  credsFile?: string | null;
  /**
   * TLS: the CA that signed nats-server's certificate and the client certificate to present (`{ caFile, certFile,
   * keyFile }`, or PEM text as `ca`, `cert`, `key`). Default: with $QJM_TLS=1 or a `tls://` server, $QJM_TLS_CA,
   * $QJM_TLS_CERT and $QJM_TLS_KEY, each by default under `<QJM_DATA_DIR>/tls` (`npm start --tls` writes them).
   * null: plain.
   */
  tls?: NatsTls | null;
  /** Cluster name; default $QJM_CLUSTER or "default". */
  cluster?: string;
  /** One attempt's timeout; default twice the quorum timeout. */
  timeoutMs?: number;
  /** How long a write is retried (with the same id) before its last failure is thrown; default clientRetryForMs. */
  retryForMs?: number;
  /** The connection's name in nats-server's monitoring. */
  name?: string;
}

/** A Redis reply as the master passes it on: nil, integer, text, bytes, or arrays of them (an error in EXEC's array: `{ err }`). */
export type Reply = null | number | bigint | string | Uint8Array | { err: string } | Reply[];

/**
 * Redis's reply with its type: a status (`+OK`) is a string, a bulk string its bytes (a Uint8Array), an integer a
 * number (a bigint past ±2^53, exact), nil null, an array an array. `reply` is the same with bulk strings as UTF-8 text (what ioredis's `call` gives).
 */
export type TypedReply = ReplyValue;

export interface WriteResult {
  txid: number;
  reply: Reply;
  typed: TypedReply;
  /** The write had committed already (an earlier attempt): this is its original reply; it was not applied again. */
  duplicate: boolean;
  /** Attempts it took (1: the first was answered). */
  attempts: number;
}

/** `CLOSED`: the client was closed before the write settled (its outcome is unknown if an attempt was sent). */
export type ClientErrorCode = ErrorCode | "CLOSED";

/** A write that failed: its code, and whether it may have been applied all the same. */
export class QjmClientError extends Error {
  override name = "QjmClientError";
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    /** True when an attempt may have committed the write (a timeout, NO_QUORUM…): check before writing it again. */
    readonly outcomeUnknown: boolean,
    /** Attempts made (1 when it was not retried). */
    readonly attempts: number,
    /** The write's id, when it had one. */
    readonly writeId: WriteId | null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export type WriteArg = string | number | Uint8Array;

export interface QjmClient {
  /** This connection's client id (every write's id is `{ client: id, seq }`). */
  readonly id: string;
  write(command: string, ...args: WriteArg[]): Promise<WriteResult>;
  /**
   * Several commands as one transaction (MULTI … EXEC on the master, one record, applied atomically everywhere):
   * the reply is EXEC's array, an error of a command inside it as `{ err }`; a refused command refuses it all
   * (EXECABORT, COMMAND_REFUSED). Retried with its id like a write: applied once.
   */
  transaction(commands: WriteArg[][], watch?: TxWatch): Promise<WriteResult>;
  /**
   * A group of writes applied in the order they are written, pipelined (a Redis connection's writes: the front door
   * opens one per connection): retried together, in order, across a failover (ordered_writes.ts).
   */
  ordered(): OrderedWriter;
  /** Every actor's status (master, journal nodes, replicas) that answers within the status timeout. */
  status(): Promise<ActorStatus[]>;
  /** Cluster events (masked, restored, recovery decisions…), decoded, from now on; `return()` (or `break`) stops them. */
  events(): AsyncIterableIterator<Record<string, unknown>>;
  /**
   * The master its writes go to now (master_choice.ts), for whoever asks the master something else on this client's
   * knowledge (a door's read index); `failed` when it did not answer as master. Null: the queue group.
   */
  readonly master: { target(): string | null; failed(id: string | null): void };
  close(): Promise<void>;
}

export interface OrderedWriter {
  write(command: string, ...args: WriteArg[]): Promise<WriteResult>;
  /**
   * A command as its RESP bytes (one array of bulk strings, exactly; the master refuses anything else as BAD_REQUEST):
   * one byte string on the bus, sent to Redis as is, rather than an argument each (the front door's large writes).
   */
  writeResp(resp: Uint8Array): Promise<WriteResult>;
  transaction(commands: WriteArg[][], watch?: TxWatch): Promise<WriteResult>;
}

/** WATCH: the transaction is aborted (reply nil) if a key was modified by a record after `txid` (what the watcher had seen). */
export interface TxWatch {
  txid: number;
  keys: WriteArg[];
}

export async function connect(options: ConnectOptions = {}): Promise<QjmClient> {
  const config = loadConfig();
  const credsFile = options.credsFile === undefined ? findNatsCredentials(config.natsCredsFile, config.dataDir, CLIENT_USER) : options.credsFile;
  const servers = options.servers ?? config.natsUrl;
  // A tls:// server among those given asks for TLS as QJM_TLS=1 does.
  const tls = options.tls === undefined ? clientTls({ ...config, natsUrl: [servers].flat().join(",") }) : options.tls;
  let nc: NatsConnection;
  try {
    nc = await connectBus(servers, options.name ?? "redis-qjm-client", credsFile, { tls });
  } catch (err) {
    const why = (err as Error).message;
    throw new QjmClientError(ErrorCode.TIMEOUT, `cannot reach NATS at ${String(servers)}: ${why}${tlsHint(why, tls !== null)}`, false, 0, null, { cause: err });
  }
  const client = new ClientImpl(nc, subjects(options.cluster ?? config.cluster), config, {
    timeoutMs: options.timeoutMs ?? config.quorumTimeoutMs * 2,
    retryForMs: options.retryForMs ?? config.clientRetryForMs,
  }, true);
  // A moment for the master's heartbeat (one every masterHeartbeatIntervalMs), so that a first write goes to it and not
  // to the queue group, where a frozen master may still hold its place; none heard: the queue group, as before.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.masterHeard, new Promise<void>((resolve) => (timer = setTimeout(resolve, config.masterHeartbeatIntervalMs * 2)))]);
  clearTimeout(timer);
  return client;
}

/**
 * A client over a NATS connection the caller owns (a data node's RESP front door writes through its node's own
 * connection): the same writes, ids and retries; close() leaves the connection open.
 */
export function clientOn(nc: NatsConnection, config: Config): QjmClient {
  return new ClientImpl(nc, subjects(config.cluster), config, { timeoutMs: config.quorumTimeoutMs * 2, retryForMs: config.clientRetryForMs }, false);
}

/** A reply that says the node no longer serves writes. */
function notServing(reply: unknown): boolean {
  const code = (reply as { code?: unknown } | null)?.code;
  return code === ErrorCode.NOT_WRITER || code === ErrorCode.NO_QUORUM;
}

/** What an attempt's race yields when a new master was elected first. */
const NEW_MASTER = Symbol("new master");

/** 128 random bits, base64url: 22 characters of [A-Za-z0-9_-], a valid client id. */
export function newClientId(): string {
  return randomBytes(16).toString("base64url");
}

class ClientImpl implements QjmClient {
  readonly id = newClientId();
  private seq = 0;
  private closed = false;
  private readonly closing: Promise<void>;
  private markClosed!: () => void;
  private readonly subscriptions = new Set<Subscription>();
  /**
   * Settles when a new master starts serving (its first heartbeat or reply in a higher epoch): an attempt sent to the
   * old one may wait for a reply that never comes (a killed, frozen or fenced master), so it is sent again at once,
   * with the same id (issue #11).
   */
  private readonly waitingForMaster = new Set<() => void>();
  /**
   * The master writes go to (`write.<id>`), from its heartbeats and the writes' replies (master_choice.ts), rather than
   * the queue group, where a frozen master keeps its place until nats-server drops its connection.
   */
  private readonly choice = new MasterChoice();
  readonly master = { target: (): string | null => this.choice.target(), failed: (id: string | null): void => this.choice.failed(id) };
  /** Settles once a master serving was heard (connect waits for it a moment: a first write then goes to it). */
  readonly masterHeard: Promise<void>;
  private markMasterHeard!: () => void;

  constructor(
    private readonly nc: NatsConnection,
    private readonly s: Subjects,
    private readonly config: Config,
    private readonly limits: { timeoutMs: number; retryForMs: number },
    /** close() closes the NATS connection too (one `connect` made). */
    private readonly ownsConnection: boolean,
  ) {
    this.closing = new Promise((resolve) => (this.markClosed = resolve));
    this.masterHeard = new Promise((resolve) => (this.markMasterHeard = resolve));
    this.watchMasters();
    void this.watchElections();
    void this.watchLink();
  }

  /**
   * Our own link to NATS failed over (its server died): a request sent through the old server, or its reply, may be
   * lost. Unanswered writes go again at once through the new one (same ids) rather than after their timeout.
   */
  private async watchLink(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (this.closed) return;
      if (s.type === "reconnect") for (const resend of [...this.waitingForMaster]) resend();
    }
  }

  /**
   * Masters' heartbeats (`hb.master.<id>`: only `<id>` may publish there), at masterHeartbeatIntervalMs: which one
   * serves, in which epoch. Not the writerElected event: every actor may publish events, in any name. A nats-server
   * whose permissions predate this refuses the subscription: writes then learn the master from their replies only.
   */
  private watchMasters(): void {
    const sub = this.nc.subscribe(this.s.heartbeat("master", "*"), {
      callback: (err, msg) => {
        if (err !== null || this.closed) return;
        const id = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
        const hb = heartbeatOf(msg.data, "master", id);
        if (hb === null || typeof hb.epoch !== "number") return;
        this.masterNamed({ id, epoch: hb.epoch, serving: hb.health === "writing" });
      },
    });
    this.subscriptions.add(sub);
  }

  /** A heartbeat or a reply named a master: a new one serving gets what waits for an answer at once. */
  private masterNamed(h: MasterHeard): void {
    if (!this.choice.heard(h)) return;
    this.markMasterHeard();
    for (const resend of [...this.waitingForMaster]) resend();
  }

  private async watchElections(): Promise<void> {
    for await (const event of this.events()) {
      if (event.type === "masterReconnected" && this.fromMaster(event)) {
        // Our unanswered writes' replies would be refused by the server the master failed over to: send them again.
        for (const resend of [...this.waitingForMaster]) resend();
      }
    }
  }

  /** An event of the master this client writes to (any master's while it knows none). */
  private fromMaster(event: Record<string, unknown>): boolean {
    const source = typeof event.source === "string" ? event.source : "";
    const known = this.choice.known;
    return known === null ? source.startsWith("master.") : source === `master.${known}`;
  }

  write(command: string, ...args: WriteArg[]): Promise<WriteResult> {
    return this.send({ args: [command, ...args] });
  }

  transaction(commands: WriteArg[][], watch?: TxWatch): Promise<WriteResult> {
    return this.send(watch === undefined ? { tx: commands } : { tx: commands, watch });
  }

  private async send(request: WriteRequestBody): Promise<WriteResult> {
    const id: WriteId = { client: this.id, seq: ++this.seq };
    const body = { ...request, id };
    const deadline = Date.now() + this.limits.retryForMs;
    let unknown = false;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new QjmClientError("CLOSED", "the client was closed", unknown, attempt - 1, id);
      const failure = await this.attempt(body);
      if ("txid" in failure) return { ...failure, attempts: attempt };
      const verdict = verdictOf(failure.code);
      unknown ||= verdict.outcome !== "notApplied";
      // Sent again at once to a master just elected (same id: the dedupe window answers it if it had committed).
      const pause = "newMaster" in failure ? 0 : backoffMs(attempt, this.config, Math.random);
      if (!verdict.retry || Date.now() + pause > deadline) {
        const why = verdict.retry ? ` (retried for ${this.limits.retryForMs} ms)` : "";
        throw new QjmClientError(failure.code, `${failure.message}${why}`, verdict.outcome === "applied" ? false : unknown, attempt, id, { cause: failure.cause });
      }
      await Promise.race([new Promise((resolve) => setTimeout(resolve, pause)), this.closing]);
    }
  }

  ordered(): OrderedWriter {
    const group = new OrderedWrites<Omit<WriteResult, "attempts">>({
      nextId: () => ({ client: this.id, seq: ++this.seq }),
      attempt: async (body) => {
        const r = await this.attempt(body);
        return "txid" in r ? { ok: true, result: r } : { ok: false, ...r };
      },
      pauseMs: (round) => backoffMs(round, this.config, Math.random),
      sleep: (ms) => Promise.race([new Promise<void>((resolve) => setTimeout(resolve, ms)), this.closing]),
      now: () => Date.now(),
      retryForMs: this.limits.retryForMs,
      closed: () => this.closed,
    });
    const retryForMs = this.limits.retryForMs;
    const send = (request: WriteRequestBody): Promise<WriteResult> =>
      group.write(request).then(
        ({ result, attempts }) => ({ ...result, attempts }),
        (f: OrderedFailure) => {
          const why = f.retried ? ` (retried for ${retryForMs} ms)` : "";
          throw new QjmClientError(f.code, `${f.message}${why}`, f.outcomeUnknown, f.attempts, f.id, { cause: f.cause });
        },
      );
    return {
      write: (command, ...args) => send({ args: [command, ...args] }),
      writeResp: (resp) => send({ resp }),
      transaction: (commands, watch) => send(watch === undefined ? { tx: commands } : { tx: commands, watch }),
    };
  }

  /** One attempt: the result, or the failure's code and message (a transport failure is TIMEOUT). */
  private async attempt(body: unknown): Promise<Omit<WriteResult, "attempts"> | { code: ErrorCode; message: string; cause?: unknown; newMaster?: true }> {
    let reply: unknown;
    const master = this.choice.target();
    // Not answered as master (stepped down, gone, frozen): the queue group, until a heartbeat or a reply names one.
    const forget = (): void => this.choice.failed(master);
    try {
      // One waiter per attempt, removed with it: nothing accumulates between elections.
      let resend = (): void => {};
      const elected = new Promise<typeof NEW_MASTER>((resolve) => (resend = () => resolve(NEW_MASTER)));
      this.waitingForMaster.add(resend);
      try {
        reply = await Promise.race([request(this.nc, master === null ? this.s.write : this.s.writeTo(master), body, this.limits.timeoutMs), elected]);
        if (notServing(reply)) forget();
      } finally {
        this.waitingForMaster.delete(resend);
      }
      if (reply === NEW_MASTER) return { code: ErrorCode.TIMEOUT, message: "a new master was elected (or the master's link to NATS failed over) while the write waited for its answer", newMaster: true };
      const named = masterOfReply(reply);
      if (named !== null) this.masterNamed(named);
    } catch (err) {
      forget();
      if (err instanceof QjmError) return { code: err.code, message: err.message, cause: err };
      return { code: ErrorCode.TIMEOUT, message: (err as Error).message, cause: err };
    }
    return parseWriteReply(reply);
  }

  async status(): Promise<ActorStatus[]> {
    return (await requestAll(this.nc, this.s.status, {}, this.config.statusTimeoutMs)) as ActorStatus[];
  }

  events(): AsyncIterableIterator<Record<string, unknown>> {
    // Subscribed now, not at the first next(): no event published after events() returns is missed.
    const sub = this.nc.subscribe(this.s.events);
    this.subscriptions.add(sub);
    const done = (): void => {
      sub.unsubscribe();
      this.subscriptions.delete(sub);
    };
    const events = decodedEvents(sub, done);
    // return() first ends the subscription: a generator waiting for its next event cannot run a return() itself.
    return {
      next: () => events.next(),
      return: async () => {
        done();
        return await events.return(undefined);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.markClosed();
    for (const sub of this.subscriptions) sub.unsubscribe();
    if (this.ownsConnection) await this.nc.close();
  }
}

async function* decodedEvents(sub: Subscription, done: () => void): AsyncGenerator<Record<string, unknown>, void, undefined> {
  try {
    for await (const msg of sub) {
      let event: unknown;
      try {
        event = decode(msg.data);
      } catch {
        continue; // not msgpack: someone else's message on the subject
      }
      if (typeof event === "object" && event !== null && !Array.isArray(event)) yield event as Record<string, unknown>;
    }
  } finally {
    done();
  }
}

/** The master a write's ok reply names (older masters name none). */
function masterOfReply(v: unknown): MasterHeard | null {
  const r = v as { ok?: unknown; master?: unknown; epoch?: unknown } | null;
  if (r?.ok !== true || !isClientId(r.master) || typeof r.epoch !== "number") return null;
  return { id: r.master, epoch: r.epoch, serving: true };
}

/** A master's reply, checked: the result, or its error (a malformed reply is INTERNAL: the outcome is unknown). */
export function parseWriteReply(v: unknown): Omit<WriteResult, "attempts"> | { code: ErrorCode; message: string } {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { code: ErrorCode.INTERNAL, message: "the write's reply is not a map" };
  const r = v as Record<string, unknown>;
  if (r.ok === false) {
    const code = typeof r.code === "string" && r.code in ErrorCode ? (r.code as ErrorCode) : ErrorCode.INTERNAL;
    return { code, message: typeof r.message === "string" ? r.message : code };
  }
  if (r.ok !== true || typeof r.txid !== "number" || !Number.isSafeInteger(r.txid) || r.txid < 1) {
    return { code: ErrorCode.INTERNAL, message: "the write's reply has no ok flag or txid" };
  }
  const typed = (r.reply ?? null) as TypedReply;
  return { txid: r.txid, reply: plainReply(typed), typed, duplicate: r.duplicate === true };
}
