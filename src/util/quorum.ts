/**
 * The first `wanted` successes of several attempts (one per journal node, say), without waiting for the slowest:
 * a node that is stopped or partitioned answers only when its request times out, and a majority is all a quorum
 * write needs. Resolves with the successes (non-null results, in the order they came) once `wanted` of them are in,
 * or once every attempt settled (then fewer). A rejected attempt counts as a failure; the attempts left running go
 * on, their outcome for the caller to read through its own promises.
 */
export function firstSuccesses<T>(attempts: readonly Promise<T | null>[], wanted: number): Promise<T[]> {
  return new Promise((resolve) => {
    const successes: T[] = [];
    let settled = 0;
    let done = false;
    const check = (): void => {
      if (done || (successes.length < wanted && settled < attempts.length)) return;
      done = true;
      resolve([...successes]);
    };
    for (const attempt of attempts) {
      attempt.then(
        (r) => {
          if (r !== null && !done) successes.push(r);
          settled++;
          check();
        },
        () => {
          settled++;
          check();
        },
      );
    }
    check();
  });
}
