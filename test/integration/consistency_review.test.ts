/**
 * Adversarial review of the RESP doors' read consistency (s20): read-your-writes for a write answered with an error
 * that had effects. A script that writes and then fails (redis.error_reply, or a runtime error) keeps its writes, as
 * on Redis: the master journals them and answers the error once committed. A session read on the same connection, on
 * a replica's door, must see them as it would on Redis.
 */
import test from "ava";
import { Redis } from "ioredis";
import { startTestCluster, waitForDoors, waitForWriter, type TestCluster } from "../helpers/harness.js";

const DATA_NODES = ["d1", "d2", "d3"];
let tc: TestCluster | null = null;
let masterId = "";
const clients: Redis[] = [];

test.before(async () => {
  tc = await startTestCluster("consistency-review", { dataNodes: DATA_NODES });
  masterId = (await waitForWriter(tc)).id;
  await waitForDoors(tc, DATA_NODES.length);
});

test.after.always(async () => {
  for (const c of clients) c.disconnect();
  await tc?.stop();
});

async function door(id: string): Promise<Redis> {
  const port = tc!.cluster.config.respPort + DATA_NODES.indexOf(id);
  const r = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  r.on("error", () => {});
  clients.push(r);
  await r.connect();
  return r;
}

const WRITE_THEN_FAIL = "redis.call('SET', KEYS[1], ARGV[1]); return redis.error_reply('ERR failed after writing')";

test.serial("session: a script that wrote then failed is read back on the same connection on a replica's door", async (t) => {
  const replica = DATA_NODES.find((id) => id !== masterId)!;
  const r = await door(replica);
  const misses: string[] = [];
  for (let i = 0; i < 30; i++) {
    const failed = await r.eval(WRITE_THEN_FAIL, 1, "ryw:script", String(i)).then(() => "no error", (err: Error) => err.message);
    t.regex(failed, /failed after writing/, "the script's error is the reply");
    const v = await r.get("ryw:script");
    if (v !== String(i)) misses.push(`pair ${i}: ${v}`);
  }
  t.deepEqual(misses, [], "the script's own write is read back (as on Redis: its SET stays despite the error)");
});
