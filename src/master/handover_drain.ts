/**
 * A planned switchover's drain (issue #11), as the master's driver waits for it: the MasterCore stops admission and
 * says when everything admitted is committed and answered (`Ready.handoverDrained`); the wait ends true then, false
 * if the writer failed meanwhile or after a timeout.
 */
export class HandoverDrain {
  private waiter: ((drained: boolean) => void) | null = null;

  /** A drain is under way: one switchover at a time. */
  get waiting(): boolean {
    return this.waiter !== null;
  }

  /** Waits at most `timeoutMs` for `end`; past it, `onTimeout` runs (admission resumes) and the wait is false. */
  wait(timeoutMs: number, onTimeout: () => void): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        onTimeout();
        resolve(false);
      }, timeoutMs);
      this.waiter = (drained) => {
        clearTimeout(timer);
        resolve(drained);
      };
    });
  }

  /** The core said drained (true), or the writer failed (false); nothing if no drain waits. */
  end(drained: boolean): void {
    this.waiter?.(drained);
    this.waiter = null;
  }
}
