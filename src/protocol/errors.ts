/** Every error code a reply or a log line can carry: one place, one meaning each. */
export const ErrorCode = {
  /** The request body is not msgpack. */
  NOT_MSGPACK: "NOT_MSGPACK",
  /** The request does not have the shape its subject expects. */
  BAD_REQUEST: "BAD_REQUEST",
  /** A client write is larger than `writeBytesMax`. */
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  /** Redis does not know the command. */
  UNKNOWN_COMMAND: "UNKNOWN_COMMAND",
  /** The command is not a write (reads go to a replica). */
  NOT_A_WRITE: "NOT_A_WRITE",
  /** The command is refused: blocking, pub/sub, admin, multi-database or transaction control. */
  COMMAND_REFUSED: "COMMAND_REFUSED",
  /** The argument count does not match the command's arity. */
  WRONG_ARITY: "WRONG_ARITY",
  /** Stream part (issue #10 class 4): the write's effects cannot be journaled faithfully (another database, a script
   * past the repair bounds); what was not journaled is undone or never reaches database 0. */
  EFFECTS_REFUSED: "EFFECTS_REFUSED",
  /** Redis executed the command and answered with an error; nothing changed. */
  REDIS_ERROR: "REDIS_ERROR",
  /** No majority of journal nodes acknowledged in bounded time: the outcome is unknown. */
  NO_QUORUM: "NO_QUORUM",
  /** A data node's campaign found a rival's under way (an epoch promised that no master it heard serves): it defers once. */
  CAMPAIGN_DEFERRED: "CAMPAIGN_DEFERRED",
  /** The master is not (yet, or any more) the writer: retry later. */
  NOT_WRITER: "NOT_WRITER",
  /** Too many writes are waiting: retry later. */
  OVERLOADED: "OVERLOADED",
  /** The request's epoch is below the journal node's promise. */
  EPOCH_FENCED: "EPOCH_FENCED",
  /** The request does not continue the journal node's log (txid or segment mismatch). */
  OUT_OF_SYNC: "OUT_OF_SYNC",
  /** A record failed validation (checksum, txid, epoch, framing). */
  BAD_RECORD: "BAD_RECORD",
  /** A segment file on disk holds a corrupt record. */
  SEGMENT_CORRUPT: "SEGMENT_CORRUPT",
  /** The requested txids were purged: a snapshot holds them (bootstrap from it). */
  PURGED: "PURGED",
  /** The journal node does not hold the requested txids. */
  NOT_FOUND: "NOT_FOUND",
  /** A write or fsync failed on the journal node's disk. */
  DISK_ERROR: "DISK_ERROR",
  /** The journal node's state forbids the request (e.g. a finalized segment would be rewritten). */
  ILLEGAL_STATE: "ILLEGAL_STATE",
  /** The request or the node belongs to another cluster (cluster ids differ). */
  CLUSTER_MISMATCH: "CLUSTER_MISMATCH",
  /** The node has no cluster id yet, or was wiped and is not restored: it takes part in no quorum. */
  NOT_RESTORED: "NOT_RESTORED",
  /** A snapshot's bytes do not match its size or SHA-256 (a bad copy, a broken upload). */
  SNAPSHOT_CORRUPT: "SNAPSHOT_CORRUPT",
  /** Another copy of the same snapshot (its txid, other bytes: another replica's) is being uploaded to this node: once
   * it is stored the node holds that snapshot, and a begin then answers so (wait for it, do not send a second copy). */
  SNAPSHOT_UNDER_WAY: "SNAPSHOT_UNDER_WAY",
  /** The request was carried out (a write: committed) but its reply could not be kept for the requester to pull
   * (the outbox was full, or the reply too large): do not retry a write that got this. */
  REPLY_UNDELIVERABLE: "REPLY_UNDELIVERABLE",
  /** A retry of a write whose id is older than the dedupe window (issue #11 item 3): it may have been committed, and
   * the window no longer says; it is refused, never applied again. The outcome of the original write is unknown. */
  RETRY_EXPIRED: "RETRY_EXPIRED",
  /** A request timed out. */
  TIMEOUT: "TIMEOUT",
  /** An unexpected failure; see the log. */
  INTERNAL: "INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An operating error with a code that travels in replies: `{ok: false, code, message}`. */
export class QjmError extends Error {
  override name = "QjmError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A segment file with a corrupt record: names the file and the byte offset. */
export class SegmentCorruptError extends QjmError {
  override name = "SegmentCorruptError";
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(ErrorCode.SEGMENT_CORRUPT, `corrupt record in ${file} at offset ${offset}: ${reason}`);
  }
}

export type ErrorReply = { ok: false; code: ErrorCode; message: string };

export function errorReply(code: ErrorCode, message: string): ErrorReply {
  return { ok: false, code, message };
}

export function toErrorReply(err: unknown): ErrorReply {
  if (err instanceof QjmError) return errorReply(err.code, err.message);
  return errorReply(ErrorCode.INTERNAL, err instanceof Error ? err.message : String(err));
}
