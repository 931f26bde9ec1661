/**
 * The local cluster as `npm start` runs it: every actor a real process. Ctrl-C stops every child and leaves no
 * server behind; kill -9 of any actor heals without a hand (the supervisor restarts it, bounded backoff).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { envName } from "../../src/config/config.js";
import { CLIENT_USER, credsFile } from "../../src/nats/auth.js";
import { connectBus, request, requestAll } from "../../src/nats/bus.js";
import { startChild, pidRuns } from "../../src/process/child.js";
import { freePort, freePorts } from "../../src/process/ports.js";
import type { ActorStatus, WriteReply } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { until } from "../helpers/harness.js";
import { actorProgram, bundleDir } from "../../src/util/package_root.js";

/** npm start's data nodes (the default configuration). */
const DATA_NODES = ["d1", "d2", "d3"];
const CLUSTER_JS = actorProgram("cluster");

/** `node dist/bundle/cluster.js` (what `npm start` runs after set-up) on free ports in a temp dir, stopped at teardown. */
async function startNpmStartCluster(t: ExecutionContext, name: string) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `qjm-${name}-`));
  const natsPort = await freePort();
  const env = {
    ...process.env,
    [envName("natsUrl")]: `nats://127.0.0.1:${natsPort}`,
    [envName("dataDir")]: dataDir,
    [envName("cluster")]: name,
    [envName("dataRedisPortBase")]: String(await freePorts(DATA_NODES.length)),
    [envName("quorumTimeoutMs")]: "5000",
    [envName("restartBackoffMinMs")]: "100",
    QJM_LOG_JSON: "1",
  };
  const cluster = startChild(process.execPath, [CLUSTER_JS], { env, logFile: path.join(os.tmpdir(), `qjm-${name}-${natsPort}.log`) });
  t.teardown(async () => {
    await cluster.stop("SIGKILL");
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const nc = await until("nats-server of the cluster", 20000, async () => await connectBus(`nats://127.0.0.1:${natsPort}`, "test", credsFile(dataDir, CLIENT_USER)).catch(() => undefined), 100);
  const status = async () => (await requestAll(nc, subjects(name).status, {}, 300).catch(() => [])) as ActorStatus[];
  return { cluster, dataDir, natsPort, nc, status };
}

test("local cluster - npm start's cluster heals kill -9 of every actor, and Ctrl-C stops every child", async (t) => {
  const { cluster, dataDir, natsPort, nc, status } = await startNpmStartCluster(t, "npmstart");
  const s = subjects("npmstart");
  const write = async (key: string) => (await request(nc, s.write, ["SET", key, "v"], 15000).catch(() => undefined)) as WriteReply | undefined;
  const serving = () => until("a write to succeed", 60000, async () => {
    const r = await write(`probe-${Date.now()}`);
    return r?.ok ? r : undefined;
  }, 200);
  await serving();

  const all = await until("six actors", 20000, async () => {
    const st = await status();
    return st.length === 6 ? st : undefined;
  }, 100);
  const seen = new Map(all.map((a) => [a.id, a.pid]));
  // A journal node, the master (another data node takes over), a replica.
  const master = all.find((a) => a.role === "master")!.id;
  const replica = all.find((a) => a.role === "replica")!.id;
  for (const id of ["jn2", master, replica]) {
    process.kill(seen.get(id)!, "SIGKILL");
    const back = await until(`${id} restarted`, 30000, async () => (await status()).find((a) => a.id === id && a.pid !== seen.get(id)), 100);
    t.not(back.pid, seen.get(id));
    const r = await serving();
    t.true(r.ok, `writes succeed after ${id} was killed`);
  }

  // Ctrl-C: every actor and server it started is gone.
  const pids = (await status()).map((a) => a.pid);
  // The check below means something only if it finds the live actors first.
  for (const pid of pids) t.true(pidRuns(pid, bundleDir()), `actor ${pid} runs from ${bundleDir()}`);
  const redisPids = DATA_NODES.map((id) => Number(fs.readFileSync(path.join(dataDir, id, "redis", "redis.pid"), "utf8")));
  await nc.close();
  process.kill(cluster.pid, "SIGINT");
  t.is(await cluster.exited, 0);
  for (const pid of pids) t.false(pidRuns(pid, bundleDir()), `actor ${pid} is gone`);
  for (const pid of redisPids) t.false(pidRuns(pid, "redis-server"), `redis-server ${pid} is gone`);
  const natsGone = await connectBus(`nats://127.0.0.1:${natsPort}`, "probe", credsFile(dataDir, CLIENT_USER)).then(
    async (c) => {
      await c.close();
      return false;
    },
    () => true,
  );
  t.true(natsGone, "the nats-server it started is gone");
});

test("local cluster - kill -9 of npm start's cluster takes every actor and server with it: nothing is orphaned", async (t) => {
  const { cluster, dataDir, natsPort, nc, status } = await startNpmStartCluster(t, "orphans");
  const actors = await until("six actors", 30000, async () => {
    const st = await status();
    return st.length === 6 ? st : undefined;
  }, 100);
  const redisPids = await until("three redis-servers", 30000, () => {
    const pids = DATA_NODES.map((id) => {
      try {
        return Number(fs.readFileSync(path.join(dataDir, id, "redis", "redis.pid"), "utf8"));
      } catch {
        return 0;
      }
    });
    return pids.every((p) => p > 0) ? pids : undefined;
  }, 100);
  for (const a of actors) t.true(pidRuns(a.pid, bundleDir()), `actor ${a.id} runs from ${bundleDir()}`);
  await nc.close();
  process.kill(cluster.pid, "SIGKILL");
  await cluster.exited;
  for (const a of actors) await until(`actor ${a.id} gone`, 10000, () => (pidRuns(a.pid, bundleDir()) ? undefined : true), 50);
  for (const pid of redisPids) await until(`redis-server ${pid} gone`, 10000, () => (pidRuns(pid, "redis-server") ? undefined : true), 50);
  const natsGone = await until("the nats-server gone", 10000, async () =>
    (await connectBus(`nats://127.0.0.1:${natsPort}`, "probe", credsFile(dataDir, CLIENT_USER)).then(
      async (c) => {
        await c.close();
        return undefined;
      },
      () => true,
    )), 100);
  t.true(natsGone);
});
