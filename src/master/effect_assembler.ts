/**
 * Groups the commands of the replication stream into records. The master writes a marker (a PUBLISH on a private
 * channel, which Redis propagates in order) after each client command; the effects since the previous marker form
 * that command's record. Effects that belong to no client (expired or evicted keys) are taken as an orphan record.
 * MULTI/EXEC (scripts, transactions) and the link's own traffic (PING, SELECT 0, REPLCONF GETACK) are dropped.
 */
import type { Effect } from "../segment/record.js";
import { AssertionError } from "../util/assert.js";
import { isCommand, isReplicationNoise } from "./replication_link.js";

export const MARKER_CHANNEL = "__qjm:marker";
const MARKER = Buffer.from(MARKER_CHANNEL);

/** `overflowBytes`: the write's effects passed effectsBytesMax; they were dropped, not held (`effects` is empty). */
export type Assembled = { marker: number; effects: Effect[]; overflowBytes?: number } | null;

/** msgpack's framing of one effect or argument, at most: the count below bounds the record's payload. */
const FRAMING_BYTES = 5;

export class EffectAssembler {
  private effects: Effect[] = [];
  private effectBytes = 0;
  /** msgpack's framing of the effects held, counted against effectsBytesMax with their bytes. */
  private framingBytes = 0;
  /** Set once the effects since the last marker passed effectsBytesMax: the rest are counted, not held. */
  private overflowed = false;

  /** `effectsBytesMax`: the most one record's effects may take (config writeEffectsBytesMax); bounds our memory. */
  constructor(private readonly effectsBytesMax = Number.POSITIVE_INFINITY) {}

  /** Feeds one command of the stream; returns a record when a marker closes one. */
  push(args: Uint8Array[]): Assembled {
    if (isCommand(args, "publish") && args.length === 3 && MARKER.equals(args[1])) {
      const text = Buffer.from(args[2].buffer, args[2].byteOffset, args[2].byteLength).toString();
      const marker = Number(text);
      if (!Number.isSafeInteger(marker)) throw new AssertionError(`malformed marker ${text}`);
      const overflowBytes = this.overflowed ? this.effectBytes + this.framingBytes : undefined;
      const effects = this.takeOrphans();
      return overflowBytes === undefined ? { marker, effects } : { marker, effects, overflowBytes };
    }
    // PING, SELECT 0 and REPLCONF (GETACK) are the link's own traffic; MULTI/EXEC wrap effects a record applies atomically anyway.
    if (isReplicationNoise(args) || isCommand(args, "multi") || isCommand(args, "exec")) return null;
    if (isCommand(args, "select")) {
      // Only database 0 is replicated: clients cannot SELECT, so anything else is a bug, not input.
      throw new AssertionError(`stream selected database ${Buffer.from(args[1] ?? []).toString()}`);
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

  /** Effects seen since the last marker, as a record of their own. */
  takeOrphans(): Effect[] {
    const effects = this.effects;
    this.effects = [];
    this.effectBytes = 0;
    this.framingBytes = 0;
    this.overflowed = false;
    return effects;
  }
}
