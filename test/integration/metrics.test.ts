/**
 * Metrics and discovery (issue #14 item 4), on a real cluster (three journal nodes, three data nodes): every actor's
 * GET /metrics answers valid Prometheus text with the series of its role, and the counters move with writes; every actor
 * answers $SRV.PING, and $SRV.INFO carries its cluster, id, role and metrics URL; `redis-qjm status --json` names each
 * metrics URL (and each answers), the table shows lag and rate.
 */
import { spawnSync } from "node:child_process";
import test from "ava";
import type { NatsConnection } from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";
import { metricsPortOf } from "../../src/cluster/local_cluster.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { microSubjects } from "../../src/protocol/subjects.js";
import { startTestCluster, until, userEnv, waitForReplicas, waitForWriter, type TestCluster } from "../helpers/harness.js";
import { actorProgram } from "../../src/util/package_root.js";

const CLI_JS = actorProgram("cli");

let tc: TestCluster | undefined;
test.before(async () => {
  // A snapshot every 20 records: the 40 writes below take one, upload it and store it on the journal nodes.
  tc = await startTestCluster("metrics", { dataNodes: ["d1", "d2", "d3"], snapshotEveryRecords: 20 });
  await waitForWriter(tc);
});
test.after.always(async () => {
  await tc?.stop();
});

/**
 * One sample line: name, labels, value (Prometheus text format 0.0.4). Prometheus parses values with Go's ParseFloat,
 * which takes NaN and Inf in any case: prom-client writes an empty event-loop-lag window as `Nan`.
 */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|[Nn]a[Nn]|[+-]Inf)$/;

interface Sample {
  name: string;
  labels: string;
  value: number;
}

/** Every sample of a scrape; throws on a line that is neither a comment nor a sample. */
function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = SAMPLE.exec(line);
    if (m === null) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    out.push({ name: m[1], labels: m[2] ?? "", value: Number(m[3]) });
  }
  return out;
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  return parseProm(await res.text());
}

const valueOf = (samples: Sample[], name: string, labelPart = ""): number | undefined => samples.find((s) => s.name === name && s.labels.includes(labelPart))?.value;

/** The series every actor shows, and those of each kind. */
const EVERY = ["qjm_process_resident_memory_bytes", "qjm_last_txid", "qjm_committed_txid"];
const JOURNAL = ["qjm_journal_fsync_seconds_bucket", "qjm_journal_fsync_seconds_count", "qjm_snapshots_stored_total", "qjm_segments_purged_total", "qjm_segments_merged_total"];
const DATA = ["qjm_writes_acked_total", "qjm_write_latency_seconds_bucket", "qjm_batch_records_bucket", "qjm_batch_bytes_bucket", "qjm_snapshots_taken_total", "qjm_snapshots_uploaded_total"];

const urlOf = (i: number): string => `http://127.0.0.1:${metricsPortOf(tc!.cluster.config, i)}/metrics`;

test.serial("metrics - every actor's /metrics is valid Prometheus text with its series; counters move with writes", async (t) => {
  const specs = tc!.cluster.specs;
  const master = await waitForWriter(tc!);
  const masterUrl = urlOf(specs.findIndex((s) => s.name === master.id));
  const before = valueOf(await scrape(masterUrl), "qjm_writes_acked_total") ?? 0;
  let last = 0;
  for (let i = 0; i < 40; i++) {
    const reply = await tc!.write(["SET", `k${i}`, `v${i}`]);
    t.true(reply.ok, JSON.stringify(reply));
    if (reply.ok) last = reply.txid;
  }
  await waitForReplicas(tc!, last);
  for (const [i, spec] of specs.entries()) {
    const samples = await scrape(urlOf(i));
    const names = new Set(samples.map((s) => s.name));
    const expected = [...EVERY, ...(spec.script === "journal-node" ? JOURNAL : DATA)];
    t.deepEqual(expected.filter((n) => !names.has(n)), [], `${spec.name} lacks series`);
    t.true(samples.every((s) => s.labels.includes(`id="${spec.name}"`) && s.labels.includes(`cluster="${tc!.cluster.cluster}"`)), `${spec.name}: every sample labelled`);
    t.true((valueOf(samples, "qjm_process_resident_memory_bytes") ?? 0) > 0, `${spec.name}: RSS`);
    if (spec.script === "journal-node") t.true((valueOf(samples, "qjm_journal_fsync_seconds_count") ?? 0) > 0, `${spec.name}: fsyncs counted`);
  }
  const after = await scrape(masterUrl);
  t.true((valueOf(after, "qjm_writes_acked_total") ?? 0) >= before + 40, "the master's acked writes moved");
  t.true((valueOf(after, "qjm_write_latency_seconds_count") ?? 0) >= before + 40, "each acked write's latency observed");
  t.true((valueOf(after, "qjm_batch_records_count") ?? 0) > 0, "batches observed");
  t.is(valueOf(after, "qjm_writer"), 1);
  for (const node of tc!.cluster.config.journalNodes) t.is(valueOf(after, "qjm_journal_node_healthy", `node="${node}"`), 1, `${node} healthy as the master sees it`);
  t.true(after.some((s) => s.name === "qjm_journal_node_lag_txids"), "journal-node lag as the master sees it");
  // A replica applied everything: its lag gauge says 0 once its commit index caught up too.
  const replica = specs.findIndex((s) => s.script === "data-node" && s.name !== master.id);
  const r = await until("a replica's lag to reach 0", 30000, async () => {
    const samples = await scrape(urlOf(replica));
    return valueOf(samples, "qjm_replica_lag_txids") === 0 && (valueOf(samples, "qjm_replica_applied_txid") ?? 0) >= last ? samples : undefined;
  });
  t.truthy(r);
  // Snapshot counters: some standby took and uploaded one, and a majority of journal nodes stored it.
  const sum = async (script: string, name: string): Promise<number> => {
    let total = 0;
    for (const [i, s] of specs.entries()) if (s.script === script) total += valueOf(await scrape(urlOf(i)), name) ?? 0;
    return total;
  };
  await until("a snapshot uploaded", 60000, async () => ((await sum("data-node", "qjm_snapshots_uploaded_total")) >= 1 ? true : undefined), 200);
  t.true((await sum("data-node", "qjm_snapshots_taken_total")) >= 1);
  t.true((await sum("journal-node", "qjm_snapshots_stored_total")) >= 2, "stored on a majority");
});

test.serial("metrics - anything but GET /metrics is 404, a request body is refused", async (t) => {
  t.is((await fetch(urlOf(0).replace("/metrics", "/other"))).status, 404);
  t.is((await fetch(urlOf(0), { method: "POST", body: "x".repeat(1000) })).status, 400);
  t.is((await fetch(urlOf(0))).status, 200, "still serving");
});

/** Every reply to a micro-protocol request within `maxWait`, as JSON. */
async function microAll(nc: NatsConnection, subject: string, expected: number): Promise<Record<string, unknown>[]> {
  const replies: Record<string, unknown>[] = [];
  const it = await nc.requestMany(subject, "", { strategy: "count", maxMessages: expected, maxWait: 3000 });
  for await (const m of it) replies.push(m.json<Record<string, unknown>>());
  return replies;
}

test.serial("metrics - every actor answers $SRV.PING; $SRV.INFO.qjm carries cluster, id, role and metrics URL", async (t) => {
  const specs = tc!.cluster.specs;
  const pings = await microAll(tc!.nc, microSubjects.ping, specs.length);
  t.is(pings.length, specs.length, "one PING reply per actor");
  t.true(pings.every((p) => p.type === "io.nats.micro.v1.ping_response" && p.name === "qjm"));
  const infos = await microAll(tc!.nc, microSubjects.info, specs.length);
  const byId = new Map(infos.map((i) => [(i.metadata as Record<string, string>).id, i]));
  for (const [i, spec] of specs.entries()) {
    const meta = byId.get(spec.name)?.metadata as Record<string, string> | undefined;
    t.truthy(meta, `${spec.name} answered INFO`);
    t.is(meta?.cluster, tc!.cluster.cluster);
    t.is(meta?.role, spec.script === "journal-node" ? "journal" : "data");
    t.is(meta?.metricsUrl, urlOf(i));
  }
  // What `nats micro ls` does (PING, then INFO and STATS of each instance), through the library's own client: the same
  // cast as src/metrics/micro_service.ts (its NatsConnection type is an older nats-core's).
  const client = new Svcm(tc!.nc as unknown as ConstructorParameters<typeof Svcm>[0]).client({ strategy: "timer", maxWait: 1000 } as Parameters<Svcm["client"]>[0]);
  const ids: string[] = [];
  for await (const p of await client.ping("qjm")) ids.push(p.id);
  t.is(ids.length, specs.length, "the services client finds every actor");
  const stats = [];
  for await (const s of await client.stats("qjm", ids[0])) stats.push(s);
  t.is(stats.length, 1, "STATS of one instance");
});

test.serial("metrics - status --json names each actor's metrics URL, which answers; the table shows lag and rate", async (t) => {
  const env = userEnv(tc!);
  const json = spawnSync(process.execPath, [CLI_JS, "status", "--json"], { env, encoding: "utf8", timeout: 30000 });
  t.is(json.status, 0, json.stderr);
  const statuses = JSON.parse(json.stdout) as ActorStatus[];
  t.is(statuses.length, tc!.cluster.specs.length);
  for (const s of statuses) {
    t.truthy(s.metricsUrl, `${s.id} names its metrics URL`);
    t.is(typeof s.rate, "number");
    t.true((await scrape(s.metricsUrl!)).length > 0, `${s.id}'s metrics URL answers`);
  }
  const table = spawnSync(process.execPath, [CLI_JS, "status"], { env, encoding: "utf8", timeout: 30000 });
  t.is(table.status, 0, table.stderr);
  t.regex(table.stdout, /LAG\s+RATE/);
  t.regex(table.stdout, /writes\/s/);
  t.regex(table.stdout, /applied\/s/);
});

test.serial("metrics - the single-master layout: m1 shows the master's series, each replica its own", async (t) => {
  const single = await startTestCluster("metrics-single");
  try {
    await waitForWriter(single);
    const reply = await single.write(["SET", "k", "v"]);
    t.true(reply.ok);
    await waitForReplicas(single, reply.ok ? reply.txid : 1);
    const { specs, config } = single.cluster;
    for (const [i, spec] of specs.entries()) {
      const samples = await scrape(`http://127.0.0.1:${metricsPortOf(config, i)}/metrics`);
      const names = new Set(samples.map((s) => s.name));
      const expected = spec.script === "master" ? ["qjm_writes_acked_total", "qjm_write_latency_seconds_count", "qjm_journal_node_healthy", "qjm_writer"] : spec.script === "replica" ? ["qjm_replica_applied_txid", "qjm_replica_lag_txids", "qjm_snapshots_taken_total"] : ["qjm_journal_fsync_seconds_count"];
      t.deepEqual(expected.filter((n) => !names.has(n)), [], `${spec.name} lacks series`);
      t.true(samples.every((s) => s.labels.includes(`role="${spec.script === "journal-node" ? "journal" : spec.script}"`)), `${spec.name}: role label`);
    }
  } finally {
    await single.stop();
  }
});
