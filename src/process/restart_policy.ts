/** How `npm start` restarts a process of its own that died (actors, nats-servers): bounded exponential backoff. */
export interface RestartPolicy {
  backoffMinMs: number;
  backoffMaxMs: number;
  /** A process that ran this long before it died starts over at the shortest delay. */
  stableMs: number;
}

/** The pause before the next start, after `failures` quick deaths in a row and a last run of `ranMs`; and the new count. */
export function restartDelay(policy: RestartPolicy, failures: number, ranMs: number): { delayMs: number; failures: number } {
  const n = ranMs >= policy.stableMs ? 0 : failures;
  return { delayMs: Math.min(policy.backoffMaxMs, policy.backoffMinMs * 2 ** n), failures: n + 1 };
}
