/** `redis-qjm inspect` run as a user runs it: the built CLI in its own process. */
import { execFile } from "node:child_process";
import { actorProgram } from "../../src/util/package_root.js";

const CLI = actorProgram("cli");

/** Its exit code and output. No NATS and a broken config in the environment: inspect must need neither. */
export async function runInspectCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, QJM_NATS_URL: "nats://127.0.0.1:1", QJM_BATCH_BYTES_MAX: "not-a-number" };
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, "inspect", ...args], { env, timeout: 10_000 }, (err, stdout, stderr) => {
      // A non-zero exit is an answer here; only a kill (the timeout) or a failure to start is an error.
      if (err !== null && typeof err.code !== "number") reject(err);
      else resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr });
    });
  });
}
