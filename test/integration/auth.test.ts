/**
 * NATS users and permissions, Redis passwords (issue #10, class 3 and class 8's heartbeats): with the client's
 * credentials only writes, status and events are reachable; nobody connects without credentials; an actor publishes
 * only its own heartbeat and sends only the requests of its role; a Redis without its password refuses every command.
 */
import { spawnSync } from "node:child_process";
import test from "ava";
import { Redis } from "ioredis";
import { connect, nkeys, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { CLIENT_USER, credsFile, natsAuthOptions, readNatsCredentials } from "../../src/nats/auth.js";
import { connectBus, request } from "../../src/nats/bus.js";
import { decode, encode } from "../../src/protocol/codec.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { subjects } from "../../src/protocol/subjects.js";
import { startTestCluster, until, userEnv, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { actorProgram } from "../../src/util/package_root.js";

const CLI_JS = actorProgram("cli");

let tc: TestCluster | undefined;
test.before(async () => {
  tc = await startTestCluster("auth");
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

interface Refusals {
  /** `publish <subject>` / `subscription <subject>`, in arrival order. */
  seen: string[];
  /** Resolves once `n` refusals arrived (they are delivered asynchronously, after the round trip that carried them). */
  count(n: number): Promise<string[]>;
}

/** Every permission violation nats-server reports to `nc`. */
function refusals(nc: NatsConnection): Refusals {
  const seen: string[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (!(s.type === "error" && s.error instanceof PermissionViolationError)) continue;
      seen.push(`${s.error.operation} ${s.error.subject}`);
      for (const w of waiting.filter((x) => seen.length >= x.n)) w.resolve();
    }
  })();
  return {
    seen,
    async count(n) {
      if (seen.length < n) {
        const arrived = new Promise<void>((resolve) => waiting.push({ n, resolve }));
        const timer = new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`${n} refusals expected, ${seen.length} arrived: ${seen.join(", ")}`)), 5000).unref());
        await Promise.race([arrived, timer]);
      }
      return [...seen].sort();
    },
  };
}

/** Publishes `body` on `subject` and makes a round trip: a refusal is sent before the PONG. */
async function publish(nc: NatsConnection, subject: string, body: unknown): Promise<void> {
  nc.publish(subject, encode(body));
  await nc.flush();
}

const byId = async (id: string): Promise<ActorStatus> => await until(`${id}'s status`, 5000, async () => (await tc!.status()).find((s) => s.id === id));

test.serial("auth - with the client's credentials, forged journal requests, heartbeats and snapshot uploads are refused; writes, status and events work", async (t) => {
  const s = subjects(tc!.cluster.cluster);
  const refused = refusals(tc!.nc);
  // jn1's promise once a writer serves and jn1 holds its epoch: a writer serves once a majority promised, and jn1 may
  // not be in it yet (CI: jn1 at 0 here, at 1 after the forgeries).
  const master = await waitForWriter(tc!);
  const before = await until("jn1 to hold the writer's epoch", 10000, async () => {
    const jn1 = await byId("jn1");
    return jn1.epoch === master.epoch ? jn1 : undefined;
  });
  // What a hostile client would send: a promise far ahead (fences every writer), a segment set aside, a heartbeat
  // that unmasks a dead node, a snapshot announced durable, the journal read, and everyone's replies.
  await publish(tc!.nc, s.journal("jn1"), { type: "newEpoch", epoch: before.epoch + 1000 });
  await publish(tc!.nc, s.journal("jn1"), { type: "startSegment", epoch: before.epoch + 1000, txid: 1_000_000 });
  await publish(tc!.nc, s.heartbeat("journal", "jn1"), { role: "journal", id: "jn1", pid: 1, epoch: 0, lastTxid: 0, committedTxid: 0, appliedTxid: 0, health: "ok" });
  await publish(tc!.nc, s.snapshotUpload("jn1"), { type: "snapshotDurable", txid: 2 ** 53 - 1, clusterId: "x" });
  await publish(tc!.nc, s.journalRead("jn1"), { type: "read", fromTxid: 1, bytesMax: 1024, recordsMax: 1, uncommitted: true });
  await publish(tc!.nc, s.snapshot("jn1"), { type: "snapshotList" });
  tc!.nc.subscribe("_INBOX.>");
  tc!.nc.subscribe(s.heartbeatAll);
  await tc!.nc.flush();
  t.deepEqual(await refused.count(8), [
    `publish ${s.heartbeat("journal", "jn1")}`,
    `publish ${s.journal("jn1")}`,
    `publish ${s.journal("jn1")}`,
    `publish ${s.journalRead("jn1")}`,
    `publish ${s.snapshot("jn1")}`,
    `publish ${s.snapshotUpload("jn1")}`,
    `subscription ${s.heartbeatAll}`,
    "subscription _INBOX.>",
  ].sort());

  // The cluster did not notice: same promise on jn1, same writer, jn1 counted, writes acked.
  const w = await tc!.write(["SET", "after-forgery", "1"]);
  t.true(w.ok, JSON.stringify(w));
  t.is((await byId("jn1")).epoch, before.epoch, "jn1's promised epoch is unchanged");
  const now = await waitForWriter(tc!);
  t.is(now.epoch, master.epoch, "no writer change");
  t.is((now.details.journalNodes as Record<string, string>).jn1, "healthy");
  // Events reach the client (an actor's, here one jn2 is allowed to publish).
  const event = new Promise((resolve) => tc!.nc.subscribe(s.events, { max: 1, callback: (_e, msg) => resolve(decode(msg.data)) }));
  await tc!.nc.flush();
  await publish(await tc!.connectAs("jn2"), s.events, { type: "probe" });
  t.deepEqual(await event, { type: "probe" });
  t.is(refused.seen.length, 8, "writes, status and the events subscription were not refused");
});

test.serial("auth - without credentials, or with a key nats-server does not know, the connection is refused", async (t) => {
  const url = tc!.cluster.natsUrl;
  await t.throwsAsync(connectBus(url, "anonymous"), { message: /authorization/i });
  const stranger = nkeys.createUser();
  const creds = { ...readNatsCredentials(credsFile(tc!.cluster.dataDir, CLIENT_USER)), seed: new TextDecoder().decode(stranger.getSeed()) };
  await t.throwsAsync(connect({ servers: url, ...natsAuthOptions(creds) }), { message: /authorization/i });
});

test.serial("auth - an actor sends only its role's requests and publishes only its own heartbeat", async (t) => {
  const s = subjects(tc!.cluster.cluster);
  const r1 = await tc!.connectAs("r1");
  const jn2 = await tc!.connectAs("jn2");
  const fromR1 = refusals(r1);
  const fromJn2 = refusals(jn2);
  const before = await byId("jn1");
  await publish(r1, s.journal("jn1"), { type: "newEpoch", epoch: before.epoch + 1000 });
  await publish(r1, s.heartbeat("replica", "r2"), { role: "replica", id: "r2" });
  await publish(r1, s.heartbeat("journal", "jn1"), { role: "journal", id: "jn1" });
  await publish(r1, s.write, ["SET", "a", "b"]);
  await publish(jn2, s.heartbeat("journal", "jn1"), { role: "journal", id: "jn1" });
  await publish(jn2, s.journal("jn1"), { type: "newEpoch", epoch: before.epoch + 1000 });
  t.deepEqual(await fromR1.count(4), [`publish ${s.heartbeat("journal", "jn1")}`, `publish ${s.heartbeat("replica", "r2")}`, `publish ${s.journal("jn1")}`, `publish ${s.write}`].sort());
  t.deepEqual(await fromJn2.count(2), [`publish ${s.heartbeat("journal", "jn1")}`, `publish ${s.journal("jn1")}`].sort());
  // A replica may read: a writer request slipped onto the read subject is refused by the node itself.
  const onRead = (await request(r1, s.journalRead("jn1"), { type: "newEpoch", epoch: before.epoch + 1000 }, 5000)) as { ok: boolean; code?: string };
  t.is(onRead.code, "BAD_REQUEST");
  const read = (await request(r1, s.journalRead("jn1"), { type: "getState" }, 5000)) as { ok: boolean };
  t.true(read.ok, "a replica reads a journal node's state");
  t.is((await byId("jn1")).epoch, before.epoch, "jn1's promised epoch is unchanged");
  t.true((await tc!.write(["SET", "after-actor-forgery", "1"])).ok);
});

test.serial("auth - writes addressed to a master (write.<id>) reach only it: nobody else may take them, nor announce itself as a master in its heartbeat; a client hears masters' heartbeats", async (t) => {
  const s = subjects(tc!.cluster.cluster);
  const master = await waitForWriter(tc!);
  const client = await connectBus(tc!.cluster.natsUrl, "auth-write-to", credsFile(tc!.cluster.dataDir, CLIENT_USER));
  const r1 = await tc!.connectAs("r1");
  const fromClient = refusals(client);
  const fromR1 = refusals(r1);
  try {
    // A hostile client or replica taking the master's own writes (to answer them, or drop them), or announcing a master
    // in another's name, so that clients send their writes there.
    client.subscribe(s.writeTo(master.id));
    client.subscribe(`${s.write}.*`);
    await publish(client, s.heartbeat("master", master.id), { role: "master", id: master.id, pid: 1, epoch: master.epoch + 1000, health: "writing" });
    r1.subscribe(s.writeTo(master.id));
    await publish(r1, s.heartbeat("master", "r1"), { role: "master", id: "r1", pid: 1, epoch: master.epoch + 1000, health: "writing" });
    await client.flush();
    await r1.flush();
    t.deepEqual(await fromClient.count(3), [`publish ${s.heartbeat("master", master.id)}`, `subscription ${s.write}.*`, `subscription ${s.writeTo(master.id)}`].sort());
    t.deepEqual(await fromR1.count(2), [`publish ${s.heartbeat("master", "r1")}`, `subscription ${s.writeTo(master.id)}`].sort());
    // What a client may do: hear the master's heartbeat, and write to it directly (its reply names it and its epoch).
    const beat = new Promise((resolve) => client.subscribe(s.heartbeat("master", "*"), { max: 1, callback: (_e, msg) => resolve(decode(msg.data)) }));
    t.like(await beat, { role: "master", id: master.id, health: "writing" });
    t.like(await request(client, s.writeTo(master.id), ["SET", "direct", "1"], 5000), { ok: true, master: master.id, epoch: master.epoch });
    t.is(fromClient.seen.length, 3, "the heartbeat subscription and the direct write were not refused");
  } finally {
    await client.close();
  }
});

test.serial("auth - every Redis of the cluster refuses a client without its password and listens on 127.0.0.1", async (t) => {
  const ports = (await tc!.status()).filter((s) => s.redisUrl !== null).map((s) => Number(new URL(s.redisUrl!).port));
  t.is(ports.length, 3, "the master's and both replicas' Redis");
  for (const port of ports) {
    const anonymous = new Redis({ port, host: "127.0.0.1", lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    anonymous.on("error", () => {});
    try {
      await anonymous.connect();
      await t.throwsAsync(anonymous.set("intruder", "1"), { message: /NOAUTH/ }, `port ${port}`);
      await t.throwsAsync(anonymous.call("REPLICAOF", "127.0.0.1", "1"), { message: /NOAUTH/ }, `port ${port}`);
    } finally {
      anonymous.disconnect();
    }
    const ours = new Redis({ port, host: "127.0.0.1", password: tc!.redisPassword, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await ours.connect();
      t.deepEqual(await ours.call("CONFIG", "GET", "bind"), ["bind", "127.0.0.1"], `port ${port}`);
    } finally {
      ours.disconnect();
    }
  }
});

test.serial("auth - the CLI picks up <data>/credentials/client.creds by default", (t) => {
  const env = userEnv(tc!);
  const write = spawnSync(process.execPath, [CLI_JS, "write", "SET", "from-cli", "v"], { env, encoding: "utf8", timeout: 30000 });
  t.is(write.status, 0, write.stderr);
  t.regex(write.stdout, /"ok":true/);
  const status = spawnSync(process.execPath, [CLI_JS, "status", "--json"], { env, encoding: "utf8", timeout: 30000 });
  t.is(status.status, 0, status.stderr);
  t.is((JSON.parse(status.stdout) as ActorStatus[]).length, 6);
});
