/** Runs tasks one at a time in submission order; a failed task does not stop the ones after it. */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Resolves once everything submitted so far has ended. */
  idle(): Promise<void> {
    return this.tail;
  }
}
