/**
 * A wait that is re-checked whenever its owner wakes its waiters (a socket event, a drain, a failure), instead of a
 * poll: resolves once `ready()`, rejects with `failed()`'s error, or with `timedOut()` after `timeoutMs`.
 */
export function waitUntil(waiters: Set<() => void>, ready: () => boolean, failed: () => Error | undefined, timeoutMs: number, timedOut: () => Error): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(timedOut()), timeoutMs);
    const wake = (): void => {
      const err = failed();
      if (err !== undefined) finish(err);
      else if (ready()) finish(undefined);
    };
    const finish = (err: Error | undefined): void => {
      clearTimeout(timer);
      waiters.delete(wake);
      if (err === undefined) resolve();
      else reject(err);
    };
    waiters.add(wake);
  });
}
