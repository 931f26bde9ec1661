/** Metrics (issue #14 item 4), the pure pieces: port order, rates, lags, a registry of its own, the endpoint's bounds. */
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import test from "ava";
import { register as globalRegistry } from "prom-client";
import { actorSpecs, metricsPortOf } from "../../src/cluster/local_cluster.js";
import { defaults, validateConfig, type Config } from "../../src/config/config.js";
import { ActorMetrics } from "../../src/metrics/actor_metrics.js";
import { startMetricsServer } from "../../src/metrics/metrics_server.js";
import { RateMeter, RATE_SAMPLE_EVERY_MS } from "../../src/metrics/rate.js";
import { lagOf, rateText } from "../../src/metrics/status_lag.js";
import { journalNodeLag } from "../../src/master/master_status.js";
import type { ActorStatus } from "../../src/protocol/messages.js";
import { freePort } from "../../src/process/ports.js";
import { pino } from "pino";

const config = (over: Partial<Config> = {}): Config => ({ ...defaults, ...over });

test("metrics - ports: journal nodes first, then data nodes (or m1 and the replicas), one each upward; 0 is off", (t) => {
  const c = config({ metricsPort: 9470 });
  t.deepEqual(actorSpecs(c).map((s, i) => `${s.name}:${metricsPortOf(c, i)}`), ["jn1:9470", "jn2:9471", "jn3:9472", "d1:9473", "d2:9474", "d3:9475"]);
  const single = config({ dataNodes: [], metricsPort: 9000 });
  t.deepEqual(actorSpecs(single).map((s, i) => `${s.name}:${metricsPortOf(single, i)}`), ["jn1:9000", "jn2:9001", "jn3:9002", "m1:9003", "r1:9004", "r2:9005"]);
  const off = config({ metricsPort: 0 });
  t.deepEqual(actorSpecs(off).map((_, i) => metricsPortOf(off, i)), [0, 0, 0, 0, 0, 0]);
});

test("metrics - the default metrics ports collide with no other port of the default configuration", (t) => {
  t.deepEqual(validateConfig(config()), []);
  t.true(validateConfig(config({ metricsPort: defaults.dataRedisPortBase - 2 })).some((e) => e.includes("metricsPort")), "overlaps the data nodes' Redis ports");
  t.true(validateConfig(config({ metricsPort: 65533 })).some((e) => e.includes("metricsPort")), "past the last TCP port");
});

test("metrics - rate: per second over the last samples, one sample a second at most, and a total that went down starts over", (t) => {
  const m = new RateMeter();
  t.is(m.sample(0, 0), 0);
  t.is(m.sample(500, 50), 100, "from the first sample");
  t.is(m.sample(RATE_SAMPLE_EVERY_MS, 100), 100);
  for (let s = 2; s <= 10; s++) m.sample(s * 1000, s * 100 + (s > 6 ? (s - 6) * 100 : 0));
  // Samples at 6..10 s: totals 600 → 1400 over 4 s.
  t.is(m.sample(10_000, 1400), 200);
  t.is(m.sample(11_000, 10), 0, "went down: over again");
  t.is(m.sample(12_000, 30), 20);
});

test("metrics - journal-node lag as the master sees it: its acks or its heartbeat, whichever says more", (t) => {
  t.is(journalNodeLag(100, undefined, undefined), null);
  t.is(journalNodeLag(100, 100, 40), 0);
  t.is(journalNodeLag(100, 60, undefined), 40);
  t.is(journalNodeLag(100, undefined, 70), 30);
  t.is(journalNodeLag(100, 20, 90), 10);
  t.is(journalNodeLag(100, 120, undefined), 0, "never negative");
});

const status = (over: Partial<ActorStatus>): ActorStatus => ({ role: "journal", id: "x", pid: 1, epoch: 1, lastTxid: 0, committedTxid: 0, appliedTxid: 0, health: "ok", redisUrl: null, metricsUrl: null, rate: 0, details: {}, ...over });

test("metrics - status lag: a replica's committed - applied; a journal node's from the serving master, else from the highest commit index", (t) => {
  const master = status({ role: "master", id: "d1", health: "writing", committedTxid: 100, details: { journalNodeLag: { jn1: 0, jn2: 7, jn3: null } } });
  const jn1 = status({ id: "jn1", lastTxid: 100 });
  const jn3 = status({ id: "jn3", lastTxid: 90, committedTxid: 80 });
  const r = status({ role: "replica", id: "d2", committedTxid: 100, appliedTxid: 95 });
  const all = [master, jn1, status({ id: "jn2" }), jn3, r];
  t.is(lagOf(master, all), null);
  t.is(lagOf(jn1, all), 0);
  t.is(lagOf(all[2], all), 7);
  t.is(lagOf(jn3, all), 10, "no word from the master: the highest commit index");
  t.is(lagOf(r, all), 5);
  t.is(lagOf(jn3, [jn3]), 0);
  t.is(rateText(status({ role: "master", rate: 12.5 })), "12.5 writes/s");
  t.is(rateText(r), "0 applied/s");
});

test("metrics - a registry per actor, labelled; nothing lands in prom-client's global registry; status gauges follow the role", async (t) => {
  const m = new ActorMetrics({ cluster: "c", id: "d1", role: "data" });
  m.master.answered(true, 0, 3);
  m.master.answered(false, 0, 3);
  m.master.batch(2, 100);
  void m.replica;
  let s: ActorStatus = m.decorate(status({ role: "replica", committedTxid: 10, appliedTxid: 4 }));
  m.watchStatus(() => s);
  let text = await m.scrape();
  t.regex(text, /^qjm_writes_acked_total\{cluster="c",id="d1",role="data"\} 1$/m);
  t.regex(text, /^qjm_writes_failed_total\{cluster="c",id="d1",role="data"\} 1$/m);
  t.regex(text, /^qjm_write_latency_seconds_bucket\{le="0.005",cluster="c",id="d1",role="data"\} 1$/m);
  t.regex(text, /^qjm_replica_lag_txids\{[^}]*\} 6$/m);
  t.notRegex(text, /qjm_journal_node_healthy\{/, "no per-node series while a replica");
  s = m.decorate(status({ role: "master", health: "writing", committedTxid: 10, details: { journalNodes: { jn1: "healthy", jn2: "masked" }, journalNodeLag: { jn1: 0, jn2: 4 } } }));
  text = await m.scrape();
  t.regex(text, /^qjm_journal_node_healthy\{node="jn2",[^}]*\} 0$/m);
  t.regex(text, /^qjm_journal_node_lag_txids\{node="jn2",[^}]*\} 4$/m);
  t.regex(text, /^qjm_writer\{[^}]*\} 1$/m);
  t.regex(text, /^qjm_replica_lag_txids\{[^}]*\} 0$/m);
  t.is(s.metricsUrl, null);
  t.is((await globalRegistry.metrics()).includes("qjm_"), false);
});

test("metrics - the endpoint: GET /metrics 200 in Prometheus text, anything else 404, a body refused, a taken port null", async (t) => {
  const log = pino({ level: "silent" });
  const m = new ActorMetrics({ cluster: "c", id: "jn1", role: "journal" }, { processMetrics: true });
  const port = await freePort();
  const server = await startMetricsServer("127.0.0.1", port, m, log);
  t.truthy(server);
  try {
    t.is(server!.url, `http://127.0.0.1:${port}/metrics`);
    const ok = await fetch(server!.url);
    t.is(ok.status, 200);
    t.regex(ok.headers.get("content-type") ?? "", /^text\/plain/);
    t.regex(await ok.text(), /^qjm_process_resident_memory_bytes\{cluster="c",id="jn1",role="journal"\} \d+$/m);
    t.is((await fetch(`http://127.0.0.1:${port}/`)).status, 404);
    t.is((await fetch(`${server!.url}?x=1`, { method: "DELETE" })).status, 405);
    t.is((await fetch(server!.url, { method: "POST", body: "a=b" })).status, 400);
    t.is(await startMetricsServer("127.0.0.1", port, m, log), null, "port taken: logged, no server");
  } finally {
    await server!.close();
  }
});

test("metrics - the example Grafana dashboard is valid JSON, its datasource a variable, every series it reads one we export", (t) => {
  const file = fileURLToPath(new URL("../../../infra/grafana/redis-qjm.json", import.meta.url));
  const dash = JSON.parse(fs.readFileSync(file, "utf8")) as { templating: { list: { name: string; type: string }[] }; panels: { datasource: { uid: string }; targets: { expr: string }[] }[] };
  t.true(dash.templating.list.some((v) => v.name === "datasource" && v.type === "datasource"));
  const m = new ActorMetrics({ cluster: "c", id: "x", role: "data" }, { processMetrics: true });
  void [m.master, m.journal, m.replica];
  const exported = new Set(m.registry.getMetricsAsArray().map((x) => x.name));
  for (const p of dash.panels) {
    t.is(p.datasource.uid, "${datasource}");
    for (const { expr } of p.targets) {
      for (const name of expr.match(/qjm_[a-z_]+/g) ?? []) t.true(exported.has(name.replace(/_(bucket|sum|count)$/, "")), `${name} in ${expr}`);
    }
  }
});
