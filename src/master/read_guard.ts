/**
 * The driver of DirtyReadCore (dirty_reads.ts) in the master's process: the master tells it each write it sends to
 * Redis and each answer, and when Redis is being undone (reset to the journal, a failed term) or serves again; the
 * node's RESP front door runs its master-side reads through `guard`, which gives a reply only once every write of the
 * keys read that the reply may reflect is committed.
 */
import { DirtyReadCore, type ReadVerdict, type WriteKey } from "./dirty_reads.js";

export type Guarded<T> = { ok: true; value: T } | { ok: false; why: "closed" | "timeout" };

export class ReadGuard {
  private readonly core = new DirtyReadCore(true);
  private nextRead = 1;
  private readonly settle = new Map<number, (v: "release" | "retry") => void>();
  private undoing = true;

  /** A write sent to Redis, naming `keys` (from COMMAND's key positions, as latin1 text; null: unknown, every key). */
  executed(id: WriteKey, keys: readonly string[] | null): void {
    this.core.executed(id, keys);
  }

  answered(id: WriteKey): void {
    this.deliver(this.core.answered(id));
  }

  /** Whether the Redis served may hold effects about to be undone, or is being rebuilt (not serving, resetting). */
  undo(undoing: boolean): void {
    if (undoing === this.undoing) return;
    this.undoing = undoing;
    this.deliver(undoing ? this.core.undoStarted() : this.core.undoEnded());
  }

  /** The master role is over. */
  close(): void {
    this.deliver(this.core.close());
  }

  /** Diagnostics (INFO, tests): writes executed and not answered, reads held. */
  get counts(): { unanswered: number; waitingReads: number } {
    return { unanswered: this.core.unanswered, waitingReads: this.core.waitingReads };
  }

  /** Runs `read` (again, after an undo) until its reply shows no uncommitted write of `keys` (null: every key). */
  async guard<T>(keys: readonly Buffer[] | null, read: () => Promise<T>, deadlineMs: number): Promise<Guarded<T>> {
    const names = keys === null ? null : keys.map((k) => k.toString("latin1"));
    for (;;) {
      const id = this.nextRead++;
      const begun = this.core.begin(id);
      if (begun.kind === "closed") return { ok: false, why: "closed" };
      if (begun.kind === "held") {
        if ((await this.verdict(id, deadlineMs)) === "timeout") return { ok: false, why: "timeout" };
        continue;
      }
      const value = await read();
      const now = this.core.replied(id, names, begun.token);
      if (now === "release") return { ok: true, value };
      if (now === "retry") continue;
      const later = await this.verdict(id, deadlineMs);
      if (later === "release") return { ok: true, value };
      if (later === "timeout") return { ok: false, why: "timeout" };
    }
  }

  private verdict(id: number, deadlineMs: number): Promise<"release" | "retry" | "timeout"> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.settle.delete(id);
        this.core.cancel(id);
        resolve("timeout");
      }, Math.max(0, deadlineMs - Date.now()));
      this.settle.set(id, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
    });
  }

  private deliver(verdicts: ReadVerdict[]): void {
    for (const { read, verdict } of verdicts) {
      const s = this.settle.get(read);
      this.settle.delete(read);
      s?.(verdict);
    }
  }
}
