/**
 * What a replica does with what it hears beside its reads (issue #13 P4), pure, for both of its drivers (replica.ts
 * and the simulator's sim_replica.ts): the master's commit hints and batch fan-outs, as NATS delivers them (msgpack
 * bytes), go to the FanoutBuffer and the ReplicaCore; before each read the buffer's committed records, if it holds
 * the next ones, are applied instead (`take`). It counts where applied records came from (status's `appliedFrom`; the
 * simulator's sweep summary), so that both drivers count alike.
 */
import { decode } from "../protocol/codec.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { parseBatchFanout, parseCommitHint } from "../protocol/messages.js";
import type { FanoutBuffer } from "./fanout_buffer.js";
import type { ReadOutcome, ReplicaCore } from "./replica_core.js";

/** What a heard message did: `wake`, end the idle pause (a commit not applied yet); `ignored`, why it was dropped. */
export type Heard = { wake: boolean; ignored: null } | { wake: false; ignored: { code: string; message: string } };

export class ReplicaFeed {
  /** Records applied from the fan-out and from journal node reads, and fan-outs ignored (malformed or failing checks). */
  readonly sources = { fanout: 0, read: 0, badFanouts: 0 };

  /** `buffer` null: the fan-out is off (replicaFanoutBytesMax 0), hints only wake reads. */
  constructor(readonly buffer: FanoutBuffer | null) {}

  /**
   * A commit hint: it counts for the buffer's records of its own epoch, and ends the idle pause if it names a commit not
   * applied yet. `core` null: none yet (the driver is starting or bootstrapping); the buffer still learns it.
   */
  hint(core: ReplicaCore | null, data: Uint8Array): Heard {
    let hint: { epoch: number; committedTxid: number };
    try {
      hint = parseCommitHint(decode(data));
    } catch (err) {
      return { wake: false, ignored: { code: err instanceof QjmError ? err.code : ErrorCode.BAD_REQUEST, message: (err as Error).message } };
    }
    this.buffer?.onCommit(hint.epoch, hint.committedTxid);
    return { wake: core?.onHint(hint.committedTxid) === true, ignored: null };
  }

  /** A batch fan-out: its records are kept until their epoch commits them; its commit index is heard as a hint's. */
  fanout(core: ReplicaCore | null, data: Uint8Array): Heard {
    if (this.buffer === null) return { wake: false, ignored: { code: ErrorCode.BAD_REQUEST, message: "the fan-out is off" } };
    let committedTxid: number;
    try {
      const b = parseBatchFanout(decode(data));
      committedTxid = b.committedTxid;
      if (this.buffer.onBatch(b) !== "kept") throw new QjmError(ErrorCode.BAD_REQUEST, "its records fail the checks");
    } catch (err) {
      this.sources.badFanouts++;
      return { wake: false, ignored: { code: err instanceof QjmError ? err.code : ErrorCode.BAD_REQUEST, message: (err as Error).message } };
    }
    return { wake: core?.onHint(committedTxid) === true, ignored: null };
  }

  /**
   * The next records (from `core`'s applied + 1, at most `recordsMax`) if the buffer holds them committed by their own
   * epoch, as the core's outcome of applying them, and the commit index that covered them; null: read them from a node.
   */
  take(core: ReplicaCore, recordsMax: number): { outcome: ReadOutcome; committedTxid: number } | null {
    const records = this.buffer?.take(core.appliedTxid + 1, recordsMax) ?? [];
    if (records.length === 0) return null;
    const committedTxid = this.buffer!.committedTxid;
    this.sources.fanout += records.length;
    return { outcome: core.onBuffered(records, committedTxid), committedTxid };
  }

  /** A read's outcome, judged by the core: its records are counted as read. */
  read(outcome: ReadOutcome): ReadOutcome {
    if (outcome.kind === "apply") this.sources.read += outcome.records.length;
    return outcome;
  }
}
