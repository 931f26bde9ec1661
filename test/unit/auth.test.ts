/** Per-role NATS permissions and the routing of journal requests to subjects: pure, no server. */
import test from "ava";
import { permissionsOf, type NatsUser } from "../../src/nats/auth.js";
import { journalSubjectOf, snapshotSubjectOf, subjects } from "../../src/protocol/subjects.js";

/** nats-server's subject matching: `*` one token, `>` one or more trailing tokens. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

const C = "c1";
const s = subjects(C);
const may = (user: NatsUser, subject: string): boolean => permissionsOf(C, user).publish.some((p) => matches(p, subject));
const hears = (user: NatsUser, subject: string): boolean => permissionsOf(C, user).subscribe.some((p) => matches(p, subject));

const client: NatsUser = { name: "client", role: "client" };
const master: NatsUser = { name: "m1", role: "master" };
const jn1: NatsUser = { name: "jn1", role: "journal" };
const r1: NatsUser = { name: "r1", role: "replica" };

const WRITER_TYPES = ["newEpoch", "startSegment", "journal", "prepareRecovery", "recoveryAppend", "acceptRecovery", "finalize", "format", "syncSegment", "markRestored"];

test("auth - a client publishes writes and status requests only, and reads events and its own replies only", (t) => {
  t.true(may(client, s.write));
  t.true(may(client, s.status));
  for (const type of [...WRITER_TYPES, "read", "getState", "getManifest", "snapshotDurable"]) t.false(may(client, journalSubjectOf(s, "jn1", type)), type);
  for (const type of ["snapshotBegin", "snapshotChunk", "snapshotEnd", "snapshotList", "snapshotRead"]) t.false(may(client, snapshotSubjectOf(s, "jn1", type)), type);
  t.false(may(client, s.heartbeat("journal", "jn1")));
  t.false(may(client, s.events));
  t.false(may(client, `${s.inbox("m1")}.x`), "no forged replies");
  t.true(hears(client, s.events));
  t.true(hears(client, `${s.inbox("client")}.abc.1`));
  t.false(hears(client, `${s.inbox("m1")}.abc.1`), "nobody else's replies");
  t.false(hears(client, s.write));
});

test("auth - only the master sends writer requests; replicas read, download and upload snapshots", (t) => {
  for (const type of WRITER_TYPES) {
    t.true(may(master, journalSubjectOf(s, "jn2", type)), type);
    t.false(may(r1, journalSubjectOf(s, "jn2", type)), type);
    t.false(may(jn1, journalSubjectOf(s, "jn2", type)), type);
  }
  for (const type of ["read", "getState", "getManifest"]) t.true(may(r1, journalSubjectOf(s, "jn2", type)) && may(master, journalSubjectOf(s, "jn2", type)), type);
  for (const type of ["snapshotBegin", "snapshotChunk", "snapshotEnd", "snapshotList", "snapshotRead"]) t.true(may(r1, snapshotSubjectOf(s, "jn2", type)), type);
  t.true(may(r1, journalSubjectOf(s, "jn2", "snapshotDurable")), "the replica's snapshot client marks its upload durable");
  t.is(journalSubjectOf(s, "jn2", "snapshotDurable"), s.snapshotUpload("jn2"));
  t.false(may(jn1, s.snapshotUpload("jn2")));
});

test("auth - each actor publishes only its own heartbeat; a journal node hears only its own subjects", (t) => {
  t.true(may(jn1, s.heartbeat("journal", "jn1")));
  t.false(may(jn1, s.heartbeat("journal", "jn2")));
  t.false(may(r1, s.heartbeat("replica", "r2")));
  t.false(may(r1, s.heartbeat("journal", "jn1")));
  t.false(may(master, s.heartbeat("journal", "jn1")));
  t.true(may(master, s.heartbeat("master", "m1")));
  t.true(hears(master, s.heartbeat("journal", "jn3")) && hears(master, s.heartbeat("replica", "r2")));
  for (const subject of [s.journal("jn1"), s.journalRead("jn1"), s.snapshot("jn1"), s.snapshotUpload("jn1"), s.status]) t.true(hears(jn1, subject), subject);
  for (const subject of [s.journal("jn2"), s.journalRead("jn2"), s.snapshotUpload("jn2"), s.write]) t.false(hears(jn1, subject), subject);
  t.false(hears(r1, s.write), "a replica never answers writes");
});

test("auth - a data node may do what a master and a replica may, beats only as itself, hears only its own control", (t) => {
  const d1: NatsUser = { name: "d1", role: "data" };
  for (const type of WRITER_TYPES) t.true(may(d1, journalSubjectOf(s, "jn2", type)), type);
  t.true(may(d1, s.heartbeat("master", "d1")) && may(d1, s.heartbeat("replica", "d1")));
  t.false(may(d1, s.heartbeat("master", "d2")) || may(d1, s.heartbeat("replica", "d2")), "no heartbeat in another node's name");
  t.true(hears(d1, s.heartbeat("master", "d2")) && hears(d1, s.heartbeat("replica", "d3")));
  t.true(hears(d1, s.write));
  t.true(hears(d1, s.control("d1")));
  t.false(hears(d1, s.control("d2")));
  t.true(may(d1, s.control("d2")), "the draining master asks its chosen standby to campaign");
});

test("auth - only the admin user, not a client, may ask a data node for a switchover", (t) => {
  const admin: NatsUser = { name: "admin", role: "admin" };
  t.true(may(admin, s.control("d1")));
  t.true(may(admin, s.write) && may(admin, s.status) && hears(admin, s.events));
  t.false(may(client, s.control("d1")));
  for (const type of WRITER_TYPES) t.false(may(admin, journalSubjectOf(s, "jn1", type)), type);
});

test("auth - a client may address the master directly (write.<id>); only that data node hears it", (t) => {
  t.true(may(client, s.writeTo("d2")));
  const d2: NatsUser = { name: "d2", role: "data" };
  t.true(hears(d2, s.writeTo("d2")));
  t.false(hears(d2, s.writeTo("d3")));
  t.false(hears(r1, s.writeTo("r1")), "a replica of the single-master layout never answers writes");
  t.false(hears(client, s.writeTo("d2")) || hears(client, `${s.write}.*`), "a client never takes another's writes");
  t.false(hears(jn1, s.writeTo("d2")) || hears(r1, s.writeTo("d2")));
});

test("auth - a client learns the master from masters' heartbeats, which only each master publishes, in its own name", (t) => {
  t.true(hears(client, s.heartbeat("master", "d2")));
  t.false(hears(client, s.heartbeat("replica", "d2")) || hears(client, s.heartbeat("journal", "jn1")), "only masters' heartbeats");
  const d2: NatsUser = { name: "d2", role: "data" };
  for (const user of [client, jn1, r1, d2]) t.false(may(user, s.heartbeat("master", "d3")), `${user.name} may not announce d3 as master`);
  t.true(may(d2, s.heartbeat("master", "d2")));
});

test("auth - every actor answers the NATS micro protocol ($SRV); the client and admin may ask it, nothing more", (t) => {
  const admin: NatsUser = { name: "admin", role: "admin" };
  const d1: NatsUser = { name: "d1", role: "data" };
  const faults: NatsUser = { name: "faults", role: "faults" };
  for (const actor of [master, jn1, r1, d1]) {
    for (const subject of ["$SRV.PING", "$SRV.INFO.qjm", "$SRV.STATS.qjm.ABC123"]) t.true(hears(actor, subject), `${actor.name} hears ${subject}`);
    t.false(may(actor, "$SRV.PING"), `${actor.name} answers (allow_responses), never asks`);
  }
  for (const user of [client, admin]) {
    for (const subject of ["$SRV.PING", "$SRV.INFO.qjm", "$SRV.STATS.qjm.ABC123"]) t.true(may(user, subject), `${user.name} asks ${subject}`);
    t.false(hears(user, "$SRV.PING"), `${user.name} never answers`);
  }
  t.false(may(faults, "$SRV.PING"));
  t.false(hears(faults, "$SRV.PING"));
});

test("auth - pub/sub between front doors: a data node publishes on its own subject only and hears every node's; a client or the admin can neither inject nor listen", (t) => {
  const d1: NatsUser = { name: "d1", role: "data" };
  const admin: NatsUser = { name: "admin", role: "admin" };
  t.true(may(d1, s.pubsub("d1")));
  t.false(may(d1, s.pubsub("d2")), "no message in another node's name");
  t.true(hears(d1, s.pubsub("d1")) && hears(d1, s.pubsub("d2")));
  for (const user of [client, admin, master, jn1, r1]) {
    t.false(may(user, s.pubsub("d1")), `${user.name} may not publish on ${s.pubsub("d1")}`);
    t.false(hears(user, s.pubsub("d1")), `${user.name} does not hear ${s.pubsub("d1")}`);
  }
});

test("auth - only a master publishes commit hints; journal nodes, replicas and data nodes hear them", (t) => {
  const d1: NatsUser = { name: "d1", role: "data" };
  t.true(may(master, s.committed) && may(d1, s.committed));
  for (const user of [client, jn1, r1]) t.false(may(user, s.committed), user.name);
  for (const user of [jn1, r1, d1]) t.true(hears(user, s.committed), user.name);
  t.false(hears(client, s.committed));
});

test("auth - only a master (or a data node) publishes batch fan-outs, journal nodes and replicas hear them, each journal node answers in its own name only", (t) => {
  const d1: NatsUser = { name: "d1", role: "data" };
  const admin: NatsUser = { name: "admin", role: "admin" };
  t.true(may(master, s.batch) && may(d1, s.batch));
  for (const user of [client, admin, jn1, r1]) t.false(may(user, s.batch), user.name);
  for (const user of [jn1, r1, d1]) t.true(hears(user, s.batch), user.name);
  for (const user of [client, admin, master]) t.false(hears(user, s.batch), user.name);
  // Answers: each journal node on its own subject only (its id is vouched for by nats-server), heard by masters.
  t.true(may(jn1, s.batchAck("jn1")));
  t.false(may(jn1, s.batchAck("jn2")), "no answer in another node's name");
  for (const user of [client, admin, master, r1, d1]) t.false(may(user, s.batchAck("jn1")), user.name);
  t.true(hears(master, s.batchAck("jn1")) && hears(d1, s.batchAck("jn2")));
  for (const user of [client, admin, jn1, r1]) t.false(hears(user, s.batchAck("jn1")), user.name);
});
