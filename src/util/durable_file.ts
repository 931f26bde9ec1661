/** The crash-safe file steps every store uses: a file is either the old one or the new one after a crash. */
import fsp from "node:fs/promises";
import path from "node:path";

/** Makes a create, rename or delete in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** tmp + fsync + rename + directory fsync. `check` runs before the write and before the fsync (fault injection). */
export async function writeFileDurably(dir: string, name: string, content: string | Uint8Array, check?: (op: "write" | "fsync", file: string) => void): Promise<void> {
  const tmp = path.join(dir, `${name}.tmp`);
  const handle = await fsp.open(tmp, "w");
  try {
    check?.("write", tmp);
    await handle.writeFile(content);
    check?.("fsync", tmp);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, path.join(dir, name));
  await fsyncDir(dir);
}
