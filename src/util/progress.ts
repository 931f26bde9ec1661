/** Progress of a transfer of known size (snapshot upload, download, RDB load), for logs and `redis-qjm status`. */
export interface TransferProgress {
  bytes: number;
  totalBytes: number;
  /** Mean rate since the transfer began. */
  bytesPerSecond: number;
  /** Time left at the mean rate: 0 once done, null before any rate is known. */
  etaMs: number | null;
}

/** Pure: the figures of a transfer `elapsedMs` after its start. */
export function transferProgress(bytes: number, totalBytes: number, elapsedMs: number): TransferProgress {
  const bytesPerSecond = elapsedMs > 0 ? Math.round((bytes * 1000) / elapsedMs) : 0;
  const etaMs = bytes >= totalBytes ? 0 : bytesPerSecond > 0 ? Math.round(((totalBytes - bytes) * 1000) / bytesPerSecond) : null;
  return { bytes, totalBytes, bytesPerSecond, etaMs };
}
