/**
 * A planned switchover's drain (issue #11), as the master's driver waits for it: the MasterCore stops admission and
 * says when everything admitted is committed and answered (`Ready.handoverDrained`); the wait ends true then, false
 * if the writer failed meanwhile or the switchover was called off (the DataNodeCore decides its timeout).
 */
export class HandoverDrain {
  private waiter: ((drained: boolean) => void) | null = null;

  /** A drain is under way: one switchover at a time. */
  get waiting(): boolean {
    return this.waiter !== null;
  }

  wait(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.waiter = resolve;
    });
  }

  /** The core said drained (true), or the writer failed or the drain was called off (false); nothing if none waits. */
  end(drained: boolean): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.(drained);
  }
}
