import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import fs from "node:fs";

/** A server process we started, stopped by its pid only. */
export interface Child {
  readonly pid: number;
  readonly process: ChildProcess;
  /** Resolves with the exit code (or signal) once the process is gone. */
  readonly exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const SETPRIV = "/usr/bin/setpriv";

/**
 * Starts a process we own. By default it dies with us (PR_SET_PDEATHSIG through util-linux's setpriv, which then
 * execs the command: same pid): a test killed on a timeout, or `npm start` killed with -9, leaves nothing behind.
 */
export function startChild(command: string, args: string[], options: SpawnOptions & { logFile?: string; dieWithParent?: boolean } = {}): Child {
  const { logFile, dieWithParent = true, ...spawnOptions } = options;
  if (dieWithParent && fs.existsSync(SETPRIV)) {
    args = ["--pdeathsig", "KILL", "--", command, ...args];
    command = SETPRIV;
  }
  let stdio: SpawnOptions["stdio"] = "ignore";
  let fd: number | undefined;
  if (logFile !== undefined) {
    fd = fs.openSync(logFile, "a");
    stdio = ["ignore", fd, fd];
  }
  const proc = spawn(command, args, { stdio, ...spawnOptions });
  if (fd !== undefined) fs.closeSync(fd);
  if (proc.pid === undefined) throw new Error(`could not start ${command}`);
  const pid = proc.pid;
  const exited = new Promise<number | string>((resolve) => {
    proc.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
    proc.once("error", () => resolve("error"));
  });
  let gone = false;
  void exited.then(() => (gone = true));
  return {
    pid,
    process: proc,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 5000) {
      if (gone) return;
      try {
        process.kill(pid, signal);
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          if (!gone) process.kill(pid, "SIGKILL");
        } catch {
          /* already gone */
        }
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** True if `pid` is alive and its command line contains `needle` (guards against pid reuse). */
export function pidRuns(pid: number, needle: string): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes(needle);
  } catch {
    return false;
  }
}

/**
 * Ends a server left behind by an actor that was killed with -9 (found through its pid file),
 * so that a restarted actor can take its port and files again.
 */
export async function killLeftover(pidFile: string, needle: string, timeoutMs = 5000): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !pidRuns(pid, needle)) return false;
  process.kill(pid, "SIGKILL");
  const deadline = Date.now() + timeoutMs;
  while (pidRuns(pid, needle) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return true;
}
