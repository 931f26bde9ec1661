/** Free ports for test clusters: a run of consecutive ones for the replicas' redis-servers. */
import net from "node:net";
import test from "ava";
import { freePorts } from "../../src/process/ports.js";

test("ports - freePorts gives the first of a run of consecutive ports that can all be bound", async (t) => {
  const first = await freePorts(3);
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(first + i, "127.0.0.1", () => resolve());
      });
      servers.push(server);
    }
    t.is(servers.length, 3);
  } finally {
    for (const s of servers) s.close();
  }
});
