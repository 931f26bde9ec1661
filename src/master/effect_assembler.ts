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

export type Assembled = { marker: number; effects: Effect[] } | null;

export class EffectAssembler {
  private effects: Effect[] = [];
  private effectBytes = 0;

  /** Feeds one command of the stream; returns a record when a marker closes one. */
  push(args: Uint8Array[]): Assembled {
    if (isCommand(args, "publish") && args.length === 3 && MARKER.equals(args[1])) {
      const text = Buffer.from(args[2].buffer, args[2].byteOffset, args[2].byteLength).toString();
      const marker = Number(text);
      if (!Number.isSafeInteger(marker)) throw new AssertionError(`malformed marker ${text}`);
      const effects = this.effects;
      this.effects = [];
      this.effectBytes = 0;
      return { marker, effects };
    }
    // PING, SELECT 0 and REPLCONF (GETACK) are the link's own traffic; MULTI/EXEC wrap effects a record applies atomically anyway.
    if (isReplicationNoise(args) || isCommand(args, "multi") || isCommand(args, "exec")) return null;
    if (isCommand(args, "select")) {
      // Only database 0 is replicated: clients cannot SELECT, so anything else is a bug, not input.
      throw new AssertionError(`stream selected database ${Buffer.from(args[1] ?? []).toString()}`);
    }
    // Copies: the caller may reuse its buffers (the assembler holds effects until the marker comes).
    this.effects.push(args.map((a) => Buffer.from(a)));
    for (const a of args) this.effectBytes += a.length;
    return null;
  }

  get pendingEffects(): number {
    return this.effects.length;
  }

  get pendingBytes(): number {
    return this.effectBytes;
  }

  /** Effects seen since the last marker, as a record of their own. */
  takeOrphans(): Effect[] {
    const effects = this.effects;
    this.effects = [];
    this.effectBytes = 0;
    return effects;
  }
}
