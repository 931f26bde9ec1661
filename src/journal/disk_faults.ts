/**
 * Disk faults injected into the journal node's filesystem adapter, for tests of real processes: the next writes or
 * fsyncs fail with ENOSPC or EIO until the fault is lifted. Only reachable when QJM_FAULT_INJECTION=1.
 */
export type DiskOperation = "write" | "fsync";
export type DiskErrno = "ENOSPC" | "EIO";

export class DiskFaults {
  private readonly faults = new Map<DiskOperation, DiskErrno>();

  set(operation: DiskOperation, errno: DiskErrno | null): void {
    if (errno === null) this.faults.delete(operation);
    else this.faults.set(operation, errno);
  }

  /** Throws the injected error for `operation`, as the system call would. */
  check(operation: DiskOperation, file: string): void {
    const errno = this.faults.get(operation);
    if (errno === undefined) return;
    const err = new Error(`${errno}: injected ${operation} failure, ${file}`) as NodeJS.ErrnoException;
    err.code = errno;
    err.path = file;
    throw err;
  }

  get active(): Record<string, string> {
    return Object.fromEntries(this.faults);
  }
}
