/**
 * At most `n` tests of a file at once. For a file whose tests each start their own cluster and mostly wait on timers:
 * run one after the other (test.serial), the file took their sum; all at once, a long list (an env knob's) would start
 * that many clusters together on a 2-core machine shared with another test file.
 */
export function places(n: number): () => Promise<() => void> {
  const limit = Math.max(1, n);
  let taken = 0;
  const queued: (() => void)[] = [];
  const release = (): void => {
    const next = queued.shift();
    if (next === undefined) taken--;
    else next(); // the place passes on: taken stays
  };
  /** Waits for a place; returns its release, to call once (t.teardown(release), registered before the cluster's teardown, runs after it). */
  return async () => {
    if (taken >= limit) await new Promise<void>((resolve) => queued.push(resolve));
    else taken++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
    };
  };
}
