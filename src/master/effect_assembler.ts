/**
 * Groups the commands of the replication stream into records. The master writes a marker (a PUBLISH on a private
 * channel, which Redis propagates in order) after each client command; the effects since the previous marker form
 * that command's record. Effects that belong to no client (expired or evicted keys) are taken as an orphan record.
 * MULTI/EXEC (scripts, transactions) and PING / SELECT 0 are dropped: each record is applied atomically anyway.
 */
import type { Effect } from "../segment/record.js";
import { AssertionError } from "../util/assert.js";

export const MARKER_CHANNEL = "__qjm:marker";
const MARKER = Buffer.from(MARKER_CHANNEL);

function is(arg: Uint8Array | undefined, upper: string): boolean {
  if (arg === undefined || arg.length !== upper.length) return false;
  for (let i = 0; i < upper.length; i++) {
    const c = arg[i] >= 97 && arg[i] <= 122 ? arg[i] - 32 : arg[i];
    if (c !== upper.charCodeAt(i)) return false;
  }
  return true;
}

export type Assembled = { marker: number; effects: Effect[] } | null;

export class EffectAssembler {
  private effects: Effect[] = [];
  private effectBytes = 0;

  /** Feeds one command of the stream; returns a record when a marker closes one. */
  push(args: Uint8Array[]): Assembled {
    const name = args[0];
    if (is(name, "PUBLISH") && args.length === 3 && Buffer.compare(Buffer.from(args[1].buffer, args[1].byteOffset, args[1].byteLength), MARKER) === 0) {
      const marker = Number(Buffer.from(args[2]).toString());
      if (!Number.isSafeInteger(marker)) throw new AssertionError(`malformed marker ${Buffer.from(args[2]).toString()}`);
      const effects = this.effects;
      this.effects = [];
      this.effectBytes = 0;
      return { marker, effects };
    }
    if (is(name, "PING") || is(name, "MULTI") || is(name, "EXEC")) return null;
    if (is(name, "SELECT")) {
      // Only database 0 is replicated: clients cannot SELECT, so anything else is a bug, not input.
      if (args.length !== 2 || Buffer.from(args[1]).toString() !== "0") throw new AssertionError(`stream selected database ${Buffer.from(args[1] ?? []).toString()}`);
      return null;
    }
    // Copies: the stream's buffers are slices of the socket's chunks.
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
