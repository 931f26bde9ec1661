/** Free ports for test clusters: a run of consecutive ones for the replicas' redis-servers. */
import net from "node:net";
import test from "ava";
import { freePort, freePorts } from "../../src/process/ports.js";

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

test("ports - freePort stays below the ephemeral range, where outgoing connections take their local ports", async (t) => {
  const range = (await import("node:fs")).readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
  for (let i = 0; i < 50; i++) {
    const port = await freePort();
    t.true(port < range[0] || port > range[1], `port ${port} is outside ${range.join("-")}`);
  }
});
