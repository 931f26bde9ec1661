/**
 * Where a new writer reads the recovered log to fill its Redis (master_redis.ts and the simulator's master alike): the
 * journal nodes in step first, every record they hold (the recovery settled the log up to its end on them); then the
 * others, committed records only — a node out of step may hold an older epoch's never-committed copy of a txid, but
 * what it knows to be committed never changes. Without the others, a copy damaged on one node in step and missing on
 * the other stops every rebuild (sim seed 40, once startSegment refused to leave holes).
 */
export interface RebuildSource {
  node: string;
  uncommitted: boolean;
}

export function rebuildSources(inSync: readonly string[], journalNodes: readonly string[]): RebuildSource[] {
  return [...inSync.map((node) => ({ node, uncommitted: true })), ...journalNodes.filter((n) => !inSync.includes(n)).map((node) => ({ node, uncommitted: false }))];
}
