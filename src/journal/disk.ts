/**
 * The journal node's disk as primitive file operations, and how a store's logic is written over them.
 *
 * The segment store's logic (what each DiskOp does to the files, how a directory is loaded and repaired) is written
 * once, as programs: generators that yield one `DiskCall` at a time and get its result back. They do no I/O and
 * keep no clock; a `Disk` runs the calls. Production runs them over node:fs with awaits (`runAsync`, fs_disk.ts);
 * the simulator runs the same programs synchronously over its in-memory disk (`runSync`, sim/sim_disk.ts), where a
 * crash may fall between any two calls. A call that fails is thrown back into the program, so its cleanup (cutting
 * off a failed append) is the same on both.
 *
 * Durability is the caller's to spell out, as on a real disk: data is durable after `fsync` of its file, a create,
 * rename or remove after `fsyncDir`.
 */

export type DiskCall =
  /** The names in the directory (created if missing), sorted. */
  | { call: "list" }
  /** A whole file's bytes, or null when it does not exist. */
  | { call: "readFile"; name: string }
  /** A file's length in bytes, or null when it does not exist. */
  | { call: "size"; name: string }
  /** `length` bytes from `start`; a short read is an error. */
  | { call: "read"; name: string; start: number; length: number }
  /** A new empty file under `name` (replacing any). */
  | { call: "create"; name: string }
  /** Bytes at the end of the file (created if missing). */
  | { call: "append"; name: string; bytes: Uint8Array }
  /** Bytes at offset `at` (at most the file's length). */
  | { call: "write"; name: string; at: number; bytes: Uint8Array }
  | { call: "truncate"; name: string; length: number }
  /** Makes the file's data durable (`dataOnly`: fdatasync, enough for appends to a file that exists durably). */
  | { call: "fsync"; name: string; dataOnly: boolean }
  /** Replaces `to` (if any) by `from`, atomically. */
  | { call: "rename"; from: string; to: string }
  /** Deletes a file; absent is fine. */
  | { call: "remove"; name: string }
  /** Makes the creates, renames and removes before it durable. */
  | { call: "fsyncDir" }
  /** Fault injection (tests of real processes): a pause between the steps of a merge or a purge. */
  | { call: "pause" };

/** A store's logic over the disk: yields calls, gets each one's result back, returns T. */
export type DiskProgram<T> = Generator<DiskCall, T, unknown>;

/** Runs calls synchronously (the simulator's disk); throws what the call would fail with. */
export interface SyncDisk {
  run(call: DiskCall): unknown;
}

/** Runs calls with awaits (node:fs); rejects with what the call failed with. */
export interface AsyncDisk {
  run(call: DiskCall): Promise<unknown>;
}

/** Drives a program to its end over a synchronous disk. */
export function runSync<T>(program: DiskProgram<T>, disk: SyncDisk): T {
  let step = program.next();
  while (step.done !== true) {
    let result: unknown;
    let failure: { error: unknown } | null = null;
    try {
      result = disk.run(step.value);
    } catch (error) {
      failure = { error };
    }
    step = failure === null ? program.next(result) : program.throw(failure.error);
  }
  return step.value;
}

/** Drives a program to its end over an asynchronous disk: each call awaited before the next. */
export async function runAsync<T>(program: DiskProgram<T>, disk: AsyncDisk): Promise<T> {
  let step = program.next();
  while (step.done !== true) {
    let result: unknown;
    let failure: { error: unknown } | null = null;
    try {
      result = await disk.run(step.value);
    } catch (error) {
      failure = { error };
    }
    step = failure === null ? program.next(result) : program.throw(failure.error);
  }
  return step.value;
}

// Typed calls, for programs (`yield* readFile(name)`).

export function* list(): DiskProgram<string[]> {
  return (yield { call: "list" }) as string[];
}

export function* readFile(name: string): DiskProgram<Uint8Array | null> {
  return (yield { call: "readFile", name }) as Uint8Array | null;
}

export function* size(name: string): DiskProgram<number | null> {
  return (yield { call: "size", name }) as number | null;
}

export function* read(name: string, start: number, length: number): DiskProgram<Uint8Array> {
  return (yield { call: "read", name, start, length }) as Uint8Array;
}

export function* create(name: string): DiskProgram<void> {
  yield { call: "create", name };
}

export function* append(name: string, bytes: Uint8Array): DiskProgram<void> {
  yield { call: "append", name, bytes };
}

export function* write(name: string, at: number, bytes: Uint8Array): DiskProgram<void> {
  yield { call: "write", name, at, bytes };
}

export function* truncate(name: string, length: number): DiskProgram<void> {
  yield { call: "truncate", name, length };
}

export function* fsync(name: string, dataOnly = false): DiskProgram<void> {
  yield { call: "fsync", name, dataOnly };
}

export function* rename(from: string, to: string): DiskProgram<void> {
  yield { call: "rename", from, to };
}

export function* remove(name: string): DiskProgram<void> {
  yield { call: "remove", name };
}

export function* fsyncDir(): DiskProgram<void> {
  yield { call: "fsyncDir" };
}

export function* pause(): DiskProgram<void> {
  yield { call: "pause" };
}

/** tmp + fsync + rename + directory fsync: after a crash the file is either the old one or the new one. */
export function* writeDurably(name: string, content: Uint8Array): DiskProgram<void> {
  const tmp = `${name}.tmp`;
  yield* create(tmp);
  yield* write(tmp, 0, content);
  yield* fsync(tmp);
  yield* rename(tmp, name);
  yield* fsyncDir();
}

/** Whether a call changes the disk (the simulator counts a program's calls without running these). */
export function mutates(call: DiskCall): boolean {
  return call.call !== "list" && call.call !== "readFile" && call.call !== "size" && call.call !== "read" && call.call !== "pause";
}
