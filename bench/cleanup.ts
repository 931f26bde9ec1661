/**
 * Everything the bench starts is undone: a Cleanup stack per target (connections, then servers, in reverse
 * order of start), and a process-wide list of server pids that are killed by pid if the bench itself exits
 * early (an exception, Ctrl-C). nats-server, unlike our redis-server, does not die with its parent.
 */
import type { Child } from "../src/process/child.js";
import { pidRuns } from "../src/process/child.js";
import { errorMessage, withDeadline } from "./harness.js";

/** One undo step (close a connection, stop a server) may take this long before the next one runs. */
const STEP_TIMEOUT_MS = 8000;

interface Step {
  what: string;
  run: () => Promise<void>;
}

export class Cleanup {
  private readonly steps: Step[] = [];
  private closed = false;

  /** Registers an undo step. After run() has started (a setup that outlived its deadline), it is undone at once. */
  add(what: string, run: () => Promise<void>): void {
    if (this.closed) {
      void runStep({ what, run });
      return;
    }
    this.steps.push({ what, run });
  }

  /** Runs every step, newest first; a failing step is reported and does not stop the others. */
  async run(): Promise<void> {
    this.closed = true;
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) await runStep(step);
  }
}

async function runStep(step: Step): Promise<void> {
  try {
    await withDeadline(step.run(), STEP_TIMEOUT_MS, step.what);
  } catch (err) {
    process.stderr.write(`bench: cleanup of ${step.what}: ${errorMessage(err)}\n`);
  }
}

// ---- last resort: pids of servers still running when the process exits ----

/** pid → the program name that must still be in its command line (guards against pid reuse). */
const liveServers = new Map<number, string>();

/** Records a server we started so that an early exit of the bench kills it. */
export function trackServer(child: Child, program: string): void {
  liveServers.set(child.pid, program);
  void child.exited.then(() => liveServers.delete(child.pid));
}

function killLiveServers(): void {
  for (const [pid, program] of liveServers) {
    try {
      if (pidRuns(pid, program)) process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  liveServers.clear();
}

/** Installs the exit and signal hooks once, from the entry point. */
export function killServersOnExit(): void {
  process.on("exit", killLiveServers);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: ${signal}: killing the servers it started\n`);
      killLiveServers();
      process.exit(code);
    });
  }
}
