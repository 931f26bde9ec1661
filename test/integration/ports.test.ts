/** Free ports for test clusters: a run of consecutive ones for the replicas' redis-servers. */
import net from "node:net";
import test from "ava";
import { FREE_PORT_MIN, freePort, freePorts } from "../../src/process/ports.js";

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

test("ports - runs picked with one taken set never overlap (a cluster's master and replica Redis ports once did)", async (t) => {
  for (let round = 0; round < 20; round++) {
    const taken = new Set<number>([FREE_PORT_MIN + 5]);
    const runs: [number, number][] = [];
    for (const count of [1, 2, 3, 8, 1, 3]) {
      const first = await freePorts(count, taken);
      runs.push([first, first + count - 1]);
    }
    const all = runs.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
    t.is(new Set(all).size, all.length, `round ${round}: ${JSON.stringify(runs)}`);
    t.false(all.includes(FREE_PORT_MIN + 5));
    t.is(taken.size, all.length + 1);
  }
});
