import test from "ava";
import { actorSpecs, heapArgs, rotatedUrls } from "../../src/cluster/local_cluster.js";
import { defaults, envName, loadConfig, natsUrlPort, natsUrls, quorumSize, validateConfig } from "../../src/config/config.js";
import { decode, encode } from "../../src/protocol/codec.js";
import { QjmError } from "../../src/protocol/errors.js";
import { RECORD_BYTES_MAX } from "../../src/segment/record.js";
import { parseCommitHint, parseControlRequest, parseJournalRequest, parseRoleReply, parseWriteRequest, type JournalRequest } from "../../src/protocol/messages.js";

// ---- config ----

test("config - envName turns camelCase into QJM_SCREAMING_SNAKE", (t) => {
  t.is(envName("batchBytesMax"), "QJM_BATCH_BYTES_MAX");
  t.is(envName("natsUrl"), "QJM_NATS_URL");
  t.is(envName("journalNodes"), "QJM_JOURNAL_NODES");
  t.is(envName("replicaRedisPortBase"), "QJM_REPLICA_REDIS_PORT_BASE");
  t.is(envName("cluster"), "QJM_CLUSTER");
});

test("config - loadConfig with no QJM_* variables gives the defaults", (t) => {
  t.deepEqual(loadConfig({}), defaults);
  t.deepEqual(loadConfig({ PATH: "/usr/bin", QJM_UNKNOWN_THING: "5" }), defaults);
  t.deepEqual(validateConfig(defaults), []);
});

test("config - loadConfig reads numbers, lists and strings from QJM_* variables", (t) => {
  const c = loadConfig({
    QJM_BATCH_BYTES_MAX: "600000",
    QJM_QUORUM_TIMEOUT_MS: "2500",
    QJM_JOURNAL_NODES: "a, b ,,c",
    QJM_REPLICAS: "r9",
    QJM_CLUSTER: "prod-1",
    QJM_NATS_URL: "nats://10.0.0.1:4333",
    QJM_WRITER_RETRY_MS: "",
  });
  t.is(c.batchBytesMax, 600000);
  t.is(c.quorumTimeoutMs, 2500);
  t.deepEqual(c.journalNodes, ["a", "b", "c"]);
  t.deepEqual(c.replicas, ["r9"]);
  t.is(c.cluster, "prod-1");
  t.is(c.natsUrl, "nats://10.0.0.1:4333");
  t.is(c.writerRetryMs, defaults.writerRetryMs, "an empty variable keeps the default");
  t.is(c.readBytesMax, defaults.readBytesMax);
});

test("config - overrides win over the environment", (t) => {
  const c = loadConfig({ QJM_QUORUM_TIMEOUT_MS: "2500", QJM_CLUSTER: "env" }, { quorumTimeoutMs: 4000 });
  t.is(c.quorumTimeoutMs, 4000);
  t.is(c.cluster, "env");
});

test("config - loadConfig refuses a negative or non-numeric number, naming the variable", (t) => {
  for (const raw of ["-1", "abc", "12ms", "NaN", "Infinity", "1,000"]) {
    const err = t.throws(() => loadConfig({ QJM_QUORUM_TIMEOUT_MS: raw }), undefined, raw);
    t.regex(err?.message ?? "", /QJM_QUORUM_TIMEOUT_MS/, raw);
  }
});

test("config - sizes: the byte bounds must admit the largest write's record, and loadConfig refuses what does not", (t) => {
  t.deepEqual(validateConfig(defaults), []);
  // A client write is no longer capped under a batch: it follows nats-server's max_payload (writeBytesMax 0).
  t.deepEqual(validateConfig({ ...defaults, writeBytesMax: 64 * 1024 * 1024 }), []);
  t.regex(validateConfig({ ...defaults, writeEffectsBytesMax: RECORD_BYTES_MAX }).join(";"), /writeEffectsBytesMax/);
  t.regex(validateConfig({ ...defaults, busMessageBytesMax: RECORD_BYTES_MAX }).join(";"), /busMessageBytesMax/);
  t.regex(validateConfig({ ...defaults, busReassemblyBytesMax: defaults.busMessageBytesMax - 1 }).join(";"), /busReassemblyBytesMax/);
  t.regex(validateConfig({ ...defaults, busReassemblyStreamsMax: 0 }).join(";"), /busReassemblyStreamsMax/);
  t.regex(validateConfig({ ...defaults, replStreamBytesMax: defaults.writeEffectsBytesMax - 1 }).join(";"), /replStreamBytesMax/);
  t.regex(validateConfig({ ...defaults, writesQueuedBytesMax: 0 }).join(";"), /writesQueuedBytesMax/);
  t.throws(() => loadConfig({ QJM_WRITE_EFFECTS_BYTES_MAX: String(RECORD_BYTES_MAX) }), { message: /writeEffectsBytesMax/ });
});

test("config - validateConfig catches an empty or duplicated journal node list and a bad cluster token", (t) => {
  t.regex(validateConfig({ ...defaults, journalNodes: [] }).join(";"), /journalNodes/);
  t.regex(validateConfig({ ...defaults, journalNodes: ["jn1", "jn1", "jn2"] }).join(";"), /duplicates/);
  t.regex(validateConfig({ ...defaults, cluster: "a.b" }).join(";"), /cluster/);
  t.throws(() => loadConfig({ QJM_JOURNAL_NODES: " , ," }), { message: /journalNodes/ });
});

test("config - quorumSize is a strict majority", (t) => {
  t.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map(quorumSize),
    [1, 2, 2, 3, 3, 4, 4],
  );
  t.throws(() => quorumSize(0));
});

// ---- codec ----

function notMsgpack(t: import("ava").ExecutionContext, body: Uint8Array, name: string): void {
  const err = t.throws(() => decode(body), { instanceOf: QjmError }, name);
  t.is((err as QjmError | undefined)?.code, "NOT_MSGPACK", name);
}

test("codec - decode refuses an empty body and plain text with NOT_MSGPACK", (t) => {
  notMsgpack(t, Buffer.alloc(0), "empty");
  notMsgpack(t, Buffer.from("hello world"), "plain text");
  notMsgpack(t, Buffer.from('{"type":"getState"}'), "JSON");
});

test("codec - decode refuses a truncated value and two concatenated values with NOT_MSGPACK", (t) => {
  const whole = Buffer.from(encode({ type: "journal", records: Buffer.alloc(100, 1), note: "some string" }));
  for (const cut of [1, 5, 20, whole.length - 1]) notMsgpack(t, whole.subarray(0, cut), `cut at ${cut}`);
  notMsgpack(t, Buffer.concat([Buffer.from(encode(1)), Buffer.from(encode(2))]), "two values");
});

test("codec - encode then decode keeps maps, numbers, strings and byte strings", (t) => {
  const bytes = Buffer.from([0, 1, 0xfe, 0xff]);
  const value = decode(encode({ a: 1, big: 2 ** 40, neg: -3, s: "ü", b: bytes, list: [true, null, "x"], nested: { k: [1, 2] } })) as Record<string, unknown>;
  t.is(value.a, 1);
  t.is(value.big, 2 ** 40);
  t.is(value.neg, -3);
  t.is(value.s, "ü");
  t.true(value.b instanceof Uint8Array);
  t.true(Buffer.from(value.b as Uint8Array).equals(bytes));
  t.deepEqual(value.list, [true, null, "x"]);
  t.deepEqual(value.nested, { k: [1, 2] });
});

// ---- messages ----

function badRequest(t: import("ava").ExecutionContext, f: () => unknown, name: string): void {
  const err = t.throws(f, { instanceOf: QjmError }, name);
  t.is((err as QjmError | undefined)?.code, "BAD_REQUEST", name);
}

test("messages - parseJournalRequest accepts every request type as it travels (through the codec)", (t) => {
  const records = Buffer.from([1, 2, 3]);
  const requests: JournalRequest[] = [
    { type: "getState" },
    { type: "newEpoch", epoch: 3 },
    { type: "startSegment", epoch: 3, txid: 11 },
    { type: "journal", epoch: 3, segmentTxid: 11, firstTxid: 12, count: 1, records, committedTxid: 11 },
    { type: "prepareRecovery", epoch: 3, segmentTxid: 11 },
    { type: "recoveryAppend", epoch: 3, segmentTxid: 11, firstTxid: 12, count: 1, records },
    { type: "acceptRecovery", epoch: 3, segment: { startTxid: 11, endTxid: 10, inProgress: true }, lastRecord: { epoch: 2, crc: 0xffffffff } },
    { type: "finalize", epoch: 3, startTxid: 11, endTxid: 20 },
    { type: "read", fromTxid: 1, bytesMax: 1000, recordsMax: 10, uncommitted: false },
  ];
  for (const req of requests) {
    const parsed = parseJournalRequest(decode(encode(req)));
    t.is(parsed.type, req.type);
    const norm = (r: JournalRequest) => JSON.stringify(r, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v));
    t.is(norm(parsed), norm(req), req.type);
  }
});

test("messages - parseJournalRequest refuses unknown types, non-maps and wrong field types with BAD_REQUEST", (t) => {
  const cases: [string, unknown][] = [
    ["null", null],
    ["array", ["getState"]],
    ["string", "getState"],
    ["bytes", Buffer.from("getState")],
    ["no type", {}],
    ["unknown type", { type: "format" }],
    ["type not a string", { type: 1 }],
    ["epoch as string", { type: "newEpoch", epoch: "3" }],
    ["epoch missing", { type: "newEpoch" }],
    ["epoch negative", { type: "newEpoch", epoch: -1 }],
    ["epoch fractional", { type: "newEpoch", epoch: 1.5 }],
    ["epoch unsafe", { type: "newEpoch", epoch: 2 ** 53 }],
    // Records carry a u32 epoch (issue #10, class 3): a promise above it would fence every writer for good.
    ["epoch above u32", { type: "newEpoch", epoch: 2 ** 32 }],
    ["startSegment epoch above u32", { type: "startSegment", epoch: 2 ** 32, txid: 1 }],
    ["journal epoch above u32", { type: "journal", epoch: 2 ** 32, segmentTxid: 1, firstTxid: 1, count: 0, records: Buffer.alloc(0), committedTxid: 0 }],
    ["prepare epoch above u32", { type: "prepareRecovery", epoch: 2 ** 40, segmentTxid: 1 }],
    ["recoveryAppend epoch above u32", { type: "recoveryAppend", epoch: 2 ** 32, segmentTxid: 1, firstTxid: 1, count: 0, records: Buffer.alloc(0) }],
    ["accept epoch above u32", { type: "acceptRecovery", epoch: 2 ** 32, segment: { startTxid: 1, endTxid: 1, inProgress: true }, lastRecord: { epoch: 1, crc: 1 } }],
    ["accept lastRecord missing", { type: "acceptRecovery", epoch: 2, segment: { startTxid: 1, endTxid: 1, inProgress: true } }],
    ["accept lastRecord crc above u32", { type: "acceptRecovery", epoch: 2, segment: { startTxid: 1, endTxid: 1, inProgress: true }, lastRecord: { epoch: 1, crc: 2 ** 32 } }],
    ["finalize epoch above u32", { type: "finalize", epoch: 2 ** 32, startTxid: 1, endTxid: 1 }],
    ["format epoch above u32", { type: "format", clusterId: "c", restoring: false, epoch: 2 ** 32 }],
    ["syncSegment epoch above u32", { type: "syncSegment", epoch: 2 ** 32, clusterId: "c", segment: { startTxid: 1, endTxid: 1, inProgress: false }, firstTxid: 1, count: 0, records: Buffer.alloc(0) }],
    ["markRestored epoch above u32", { type: "markRestored", epoch: 2 ** 32, clusterId: "c" }],
    ["txid as bool", { type: "startSegment", epoch: 1, txid: true }],
    ["records as string", { type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 1, records: "abc", committedTxid: 0 }],
    ["records as array", { type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 1, records: [1, 2], committedTxid: 0 }],
    ["committedTxid missing", { type: "journal", epoch: 1, segmentTxid: 1, firstTxid: 1, count: 1, records: Buffer.alloc(1) }],
    ["uncommitted as number", { type: "read", fromTxid: 1, bytesMax: 10, recordsMax: 1, uncommitted: 1 }],
    ["segment missing", { type: "acceptRecovery", epoch: 1 }],
    ["segment starting at 0", { type: "acceptRecovery", epoch: 1, segment: { startTxid: 0, endTxid: 0, inProgress: true } }],
    ["segment ending before it starts", { type: "acceptRecovery", epoch: 1, segment: { startTxid: 5, endTxid: 2, inProgress: true } }],
    ["segment inProgress missing", { type: "acceptRecovery", epoch: 1, segment: { startTxid: 5, endTxid: 6 } }],
  ];
  for (const [name, v] of cases) badRequest(t, () => parseJournalRequest(v), name);
});

test("messages - parseWriteRequest turns [command, ...args] into byte strings", (t) => {
  const { args, id } = parseWriteRequest(decode(encode(["SET", "k", Buffer.from([0, 0xff])])));
  t.is(id, null);
  t.deepEqual(
    args.map((a) => [...a]),
    [[...Buffer.from("SET")], [...Buffer.from("k")], [0, 0xff]],
  );
  for (const a of args) t.true(Buffer.isBuffer(a));
});

test("messages - parseWriteRequest refuses non-arrays, empty arrays and non-string arguments with BAD_REQUEST", (t) => {
  const cases: [string, unknown][] = [
    ["string", "SET k v"],
    ["map", { 0: "SET", 1: "k" }],
    ["null", null],
    ["bytes", Buffer.from("SET")],
    ["empty", []],
    ["nil argument", ["SET", "k", null]],
    ["bool argument", ["SET", "k", true]],
    ["map argument", ["SET", "k", { v: 1 }]],
    ["nested array", ["SET", ["k", "v"]]],
    ["nil command", [null]],
    ["NaN argument", ["INCRBYFLOAT", "k", Number.NaN]],
  ];
  for (const [name, v] of cases) badRequest(t, () => parseWriteRequest(v), name);
});

test("messages - control requests: a handover names a data node or none; anything else is BAD_REQUEST", (t) => {
  t.deepEqual(parseControlRequest({ type: "handover" }), { type: "handover", to: null });
  t.deepEqual(parseControlRequest({ type: "handover", to: "d2" }), { type: "handover", to: "d2" });
  t.deepEqual(parseControlRequest({ type: "campaign", from: "d1" }), { type: "campaign", from: "d1" });
  t.deepEqual(parseControlRequest({ type: "probe" }), { type: "probe" });
  for (const bad of [null, [], "handover", { type: "handover", to: "d2.x" }, { type: "handover", to: 7 }, { type: "campaign" }, { type: "campaign", from: "x".repeat(65) }, { type: "stepDown" }]) {
    badRequest(t, () => parseControlRequest(bad), JSON.stringify(bad));
  }
});

test("messages - a probe's role reply is checked: anything else is no verdict (null)", (t) => {
  t.deepEqual(parseRoleReply({ ok: true, type: "role", role: "master", epoch: 4 }), { ok: true, type: "role", role: "master", epoch: 4 });
  for (const bad of [null, { ok: false, code: "BAD_REQUEST" }, { ok: true, type: "role", role: "king", epoch: 4 }, { ok: true, type: "role", role: "replica", epoch: -1 }, { ok: true, type: "role", role: "replica", epoch: 1.5 }, { ok: true, type: "campaigning" }]) {
    t.is(parseRoleReply(bad), null, JSON.stringify(bad));
  }
});

test("messages - parseWriteRequest takes a map { args, id: { client, seq } } (issue #11 item 3)", (t) => {
  const client = "A".repeat(64);
  const withId = parseWriteRequest(decode(encode({ args: ["INCR", "c"], id: { client, seq: Number.MAX_SAFE_INTEGER } })));
  t.deepEqual(withId.id, { client, seq: Number.MAX_SAFE_INTEGER });
  t.deepEqual(withId.args.map((a) => a.toString()), ["INCR", "c"]);
  t.true(withId.args.every((a) => Buffer.isBuffer(a)));
  t.deepEqual(parseWriteRequest(decode(encode({ args: ["DEL", "k"], id: { client: "a_b-9", seq: 1 } }))).id, { client: "a_b-9", seq: 1 });
  t.is(parseWriteRequest({ args: ["DEL", "k"] }).id, null);
  t.is(parseWriteRequest({ args: ["DEL", "k"], id: null }).id, null);
});

test("messages - parseWriteRequest refuses a bad write map or id with BAD_REQUEST", (t) => {
  const args = ["SET", "k", "v"];
  const cases: [string, unknown][] = [
    ["no args", { id: { client: "c", seq: 1 } }],
    ["args not an array", { args: "SET k v", id: { client: "c", seq: 1 } }],
    ["empty args", { args: [], id: { client: "c", seq: 1 } }],
    ["bad argument", { args: ["SET", "k", true], id: { client: "c", seq: 1 } }],
    ["unknown key", { args, id: { client: "c", seq: 1 }, deadline: 5 }],
    ["id not a map", { args, id: "c:1" }],
    ["id array", { args, id: ["c", 1] }],
    ["id unknown key", { args, id: { client: "c", seq: 1, epoch: 2 } }],
    ["client missing", { args, id: { seq: 1 } }],
    ["client empty", { args, id: { client: "", seq: 1 } }],
    ["client too long", { args, id: { client: "a".repeat(65), seq: 1 } }],
    ["client with a dot", { args, id: { client: "a.b", seq: 1 } }],
    ["client with a space", { args, id: { client: "a b", seq: 1 } }],
    ["client not ASCII", { args, id: { client: "é", seq: 1 } }],
    ["client bytes", { args, id: { client: Buffer.from("c"), seq: 1 } }],
    ["seq missing", { args, id: { client: "c" } }],
    ["seq zero", { args, id: { client: "c", seq: 0 } }],
    ["seq negative", { args, id: { client: "c", seq: -1 } }],
    ["seq fraction", { args, id: { client: "c", seq: 1.5 } }],
    ["seq unsafe", { args, id: { client: "c", seq: 2 ** 53 } }],
    ["seq string", { args, id: { client: "c", seq: "1" } }],
  ];
  for (const [name, v] of cases) badRequest(t, () => parseWriteRequest(decode(encode(v))), name);
});

test("config - block dedupe: bounds at least 1, and a kept reply fits in the window", (t) => {
  t.deepEqual(validateConfig({ ...defaults, dedupeWindowRecords: 0 }), ["dedupeWindowRecords and dedupeClientsMax must be at least 1"]);
  t.deepEqual(validateConfig({ ...defaults, dedupeClientsMax: 0 }), ["dedupeWindowRecords and dedupeClientsMax must be at least 1"]);
  t.deepEqual(validateConfig({ ...defaults, dedupeReplyBytesMax: 0 }), ["dedupeReplyBytesMax must be at least 1"]);
  t.deepEqual(validateConfig({ ...defaults, dedupeWindowBytesMax: defaults.dedupeReplyBytesMax }), [
    "dedupeWindowBytesMax must hold at least one write of the largest kept reply (dedupeReplyBytesMax)",
  ]);
  t.is(loadConfig({ QJM_DEDUPE_WINDOW_RECORDS: "5" }).dedupeWindowRecords, 5);
});

test("config - a list variable set to nothing is the empty list (QJM_DATA_NODES= selects the single-master layout)", (t) => {
  t.deepEqual(loadConfig({ QJM_DATA_NODES: "" }).dataNodes, []);
  t.deepEqual(loadConfig({}).dataNodes, defaults.dataNodes);
  t.deepEqual(loadConfig({ QJM_DATA_NODES: "a, b" }).dataNodes, ["a", "b"]);
  // With data nodes, the journal must keep what a new master's dedupe window is rebuilt from.
  t.throws(() => loadConfig({ QJM_PURGE_MARGIN_RECORDS: "10" }), { message: /dedupeWindowRecords must not exceed purgeMarginRecords/ });
  t.notThrows(() => loadConfig({ QJM_PURGE_MARGIN_RECORDS: "10", QJM_DATA_NODES: "" }));
});

test("config - QJM_NATS_URL takes a comma-separated list of servers, parsed in one place (issue #14)", (t) => {
  t.deepEqual(natsUrls("nats://a:4222, nats://b:4223 ,,nats://c:4224"), ["nats://a:4222", "nats://b:4223", "nats://c:4224"]);
  t.deepEqual(natsUrls(defaults.natsUrl), [defaults.natsUrl]);
  t.is(natsUrlPort("nats://127.0.0.1:4333"), 4333);
  t.is(natsUrlPort("10.0.0.1"), 4222);
  const c = loadConfig({ QJM_NATS_URL: "nats://a:4222,nats://b:4222", QJM_NATS_SERVERS: "3" });
  t.is(c.natsUrl, "nats://a:4222,nats://b:4222", "kept in its documented string form");
  t.is(c.natsServers, 3);
  t.throws(() => loadConfig({ QJM_NATS_URL: " , " }), { message: /natsUrl must name at least one server/ });
  t.throws(() => loadConfig({ QJM_NATS_SERVERS: "0" }), { message: /natsServers/ });
});

test("config - a local NATS cluster's client, route and monitoring ports may not overlap each other or Redis's", (t) => {
  t.deepEqual(validateConfig({ ...defaults, natsServers: 3 }), [], "4222-4224, routes 6222-6224: clear of Redis's 6390-6397");
  t.regex(validateConfig({ ...defaults, natsServers: 3, natsRoutePortBase: 4223 }).join(";"), /natsUrl's port and natsRoutePortBase/);
  t.regex(validateConfig({ ...defaults, natsServers: 3, natsMonitorPortBase: 6394 }).join(";"), /natsMonitorPortBase and dataRedisPortBase/);
  t.deepEqual(validateConfig({ ...defaults, natsUrl: "nats://10.0.0.9:6395" }), [], "one remote server: its port is not ours to check");
  t.regex(validateConfig({ ...defaults, batchResendMs: defaults.quorumTimeoutMs }).join(";"), /batchResendMs/);
});

test("local cluster - each actor is handed the server list starting at another server", (t) => {
  const urls = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"];
  t.deepEqual(rotatedUrls(urls, 0), urls);
  t.deepEqual(rotatedUrls(urls, 1), [urls[1], urls[2], urls[0]]);
  t.deepEqual(rotatedUrls(urls, 5), [urls[2], urls[0], urls[1]]);
  t.deepEqual(rotatedUrls(urls.slice(0, 1), 4), urls.slice(0, 1));
});

test("messages - a write's id may name the connection's write before it (after), below its own seq", (t) => {
  t.deepEqual(parseWriteRequest({ args: ["SET", "k", "v"], id: { client: "c1", seq: 5, after: 4 } }).id, { client: "c1", seq: 5, after: 4 });
  t.deepEqual(parseWriteRequest({ args: ["SET", "k", "v"], id: { client: "c1", seq: 5 } }).id, { client: "c1", seq: 5 });
  for (const after of [5, 6, 0, -1, 1.5, "4"]) {
    t.throws(() => parseWriteRequest({ args: ["SET", "k", "v"], id: { client: "c1", seq: 5, after } }), { instanceOf: QjmError }, `after ${String(after)}`);
  }
});

test("messages - parseCommitHint takes a hint through the codec and refuses a malformed one with BAD_REQUEST", (t) => {
  const hint = { epoch: 3, segmentTxid: 11, committedTxid: 40 };
  t.deepEqual(parseCommitHint(decode(encode(hint))), hint);
  for (const bad of [null, [], "x", { ...hint, epoch: 0 }, { ...hint, epoch: 2 ** 32 }, { ...hint, segmentTxid: 0 }, { ...hint, committedTxid: -1 }, { ...hint, committedTxid: 1.5 }, { ...hint, committedTxid: "40" }, { epoch: 3, segmentTxid: 11 }]) {
    const err = t.throws(() => parseCommitHint(bad), { instanceOf: QjmError }, JSON.stringify(bad));
    t.is(err?.code, "BAD_REQUEST");
  }
});

test("config - replicaBackstopPollMs may not be below replicaPollMs", (t) => {
  t.deepEqual(validateConfig({ ...defaults }), []);
  t.true(validateConfig({ ...defaults, replicaBackstopPollMs: 5 }).some((e) => e.includes("replicaBackstopPollMs")));
  t.true(validateConfig({ ...defaults, replicaPollMs: 0 }).some((e) => e.includes("replicaPollMs")));
});

test("config - dataNodeHeapMb: 0 gives node's own heap; a limit goes to every data node, never to a journal node (issue #13 P6)", (t) => {
  t.deepEqual(actorSpecs(defaults).flatMap((spec) => heapArgs(defaults, spec)), []);
  const limited = { ...defaults, dataNodeHeapMb: 96 };
  t.deepEqual(
    actorSpecs(limited).map((spec) => [spec.name, heapArgs(limited, spec)]),
    [["jn1", []], ["jn2", []], ["jn3", []], ["d1", ["--max-old-space-size=96"]], ["d2", ["--max-old-space-size=96"]], ["d3", ["--max-old-space-size=96"]]],
  );
  t.deepEqual(validateConfig(limited), []);
  t.regex(validateConfig({ ...defaults, dataNodeHeapMb: 32 }).join(";"), /dataNodeHeapMb/);
});
