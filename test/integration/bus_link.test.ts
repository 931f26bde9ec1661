/**
 * An actor (re)started while its link to nats-server is down: it waits for the link, as it does on a reconnect, and
 * serves once it heals. Before, the first dial's failure (a refused connection, or a dial that timed out behind a
 * black hole) ended the process: the nemesis lost journal nodes so (seed 20261128, `exited on its own`).
 */
import test from "ava";
import { startTcpProxy, type TcpProxy } from "../../src/process/tcp_proxy.js";
import { freePort } from "../../src/process/ports.js";
import { startTestCluster, until, waitForWriter, type TestCluster } from "../helpers/harness.js";

test("bus link - a journal node restarted while its link to nats-server is cut waits for it, then rejoins", async (t) => {
  const natsPort = await freePort();
  const proxy: TcpProxy = await startTcpProxy(natsPort);
  let tc: TestCluster | undefined;
  t.teardown(async () => {
    await tc?.stop();
    await proxy.close();
  });
  tc = await startTestCluster("buslink", {}, { natsPort, actorNatsUrl: (name) => (name === "jn1" ? proxy.url : `nats://127.0.0.1:${natsPort}`) });
  await waitForWriter(tc);
  proxy.setMode({ kind: "cut" });
  await tc.cluster.signal("jn1", "SIGKILL");
  const child = tc.cluster.startActor("jn1");
  // Its first dials are refused for a while: several reconnect rounds (reconnectTimeWait is 250 ms).
  const exited = await Promise.race([child.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 2000))]);
  t.false(exited, "the journal node did not give up on its first failed dial");
  proxy.setMode({ kind: "pass" });
  await until("jn1 back in the writer's quorum", 30_000, async () => {
    const master = await waitForWriter(tc!);
    return (master.details.inSync as string[]).includes("jn1") ? true : undefined;
  });
  await until("the same jn1 process answers status", 10_000, async () => ((await tc!.status()).some((s) => s.id === "jn1" && s.pid === child.pid) ? true : undefined));
});
