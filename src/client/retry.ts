/**
 * The client's retry policy, pure: which failures a write is retried on (with the same id), what each says of the
 * write's outcome, and the pause before the next attempt. The client (client.ts) only drives it.
 */
import { ErrorCode } from "../protocol/errors.js";

/** What one failed attempt says: retry it or not, and whether the write may have been applied by it. */
export interface AttemptVerdict {
  retry: boolean;
  /** The attempt may have committed the write (or did: REPLY_UNDELIVERABLE is `applied`). */
  outcome: "notApplied" | "unknown" | "applied";
}

/**
 * By the code of a failed attempt. Retried: the write did not reach a serving master (no responders, NOT_WRITER,
 * OVERLOADED) or its fate is unknown (a timeout, NO_QUORUM) — the same id lets the master answer a committed one
 * from its dedupe window instead of applying it again. Never retried: a definite answer about the write itself.
 */
export function verdictOf(code: string): AttemptVerdict {
  switch (code) {
    case ErrorCode.NOT_WRITER:
    case ErrorCode.OVERLOADED:
      return { retry: true, outcome: "notApplied" };
    case ErrorCode.TIMEOUT:
    case ErrorCode.NO_QUORUM:
      return { retry: true, outcome: "unknown" };
    // Committed, but the reply was lost: retrying would at best get the same answer from the window.
    case ErrorCode.REPLY_UNDELIVERABLE:
      return { retry: false, outcome: "applied" };
    // Older than the dedupe window: it may have committed; the master refuses to apply it again.
    case ErrorCode.RETRY_EXPIRED:
    case ErrorCode.INTERNAL:
      return { retry: false, outcome: "unknown" };
    default:
      // REDIS_ERROR, BAD_REQUEST, PAYLOAD_TOO_LARGE, UNKNOWN_COMMAND, NOT_A_WRITE, EFFECTS_REFUSED…: definite.
      return { retry: false, outcome: "notApplied" };
  }
}

export interface BackoffLimits {
  clientRetryBackoffMinMs: number;
  clientRetryBackoffMaxMs: number;
}

/**
 * Pause before attempt `attempt + 1` (attempt counts from 1): doubling from the minimum up to the maximum, then
 * "equal jitter" (half fixed, half random) so that clients failed over together do not come back together.
 */
export function backoffMs(attempt: number, limits: BackoffLimits, random: () => number): number {
  const cap = Math.min(limits.clientRetryBackoffMaxMs, limits.clientRetryBackoffMinMs * 2 ** Math.min(30, attempt - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
