import test from "ava";
import { defaults } from "../../src/config/config.js";
import { encode } from "../../src/protocol/codec.js";
import { NodeWatch } from "../../src/master/node_watch.js";

const config = { ...defaults, journalHeartbeatTimeoutMs: 3000, replicaReportTtlMs: 10000 };

test("node watch - a node is restorable while heard, not once silent past the heartbeat timeout", (t) => {
  const w = new NodeWatch(config);
  t.false(w.restorable("jn1", 0), "never heard");
  w.heard("jn1", 1000);
  t.true(w.restorable("jn1", 3999));
  t.is(w.silentMs("jn1", 5000), 4000);
  t.false(w.restorable("jn1", 4001));
  w.heard("jn1", 500);
  t.is(w.silentMs("jn1", 5000), 4000, "an older heartbeat never moves the clock back");
  w.heard("jn9", 1000);
  t.false(w.restorable("jn9", 1000), "unknown nodes are ignored");
});

test("node watch - a masked node is restorable only once heard after its mask: a frozen node's last heartbeat is older", (t) => {
  const w = new NodeWatch(config);
  w.heard("jn2", 1000);
  t.true(w.restorable("jn2", 1200));
  // Stopped at ~1000 and masked at 2000 for batches it left unanswered: its heartbeat is still within the timeout.
  w.masked("jn2");
  t.false(w.restorable("jn2", 2100), "its last heartbeat predates the mask");
  w.heard("jn2", 2500);
  t.true(w.restorable("jn2", 2600), "heard again: it answers, a catch-up may start");
  w.heard("jn3", 10);
  t.true(w.restorable("jn3", 20), "a node never masked needs only a heartbeat");
});

test("node watch - a heartbeat after the mask counts even when the wall clock stepped back", (t) => {
  const w = new NodeWatch(config);
  w.heard("jn1", 3_600_000);
  w.masked("jn1");
  // The clock is stepped back an hour: the heartbeat's time is earlier than the last one, it is still a new heartbeat.
  w.heard("jn1", 1000);
  t.true(w.restorable("jn1", 1100), "heard since the mask: restorable at once, not an hour later");
});

test("node watch - a replica's report keeps a node from being restored for replicaReportTtlMs", (t) => {
  const w = new NodeWatch(config);
  w.heard("jn2", 0);
  const reports = w.replicaReports(encode({ id: "r1", journalNodeFaults: { jn2: "checksum mismatch", jn9: "x", jn3: 7 } }), 100);
  t.deepEqual(reports, [{ node: "jn2", replica: "r1", reason: "checksum mismatch" }]);
  w.heard("jn2", 5000);
  t.false(w.restorable("jn2", 5000));
  w.heard("jn2", 10200);
  t.true(w.restorable("jn2", 10200));
});

test("node watch - malformed replica heartbeats carry no report", (t) => {
  const w = new NodeWatch(config);
  t.deepEqual(w.replicaReports(Buffer.from("not msgpack"), 0), []);
  t.deepEqual(w.replicaReports(encode({ id: 3, journalNodeFaults: { jn1: "x" } }), 0), []);
  t.deepEqual(w.replicaReports(encode({ id: "r1" }), 0), []);
});
