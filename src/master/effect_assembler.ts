/**
 * Groups the commands of the replication stream into records. The master writes a marker (a PUBLISH on a secret
 * channel, which Redis propagates in order) after each client command; the effects since the previous marker form
 * that command's record. Effects that belong to no client (expired or evicted keys) are taken as an orphan record.
 * MULTI/EXEC (scripts, transactions) and the link's own traffic (PING, SELECT 0, REPLCONF GETACK) are dropped.
 *
 * Client input must never cut the stream (issue #10): a script can PUBLISH anything, so a marker is recognised only
 * if it is on this incarnation's secret channel (128 random bits, chosen when the master starts its Redis, never
 * subscribed to, so PUBSUB CHANNELS does not reveal it) AND carries exactly the next marker number. Any other
 * PUBLISH is an ordinary effect. Anything else the master cannot journal (a SELECT of another database, a script's
 * COPY … DB n) is a "surprise": reported with the record it falls in, never an assertion, never a writer failure.
 */
import { randomBytes } from "node:crypto";
import type { Effect } from "../segment/record.js";
import { asciiEqualsIgnoreCase, isCommand, isReplicationNoise } from "./replication_link.js";

/** The prefix of every marker channel; the secret follows it. */
export const MARKER_CHANNEL_PREFIX = "__qjm:marker:";
/** Surprises kept per record: the rest are counted, not listed (a script can produce millions). */
export const SURPRISES_LISTED_MAX = 8;

/** A new secret marker channel: one per Redis incarnation. */
export function newMarkerChannel(): string {
  return MARKER_CHANNEL_PREFIX + randomBytes(16).toString("hex");
}

export interface AssembledRecord {
  marker: number;
  effects: Effect[];
  /** What the stream held that the master could not journal (bounded: SURPRISES_LISTED_MAX, then a count). */
  surprises: string[];
  /** The write's effects passed effectsBytesMax: they were dropped, not held (`effects` is empty). */
  overflowBytes?: number;
}

/** msgpack's framing of one effect or argument, at most: the count below bounds the record's payload. */
const FRAMING_BYTES = 5;

export type Assembled = AssembledRecord | null;

export class EffectAssembler {
  private effects: Effect[] = [];
  private effectBytes = 0;
  private surprises: string[] = [];
  private surprisesUnlisted = 0;
  /** The database the stream writes to: Redis SELECTs before the first command and on every change. */
  private db = "0";
  private readonly channel: Buffer;

  /** msgpack's framing of the effects held, counted against effectsBytesMax with their bytes. */
  private framingBytes = 0;
  /** Set once the effects since the last marker passed effectsBytesMax: the rest are counted, not held. */
  private overflowed = false;

  /**
   * `channel`: this incarnation's secret marker channel; `nextMarker`: the first marker the master will write;
   * `effectsBytesMax`: the most one record's effects may take (config writeEffectsBytesMax); bounds our memory.
   */
  constructor(
    channel: string,
    private nextMarker: number,
    private readonly effectsBytesMax = Number.POSITIVE_INFINITY,
  ) {
    this.channel = Buffer.from(channel);
  }

  /** Feeds one command of the stream; returns a record when the expected marker closes one. */
  push(args: Uint8Array[]): Assembled {
    if (this.isExpectedMarker(args)) {
      const overflowBytes = this.overflowed ? this.effectBytes + this.framingBytes : undefined;
      const record: AssembledRecord = { marker: this.nextMarker, effects: this.takeOrphans(), surprises: this.takeSurpriseList() };
      if (overflowBytes !== undefined) record.overflowBytes = overflowBytes;
      this.nextMarker++;
      return record;
    }
    // PING, SELECT 0 and REPLCONF (GETACK) are the link's own traffic; MULTI/EXEC wrap effects a record applies atomically anyway.
    if (isCommand(args, "select")) return this.onSelect(args);
    if (isReplicationNoise(args) || isCommand(args, "multi") || isCommand(args, "exec")) return null;
    if (this.db !== "0") {
      // Only database 0 is journaled: an effect elsewhere (the ACL denies SELECT 1, master_redis.ts guard) must not land in 0 on replay.
      this.surprise(`an effect in database ${printable(this.db)} was not journaled: ${printable(text(args[0]))}`);
      return null;
    }
    const copyDb = copyTargetDb(args);
    if (copyDb !== null && copyDb !== "0") {
      // A script's COPY … DB n reaches database n (the ACL cannot look at the argument; the door refuses it outside
      // scripts): journaled, every replica would write into its applied marker's database (apply_records.ts APPLIED_DB).
      this.surprise(`a COPY into database ${printable(copyDb)} was not journaled`);
      return null;
    }
    if (isCommand(args, "publish") && args.length === 3 && this.channel.equals(args[1])) {
      // Our channel, not our number: never a cut (it would shift every later record), kept as the data it is.
      this.surprise(`a PUBLISH on the marker channel with ${printable(text(args[2]))} where marker ${this.nextMarker} was due`);
    }
    this.framingBytes += FRAMING_BYTES * (args.length + 1);
    for (const a of args) this.effectBytes += a.length;
    if (this.effectBytes + this.framingBytes > this.effectsBytesMax) {
      // A script running millions of writes must not exhaust the heap: the record is refused anyway.
      this.overflowed = true;
      this.effects = [];
      return null;
    }
    // Copies: the caller may reuse its buffers (the assembler holds effects until the marker comes).
    this.effects.push(args.map((a) => Buffer.from(a)));
    return null;
  }

  get pendingEffects(): number {
    return this.overflowed ? Math.max(1, this.effects.length) : this.effects.length;
  }

  /** The effects since the last marker passed effectsBytesMax (and were dropped). */
  get overflow(): boolean {
    return this.overflowed;
  }

  get pendingBytes(): number {
    return this.effectBytes;
  }

  /** Surprises waiting to be reported (with the next record, or with orphans). */
  get pendingSurprises(): number {
    return this.surprises.length + this.surprisesUnlisted;
  }

  /** The marker the assembler waits for next. */
  get expectedMarker(): number {
    return this.nextMarker;
  }

  /** Effects seen since the last marker, as a record of their own. */
  takeOrphans(): Effect[] {
    const effects = this.effects;
    this.effects = [];
    this.effectBytes = 0;
    this.framingBytes = 0;
    this.overflowed = false;
    return effects;
  }

  /** Surprises seen since the last marker (they are reported with orphans, or with the next record). */
  takeSurprises(): string[] {
    return this.takeSurpriseList();
  }

  private isExpectedMarker(args: readonly Uint8Array[]): boolean {
    if (args.length !== 3 || !isCommand(args, "publish") || !this.channel.equals(args[1])) return false;
    return asciiEqualsIgnoreCase(args[2], String(this.nextMarker));
  }

  private onSelect(args: readonly Uint8Array[]): null {
    const db = args.length === 2 ? text(args[1]) : "";
    if (db !== this.db) {
      if (db !== "0") this.surprise(`the stream selected database ${printable(db)}`);
      this.db = db;
    }
    return null;
  }

  private surprise(what: string): void {
    if (this.surprises.length < SURPRISES_LISTED_MAX) this.surprises.push(what);
    else this.surprisesUnlisted++;
  }

  private takeSurpriseList(): string[] {
    const list = this.surprises;
    if (this.surprisesUnlisted > 0) list.push(`and ${this.surprisesUnlisted} more`);
    this.surprises = [];
    this.surprisesUnlisted = 0;
    return list;
  }
}

/** The database a COPY names with its DB option (Redis reads options from the fourth argument on; the last wins), else null. */
function copyTargetDb(args: readonly Uint8Array[]): string | null {
  if (!isCommand(args, "copy")) return null;
  let db: string | null = null;
  for (let i = 3; i < args.length; i++) {
    if (args[i].length === 2 && text(args[i]).toLowerCase() === "db" && i + 1 < args.length) db = text(args[++i]);
  }
  return db;
}

function text(arg: Uint8Array | undefined): string {
  return arg === undefined ? "" : Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString("latin1");
}

function printable(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
