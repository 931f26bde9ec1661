/**
 * Pub/sub at the front door (pure; issue #12 item 5): Redis's commands and frames, the connection's subscriptions and
 * the door's index of who listens to what. The driver (door.ts, pubsub_bus.ts) carries PUBLISH between nodes over
 * NATS; this file decides every reply and every frame, as Redis 7.0 does:
 *
 * - SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE answer one `[kind, name, count]` frame per name (RESP3: a push frame `>`);
 *   UNSUBSCRIBE & co. without names drop every subscription of that kind (one frame each; none held: one frame with
 *   a nil name). The count is the connection's channels plus patterns; shard channels count apart, as on Redis.
 * - A message reaches a connection once per matching subscription: `message` for its channel, `pmessage` for each of
 *   its patterns that matches (so twice, when both do), `smessage` for a shard channel.
 * - Shard channels (SSUBSCRIBE, SPUBLISH) are their own namespace as on Redis (a PUBLISH never reaches an SSUBSCRIBE),
 *   with the same machinery: there are no shards, every node has every shard channel.
 * - RESP2 with any subscription is Redis's subscribed mode: only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and
 *   RESET; PING answers `["pong", arg or ""]`.
 *
 * Names are bytes (any byte); they are keyed by their latin1 text, one character per byte.
 */
import type { RespValue } from "../redis/resp_parser.js";
import { globMatch } from "./glob.js";
import { array, bulk, encodeResp, error, integer, type Protocol } from "./resp_encoder.js";

export type SubscriptionKind = "channel" | "pattern" | "shard";
export type PubSubCommand = "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe" | "sunsubscribe" | "publish" | "spublish" | "pubsub";
/** Redis's arities (the name included; negative: at least): the router refuses the rest with Redis's text. */
export const PUBSUB_ARITY: ReadonlyMap<string, number> = new Map<PubSubCommand, number>([
  ["subscribe", -2],
  ["unsubscribe", -1],
  ["psubscribe", -2],
  ["punsubscribe", -1],
  ["ssubscribe", -2],
  ["sunsubscribe", -1],
  ["publish", 3],
  ["spublish", 3],
  ["pubsub", -2],
]);

const SUBSCRIBE: Readonly<Record<string, SubscriptionKind>> = { subscribe: "channel", psubscribe: "pattern", ssubscribe: "shard" };
const UNSUBSCRIBE: Readonly<Record<string, SubscriptionKind>> = { unsubscribe: "channel", punsubscribe: "pattern", sunsubscribe: "shard" };
const WORDS: Readonly<Record<SubscriptionKind, { subscribe: string; unsubscribe: string }>> = {
  channel: { subscribe: "subscribe", unsubscribe: "unsubscribe" },
  pattern: { subscribe: "psubscribe", unsubscribe: "punsubscribe" },
  shard: { subscribe: "ssubscribe", unsubscribe: "sunsubscribe" },
};

/** What a RESP2 connection with a subscription may still send (Redis's subscribed mode). */
const ALLOWED_SUBSCRIBED = new Set(["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "ping", "quit", "reset"]);

/** Null when `name` may run on this connection now; else Redis's refusal (`fullName`: `pubsub|channels` style). */
export function subscribedModeRefusal(name: string, fullName: string, protocol: Protocol, subscriptions: number): string | null {
  if (protocol !== 2 || subscriptions === 0 || ALLOWED_SUBSCRIBED.has(name)) return null;
  return `ERR Can't execute '${fullName}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`;
}

/** PING on a RESP2 connection in subscribed mode: `["pong", arg or ""]`. */
export function subscribedPing(args: readonly Buffer[]): RespValue {
  return array([bulk("pong"), bulk(args.length === 2 ? args[1] : "")]);
}

/** One frame pushed to a subscriber, encoded at most once per protocol however many connections get it. */
export class PushFrame {
  private readonly encoded: [Buffer | null, Buffer | null] = [null, null];
  constructor(readonly items: RespValue[]) {}

  bytes(protocol: Protocol): Buffer {
    const i = protocol - 2;
    return (this.encoded[i] ??= encodeResp({ type: "push", items: this.items }, protocol));
  }
}

/** One connection's subscriptions; the door's PubSubIndex keeps the reverse map in step. */
export class Subscriptions {
  readonly channels = new Map<string, Buffer>();
  readonly patterns = new Map<string, Buffer>();
  readonly shards = new Map<string, Buffer>();

  of(kind: SubscriptionKind): Map<string, Buffer> {
    return kind === "channel" ? this.channels : kind === "pattern" ? this.patterns : this.shards;
  }

  /** What Redis's confirmations count for `kind`: channels and patterns together; shard channels apart. */
  countFor(kind: SubscriptionKind): number {
    return kind === "shard" ? this.shards.size : this.channels.size + this.patterns.size;
  }

  /** Every subscription: non-zero puts a RESP2 connection in subscribed mode (and under the pub/sub output bounds). */
  get total(): number {
    return this.channels.size + this.patterns.size + this.shards.size;
  }

  /** Bytes of the names held, every kind together (the door's index keeps it in step). */
  bytes = 0;
}

interface Entry<S> {
  name: Buffer;
  subscribers: Set<S>;
}

/** The reply of a (un)subscribe command: its frames, or an error (nothing changed). */
export type SubscribeOutcome = { frames: PushFrame[] } | { error: RespValue };

/** What the door's connections may hold (config respPubsubSubscriptions*Max, respPubsubNameBytes*Max). */
export interface PubSubBounds {
  /** Subscriptions one connection may hold, channels, patterns and shard channels together. */
  perConnection: number;
  /** Subscriptions all the door's connections may hold together (each costs the node's memory). */
  total?: number;
  /** Bytes of the names one connection holds: the count alone lets a connection hold that many of the longest. */
  perConnectionBytes?: number;
  /** Bytes of the names all the door's connections hold together. */
  totalBytes?: number;
}

/**
 * The door's index: for each channel, pattern and shard channel, the connections (of type S) subscribed. Every change
 * goes through here with the connection's own Subscriptions, so the two never disagree.
 */
export class PubSubIndex<S> {
  private readonly index: Record<SubscriptionKind, Map<string, Entry<S>>> = { channel: new Map(), pattern: new Map(), shard: new Map() };
  /** Subscriptions held over all connections, and the bytes of their names (one name counts once per subscription). */
  private held = 0;
  private heldBytes = 0;
  private readonly bounds: Required<PubSubBounds>;

  constructor(bounds: PubSubBounds) {
    const none = Number.MAX_SAFE_INTEGER;
    this.bounds = { total: none, perConnectionBytes: none, totalBytes: none, ...bounds };
  }

  /** SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE of `names` (at least one); refused whole past a bound. */
  subscribe(s: S, own: Subscriptions, kind: SubscriptionKind, names: readonly Buffer[]): SubscribeOutcome {
    const mine = own.of(kind);
    const fresh = new Set(names.map((n) => n.toString("latin1")).filter((k) => !mine.has(k)));
    let freshBytes = 0;
    for (const key of fresh) freshBytes += key.length;
    const refused = this.refusal(own, fresh.size, freshBytes);
    if (refused !== null) return { error: error(refused) };
    const frames = names.map((name) => {
      const key = name.toString("latin1");
      if (!mine.has(key)) {
        mine.set(key, name);
        own.bytes += key.length;
        this.add(kind, key, name, s);
      }
      return confirmation(WORDS[kind].subscribe, name, own.countFor(kind));
    });
    return { frames };
  }

  /** Why `count` more subscriptions of `bytes` name bytes are refused to `own`, or null. */
  private refusal(own: Subscriptions, count: number, bytes: number): string | null {
    const b = this.bounds;
    if (own.total + count > b.perConnection) {
      return `ERR qjm: a connection may hold at most ${b.perConnection} subscriptions (channels, patterns and shard channels: respPubsubSubscriptionsMax); it holds ${own.total}`;
    }
    if (this.held + count > b.total) {
      return `ERR qjm: this node's front door holds ${this.held} subscriptions over all its connections, at most ${b.total} (respPubsubSubscriptionsTotalMax)`;
    }
    if (own.bytes + bytes > b.perConnectionBytes) {
      return `ERR qjm: a connection may hold names of at most ${b.perConnectionBytes} bytes in all (channels, patterns and shard channels: respPubsubNameBytesMax); it holds ${own.bytes}, this command adds ${bytes}`;
    }
    if (this.heldBytes + bytes > b.totalBytes) {
      return `ERR qjm: this node's front door holds ${this.heldBytes} bytes of subscribed names over all its connections, at most ${b.totalBytes} (respPubsubNameBytesTotalMax); this command adds ${bytes}`;
    }
    return null;
  }

  /** UNSUBSCRIBE & co.: `names`, or every subscription of `kind` when none is named. */
  unsubscribe(s: S, own: Subscriptions, kind: SubscriptionKind, names: readonly Buffer[]): PushFrame[] {
    const mine = own.of(kind);
    const word = WORDS[kind].unsubscribe;
    if (names.length === 0 && mine.size === 0) return [confirmation(word, null, own.countFor(kind))];
    const targets = names.length > 0 ? names : [...mine.values()];
    return targets.map((name) => {
      const key = name.toString("latin1");
      if (mine.delete(key)) {
        own.bytes -= key.length;
        this.remove(kind, key, s);
      }
      return confirmation(word, name, own.countFor(kind));
    });
  }

  /** A connection closed or RESET: every subscription of it goes, without frames. */
  drop(s: S, own: Subscriptions): void {
    for (const kind of ["channel", "pattern", "shard"] as const) {
      for (const key of own.of(kind).keys()) this.remove(kind, key, s);
      own.of(kind).clear();
    }
    own.bytes = 0;
  }

  /**
   * A message on `channel` (a shard channel when `shard`): handed to `send` once per matching subscription, `message`
   * then `pmessage` for each matching pattern (`smessage` for a shard channel). Returns how many were handed (PUBLISH's
   * reply on the node it was published on).
   */
  deliver(shard: boolean, channel: Buffer, message: Buffer, send: (s: S, frame: PushFrame) => void): number {
    const steps = this.delivering(shard, channel, message, send);
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
    }
  }

  /**
   * deliver() in steps, for the door's turn budget (src/util/turn_budget.ts): it yields after each pattern matched and each
   * subscriber handed the message, so 5,000 patterns against a 20 KB channel, or 10,000 subscribers of one channel,
   * take many short turns instead of one long one. The subscriptions are those held when it started (one taken later
   * missed the message, as on Redis; one dropped meanwhile still gets it: it was published before).
   */
  *delivering(shard: boolean, channel: Buffer, message: Buffer, send: (s: S, frame: PushFrame) => void): Generator<void, number> {
    let receivers = 0;
    const direct = this.index[shard ? "shard" : "channel"].get(channel.toString("latin1"));
    const patterns = shard ? [] : [...this.index.pattern.values()];
    if (direct !== undefined) {
      const frame = new PushFrame([bulk(shard ? "smessage" : "message"), bulk(channel), bulk(message)]);
      for (const s of [...direct.subscribers]) {
        send(s, frame);
        receivers++;
        yield;
      }
    }
    for (const { name, subscribers } of patterns) {
      const hit = globMatch(name, channel);
      yield;
      if (!hit) continue;
      const frame = new PushFrame([bulk("pmessage"), bulk(name), bulk(channel), bulk(message)]);
      for (const s of [...subscribers]) {
        send(s, frame);
        receivers++;
        yield;
      }
    }
    return receivers;
  }

  /** PUBSUB CHANNELS / SHARDCHANNELS [pattern]: the channels with a subscriber on this door. */
  channels(shard: boolean, pattern: Buffer | null): Buffer[] {
    const names = [...this.index[shard ? "shard" : "channel"].values()].map((e) => e.name);
    return pattern === null ? names : names.filter((n) => globMatch(pattern, n));
  }

  /** PUBSUB NUMSUB / SHARDNUMSUB: each channel's subscribers on this door. */
  numsub(shard: boolean, names: readonly Buffer[]): number[] {
    const index = this.index[shard ? "shard" : "channel"];
    return names.map((n) => index.get(n.toString("latin1"))?.subscribers.size ?? 0);
  }

  /** PUBSUB NUMPAT: distinct patterns subscribed on this door (Redis 7 counts patterns, not subscriptions). */
  get patternCount(): number {
    return this.index.pattern.size;
  }

  /** Subscriptions held over all connections. */
  get subscriptions(): number {
    return this.held;
  }

  /** Bytes of the names held over all connections (a name counts once per subscription). */
  get subscribedBytes(): number {
    return this.heldBytes;
  }

  /** Distinct channels (plain and shard) with a subscriber on this door. */
  get channelCount(): number {
    return this.index.channel.size + this.index.shard.size;
  }

  private add(kind: SubscriptionKind, key: string, name: Buffer, s: S): void {
    const map = this.index[kind];
    let entry = map.get(key);
    if (entry === undefined) map.set(key, (entry = { name, subscribers: new Set() }));
    entry.subscribers.add(s);
    this.held++;
    this.heldBytes += key.length;
  }

  private remove(kind: SubscriptionKind, key: string, s: S): void {
    const map = this.index[kind];
    const entry = map.get(key);
    if (entry === undefined) return;
    if (entry.subscribers.delete(s)) {
      this.held--;
      this.heldBytes -= key.length;
    }
    if (entry.subscribers.size === 0) map.delete(key);
  }
}

function confirmation(word: string, name: Buffer | null, count: number): PushFrame {
  return new PushFrame([bulk(word), bulk(name), integer(count)]);
}

/** A parsed pub/sub command: what to do, or the error Redis answers (arity, an unknown PUBSUB subcommand). */
export type PubSubRequest =
  | { op: "subscribe"; kind: SubscriptionKind; names: Buffer[] }
  | { op: "unsubscribe"; kind: SubscriptionKind; names: Buffer[] }
  | { op: "publish"; shard: boolean; channel: Buffer; message: Buffer }
  | { op: "channels"; shard: boolean; pattern: Buffer | null }
  | { op: "numsub"; shard: boolean; names: Buffer[] }
  | { op: "numpat" }
  | { op: "help" }
  | { op: "error"; error: RespValue };

const arity = (name: string): PubSubRequest => ({ op: "error", error: error(`ERR wrong number of arguments for '${name}' command`) });

export function parsePubSub(command: PubSubCommand, args: readonly Buffer[]): PubSubRequest {
  const rest = args.slice(1);
  if (command in SUBSCRIBE) return rest.length === 0 ? arity(command) : { op: "subscribe", kind: SUBSCRIBE[command], names: rest };
  if (command in UNSUBSCRIBE) return { op: "unsubscribe", kind: UNSUBSCRIBE[command], names: rest };
  if (command === "publish" || command === "spublish") return rest.length !== 2 ? arity(command) : { op: "publish", shard: command === "spublish", channel: rest[0], message: rest[1] };
  if (rest.length === 0) return arity("pubsub");
  const sub = rest[0].toString("latin1").toLowerCase();
  const n = rest.length - 1;
  switch (sub) {
    case "channels":
    case "shardchannels":
      return n > 1 ? arity(`pubsub|${sub}`) : { op: "channels", shard: sub === "shardchannels", pattern: n === 1 ? rest[1] : null };
    case "numsub":
    case "shardnumsub":
      return { op: "numsub", shard: sub === "shardnumsub", names: rest.slice(1) };
    case "numpat":
      return n !== 0 ? arity("pubsub|numpat") : { op: "numpat" };
    case "help":
      return n !== 0 ? arity("pubsub|help") : { op: "help" };
    default:
      return { op: "error", error: error(`ERR unknown subcommand '${rest[0].toString("utf8", 0, 128).replace(/[\r\n]/g, " ")}'. Try PUBSUB HELP.`) };
  }
}

/** PUBSUB NUMSUB's reply: each channel and its count, flat (RESP2 and RESP3 alike, as Redis). */
export function numsubReply(names: readonly Buffer[], counts: readonly number[]): RespValue {
  return array(names.flatMap((n, i) => [bulk(n), integer(counts[i])]));
}

export const PUBSUB_HELP = [
  "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "CHANNELS [<pattern>]",
  "    Return the currently active channels matching a <pattern> (default: '*'), on this node.",
  "NUMPAT",
  "    Return number of subscriptions to patterns, on this node.",
  "NUMSUB [<channel> ...]",
  "    Return the number of subscribers for the specified channels, excluding",
  "    pattern subscriptions(default: no channels), on this node.",
  "SHARDCHANNELS [<pattern>]",
  "    Return the currently active shard level channels matching a <pattern> (default: '*'), on this node.",
  "SHARDNUMSUB [<shardchannel> ...]",
  "    Return the number of subscribers for the specified shard level channel(s), on this node.",
  "HELP",
  "    Prints this help.",
];

/**
 * Redis's `client-output-buffer-limit pubsub <hard> <soft> <seconds>` for one connection: closed once its waiting
 * reply bytes pass `hardBytes`, or stay above `softBytes` for `softMs`. Checked when bytes are added, as Redis does.
 */
export class OutputLimit {
  private softSinceMs: number | null = null;
  constructor(
    private readonly hardBytes: number,
    private readonly softBytes: number,
    private readonly softMs: number,
  ) {}

  /** Null: within bounds; else why the connection must be closed. */
  check(bytes: number, nowMs: number): string | null {
    if (bytes > this.hardBytes) return `${bytes} reply bytes waiting, over the hard bound ${this.hardBytes}`;
    if (bytes <= this.softBytes) {
      this.softSinceMs = null;
      return null;
    }
    this.softSinceMs ??= nowMs;
    if (nowMs - this.softSinceMs >= this.softMs) return `${bytes} reply bytes waiting, over the soft bound ${this.softBytes} for ${nowMs - this.softSinceMs} ms`;
    return null;
  }
}
