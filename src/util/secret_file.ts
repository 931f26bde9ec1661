/** Secrets kept under the data directory: the credentials folder, files only their owner can read. */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/** `<dataDir>/credentials`: NATS credentials (one file per user) and the Redis password. */
export function credentialsDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), "credentials");
}

/** Writes `content` to `file`, readable by its owner only, replacing it atomically (tmp + rename). */
export function writeSecretFile(file: string, content: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * The secret in `file`, made (random, hex) if there is none yet. Actors of one data directory may start together:
 * the first link() wins and every other one reads the winner's secret.
 */
export function ensureSecretFile(file: string, bytes = 32): string {
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, randomBytes(bytes).toString("hex") + "\n", { mode: 0o600 });
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  const secret = fs.readFileSync(file, "utf8").trim();
  if (secret.length === 0) throw new Error(`${file} is empty: delete it to make a new secret`);
  return secret;
}
