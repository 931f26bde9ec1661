/**
 * Every address, limit, timeout and retry bound, with its default, in one place.
 * Each can be set in a JSON configuration file (QJM_CONFIG_FILE, or `--config FILE`: the same camelCase keys) and
 * overridden from the environment as QJM_<NAME> (camelCase → SCREAMING_SNAKE), e.g. batchBytesMax ←
 * QJM_BATCH_BYTES_MAX. Units are last in the name.
 */
import fs from "node:fs";
import { DEDUPE_ENTRY_OVERHEAD_BYTES } from "../dedupe/dedupe_window.js";
import { RECORD_BYTES_MAX } from "../segment/record.js";
import { assert } from "../util/assert.js";

export const defaults = {
  /**
   * A JSON file of configuration values, an object with the camelCase keys of this table (`redis-qjm run … --config
   * FILE` sets it); QJM_* variables override it. An unknown key or a value of the wrong type is refused. Empty: none.
   */
  configFile: "",
  /**
   * NATS server(s) every actor and client connects to: one URL, or several separated by commas (a NATS cluster: a
   * connection fails over to another when its server dies). Parsed in one place, natsUrls().
   */
  natsUrl: "nats://127.0.0.1:4222",
  /**
   * nats-servers `npm start` runs when none answers at the first URL: 1, or a local routed cluster of this many, on
   * client ports from that URL's port upward (4222, 4223, …); each actor is handed the list starting at another one.
   */
  natsServers: 1,
  /** First route (cluster) port of that local NATS cluster (one per server, upward); unused with one server. */
  natsRoutePortBase: 6222,
  /** First monitoring (HTTP) port of the nats-servers `npm start` runs, one per server upward; 0: no monitoring. */
  natsMonitorPortBase: 0,
  /**
   * How often every connection (actor, client, CLI) pings its nats-server; two pings unanswered and it fails over to
   * another server. A server cut off (its socket open and silent) is left after 2–3 of these.
   */
  natsPingIntervalMs: 2000,
  /**
   * One connection attempt to a nats-server gives up after this (nats.js's default, 20 s, kept clients on a cut-off
   * server for 36–42 s in the netns test: two missed pings, then a 20 s dial of the same server). Not much lower: 100
   * clients dialling at once on a loaded 2-core machine (nkey signatures) took more than 3 s.
   */
  natsConnectTimeoutMs: 10000,
  /** Wait between reconnect attempts (every connection reconnects for ever). */
  natsReconnectWaitMs: 250,
  /** Root of every actor's data (segments, Redis files, pid files). */
  dataDir: "./data",
  /** Cluster name: the second token of every subject. */
  cluster: "default",
  /** Journal node ids of this cluster; the quorum is a majority of these, never of the live ones. */
  journalNodes: ["jn1", "jn2", "jn3"],
  /** Replica ids of the single-master layout (used when `dataNodes` is empty). */
  replicas: ["r1", "r2"],
  // ---- failover (issue #11): master and replica are roles of one data-node actor ----
  /**
   * Data node ids started by `npm start`: each owns a persistent Redis, one is the master, the others replicas and hot
   * standbys. Empty: the single-master layout (the master `m1`, restarted in place, and the `replicas`).
   */
  dataNodes: ["d1", "d2", "d3"],
  /** First port of the data nodes' redis-servers (d1 = this, d2 = this + 1, …). */
  dataRedisPortBase: 6395,
  /**
   * V8's old-space limit of each data node in MiB (`--max-old-space-size`, given by `npm start` and the local cluster;
   * under systemd set it in NODE_OPTIONS). 0: node's own, which on a large host lets the master's heap grow to 150 MiB
   * and more before a full collection while under 64 MiB of it is live (bench/RESULTS.md, P6). A limit below what the
   * configured write bounds can hold at once (writesInflightBytesMax, dedupeWindowBytesMax…) risks an out-of-memory
   * exit under large writes: a failover.
   */
  dataNodeHeapMb: 0,
  /** The master publishes its heartbeat (epoch, committed txid) this often. */
  masterHeartbeatIntervalMs: 100,
  /** A data node that heard no master for this long starts an election (the most caught-up standby first). */
  masterTimeoutMs: 600,
  /**
   * A standby that has not heard the master for this long asks NATS whether the master's process still listens (its
   * control subject): "no responders" or "not master" ends the wait at once, so a killed master is replaced without
   * waiting out masterTimeoutMs. A frozen master, or one cut off without its socket closing, still holds its
   * subscription: the timeout covers those. 0: no probe.
   */
  masterProbeAfterMs: 200,
  /** Each rank further down the order (applied txid, priority, id) waits this much longer before it campaigns. */
  electionRankDelayMs: 150,
  /** After a lost or failed campaign, a data node waits a random time up to this before it may campaign again. */
  electionBackoffMsMax: 1000,
  /**
   * From a won election to serving writes at most this long (releasing the replica's Redis, applying the journal's
   * tail, promoting it): past it the node gives the role up, since its heartbeat as master holds every other node back.
   */
  takeoverTimeoutMs: 30_000,
  // ---- end failover ----
  /** Port of the master's own (ephemeral) redis-server. */
  masterRedisPort: 6390,
  /** First port of the replicas' redis-servers (r1 = this, r2 = this + 1, …). */
  replicaRedisPortBase: 6391,

  /** Capacity of each of the master's two batch buffers (group commit). */
  batchBytesMax: 512 * 1024,
  /** Records at most in one batch. */
  batchRecordsMax: 8192,
  /** Client writes admitted to Redis but not yet answered. Past this, writes wait in the admission queue. */
  writesInflightMax: 4096,
  /** Writes waiting for admission; past this, OVERLOADED. */
  writesQueuedMax: 8192,
  /** Batches sent to one journal node and not yet answered; past this the node is masked (drops out of the epoch's quorum). */
  journalBatchesInflightMax: 64,
  /** Bytes of batches sent to one journal node and not yet answered; past this the node is masked (HDFS: 10 MB). */
  journalInflightBytesMax: 16 * 1024 * 1024,
  /** A journal node whose heartbeats the master has not seen for this long is masked. */
  journalHeartbeatTimeoutMs: 3000,
  /** A batch that has no majority of acks after this fails with NO_QUORUM. */
  quorumTimeoutMs: 3000,
  /**
   * The batch in flight goes again, after this long, to each journal node that has not answered it: a request or reply
   * lost with a nats-server that died (or refused by the server a node failed over to) costs this, not quorumTimeoutMs.
   * A node that holds the batch acks it again without writing. 0: never.
   */
  batchResendMs: 500,
  /**
   * For batchResendMs after the master's own NATS link failed over, the batch in flight goes again this often: the
   * journal nodes are failing over too (kill -9 of the nats-server they all used), and a copy that finds one not back
   * yet would otherwise wait a whole batchResendMs. 0: batchResendMs throughout.
   */
  batchResendAfterReconnectMs: 100,
  /**
   * A journal node that has left a batch fan-out (`qjm.<cluster>.batch`) unanswered this long gets the next batches as
   * requests of its own until it answers: a request to a node that died ends at once with NATS's "no responders", which
   * masks it, where a fan-out's answer would be waited for until the batch's timeout. A slow node only costs messages.
   */
  fanoutLateMs: 100,
  /** Effects seen on the replication stream with no client marker are journaled on their own after this idle time. */
  orphanEffectsFlushMs: 20,
  /**
   * A commit that no batch fan-out carried waits this long for one before the master publishes its commit index on its
   * own (a CommitHint to the journal nodes and replicas; src/master/commit_hints.ts). Under load the next batch leaves
   * in the step of the commit and carries it; with one client the next write's batch follows within a round trip. It
   * bounds what a lone write adds to the replica lag; 0: a hint at the end of the commit's own step.
   */
  commitHintDelayMs: 2,
  /**
   * Per-hop timestamps of 1 write in this many (the master, journal nodes and replicas stamp it; the write reply
   * carries them; bench/trace.ts reads them); 0: off, the write path then pays one integer check per hop.
   */
  traceSample: 0,
  /** How long the master waits for a majority to promise a new epoch before it tries again. */
  epochRequestTimeoutMs: 2000,
  /** Pause between attempts to become the writer. */
  writerRetryMs: 500,
  /** Attempts to become the writer before the master exits (a supervisor restarts it). */
  writerAttemptsMax: 1000,

  /** How often the master tries to catch up a journal node that dropped out of the current segment. */
  catchUpIntervalMs: 1000,
  /** Read-and-append rounds one catch-up may take before it gives up until the next interval. */
  catchUpRoundsMax: 1000,
  /**
   * A segment roll that comes due while a journal node is caught up waits for that catch-up at most this long: a roll
   * discards a catch-up of the segment before it, and with segments rolling faster than a catch-up takes (small
   * segments, heavy writes, a loaded machine) a restarted node was never restored. Writes go on meanwhile; the
   * segment grows past its bounds by what they add, at most to twice them (ROLL_HOLD_GROWTH_MAX). 0: rolls never wait.
   */
  rollHoldForCatchUpMs: 5000,
  /**
   * Requests a writer's recovery may spend catching up journal nodes left behind (each a read of at most readBytesMax
   * from a peer, or its copy onto the node), before it gives up the attempt: a node far behind is copied by the
   * serving writer instead, and an election never waits on a long copy (512 requests ≈ 128 MiB at 512 KiB reads).
   */
  recoveryCatchUpRequestsMax: 512,
  /** Every actor publishes a heartbeat this often. */
  heartbeatIntervalMs: 500,
  /** Requests a journal node holds waiting for its disk; past this it answers OVERLOADED at once. */
  journalQueueMax: 1024,
  /** Timeout of one request to a journal node (reads, state, recovery). */
  journalRequestTimeoutMs: 5000,
  /** Bytes at most in one read reply from a journal node. */
  readBytesMax: 512 * 1024,
  /** Records at most in one read reply. */
  readRecordsMax: 8192,
  /** A journal node a replica found serving bad records is reported, and kept masked, this long. */
  replicaReportTtlMs: 10000,
  /**
   * A replica that read a round of journal nodes without finding a commit it was told of (the master's commit index, in
   * a batch fan-out or a hint on `qjm.<cluster>.committed`, came before a node learnt it) asks them again after this,
   * once; also the unit of its pauses after an error (× 10).
   */
  replicaPollMs: 20,
  /**
   * A replica that applied everything it heard of waits this long before it asks a journal node again, unless the
   * master's commit hint wakes it first: a backstop for a lost hint, not the path of a commit (issue #13 P4).
   */
  replicaBackstopPollMs: 500,
  /**
   * Bytes of the master's batch fan-out (`qjm.<cluster>.batch`) a replica keeps, each record counted with 192 bytes of
   * bookkeeping besides its own (fanout_buffer.ts) (issue #13 P4): it applies records from there once a commit index of
   * their own epoch covers them, checked as records read from a journal node are, instead of reading them from a journal
   * node after each commit; what it missed (a gap, an older record) it reads. 0: off.
   */
  replicaFanoutBytesMax: 8 * 1024 * 1024,
  // ---- replay (issue #10 classes 2 and 7): the feeder whose replica each replaying Redis is ----
  /** The feeder pings its Redis after this long without traffic (Redis drops a master silent for repl-timeout, 60 s). */
  feederKeepaliveMs: 10000,
  /** Longest wait for a Redis to (re)connect to its feeder, and for its ACK after a run of records. */
  feederSyncTimeoutMs: 15000,
  // ---- end replay ----
  /** Replication link: interval of REPLCONF ACK to the master's Redis. */
  replAckIntervalMs: 1000,
  /** How long to wait for a redis-server to answer PING after start. */
  redisStartTimeoutMs: 15000,
  /** `npm start` restarts an actor that died after this, doubling while it keeps dying. */
  restartBackoffMinMs: 250,
  /** The longest pause before `npm start` restarts an actor that keeps dying. */
  restartBackoffMaxMs: 10000,
  /** An actor that ran this long before it died is restarted after restartBackoffMinMs again. */
  restartStableMs: 30000,
  /** How long `redis-qjm status` collects replies. */
  statusTimeoutMs: 700,
  // ---- stream part (issue #10 class 4): scripts are checked by their keyspace events (src/master/script_watch.ts) ----
  /** Keys one script may touch: past it the script cannot be verified, is refused and undone (writer rebuild). */
  scriptTouchedKeysMax: 100_000,
  /** Bytes of the keys one script touched (names, and values by MEMORY USAGE), journaled again as DUMPs; past it, as above. */
  scriptRepairBytesMax: 64 * 1024 * 1024,
  /** A script running longer is killed, or its Redis ended and rebuilt; above Redis's busy-reply-threshold (5 s). */
  scriptRunMaxMs: 10_000,
  /**
   * A master whose Redis has answered nothing this long while a command waits (frozen: SIGSTOP, a hung disk, swap; an
   * idle one is sent a PING every quarter of this) takes it for lost, as if it had died: it discards it and steps down (a data node) or rebuilds it from the journal.
   * Longer than scriptRunMaxMs, whose watch ends a runaway script first; a single command that needs longer (or the
   * commands of one of Redis's 16 KiB reads together: it answers them at once) can never be served.
   */
  redisStallMaxMs: 20_000,
  // ---- end of stream part ----
  /** Bytes at most buffered from the replication stream before it is parsed into records. */
  replStreamBytesMax: 96 * 1024 * 1024,
  /**
   * The master's write path's share of one event-loop turn per stage, in ms (src/util/turn_budget.ts): decoding
   * client writes off the bus, parsing the replication stream and encoding records each stop for the turn once their
   * share is spent, and go on in a later one. Heartbeats are timers on the same loop: 60 pipelined 10k-member RPUSHes
   * on a host short of cores held it 703 ms, past masterTimeoutMs (s24).
   */
  masterTurnBudgetMs: 5,
  /** 1: journal nodes answer qjm.<cluster>.jn.<id>.fault (disk fault injection, for tests). Never in production. */
  faultInjection: 0,
  /** With faultInjection: a pause between the steps of a merge or purge, so a test's kill -9 lands between them. */
  compactionStepPauseMs: 0,
  /**
   * max_payload of the nats-server `npm start` runs (nats-server's default: 1 MiB). Actors read the real value from
   * the server they connect to; the bus splits larger bodies into fragments.
   */
  natsPayloadBytesMax: 1024 * 1024,

  /** The master finalizes the in-progress segment and starts the next once it holds this many bytes… */
  segmentMaxBytes: 64 * 1024 * 1024,
  /** …or this many records… */
  segmentMaxRecords: 1_000_000,
  /** …or once it has been open this long (with at least one record). */
  segmentMaxAgeMs: 10 * 60 * 1000,
  /** A journal node compacts (purges below the snapshot, merges small segments) once it holds more segment files than this… */
  maxSegments: 16,
  /** …or once its segment files hold more bytes than this. */
  editlogMaxBytes: 1024 * 1024 * 1024,
  /** Segments merged into one are at most this large together (and at most a quarter of editlogMaxBytes). */
  mergedSegmentMaxBytes: 256 * 1024 * 1024,
  /** Records kept below the newest majority-held snapshot when purging, for replicas that lag a little. */
  purgeMarginRecords: 100_000,
  /** How often a journal node checks whether to compact. */
  compactionCheckMs: 1000,
  /**
   * A replica snapshots its Redis once it applied this many records past the newest snapshot (0: never), or sooner
   * once purgeMarginRecords plus the records past it come to half of editlogMaxBytes (by their mean size).
   */
  snapshotEveryRecords: 100_000,
  /**
   * A replica whose snapshot came due waits its rank (its place in dataNodes, or in replicas) times this — or times its own last
   * snapshot's duration, if longer — before it starts one, and as much after its pause following a failed try
   * (journalRequestTimeoutMs): replicas fed the same batches reach their thresholds together, and two uploads at once
   * refuse each other on the journal nodes. The later one then finds the first's snapshot durable and needs none.
   * 0: only the last snapshot's duration.
   */
  snapshotRankDelayMs: 1000,
  /** Snapshots each journal node keeps (the newest ones). */
  snapshotsRetained: 2,
  /** Bytes of one snapshot chunk on the bus. */
  snapshotChunkBytes: 256 * 1024,
  /** Snapshot chunks sent to one journal node and not yet answered (flow control). */
  snapshotChunksInflightMax: 4,
  /** Snapshot uploads a journal node accepts at once; more are refused (BUSY) and retried later. */
  snapshotUploadsMax: 1,
  /** An upload that sends no chunk for this long is abandoned (its temporary file deleted). */
  snapshotUploadIdleMs: 30000,
  // ---- journal-node safety (issue #10, part jn) ----
  /** Largest snapshot a journal node accepts (the size an upload announces). */
  snapshotBytesMax: 64 * 1024 * 1024 * 1024,
  // ---- end journal-node safety ----
  /** The longest a snapshot (BGSAVE) or a snapshot load may take. */
  snapshotTimeoutMs: 10 * 60 * 1000,

  // --- auth (issue #10 class 3: NATS users and permissions, Redis passwords) ---
  /**
   * The NATS credentials file this actor or client connects with. Empty: `<dataDir>/credentials/<id>.creds` (the CLI:
   * `client.creds`) when it exists, else none (a nats-server without users). `npm start` writes them when it starts nats-server.
   */
  natsCredsFile: "",
  // --- end auth ---

  // ---- tls (issue #14 item 3): the bus over TLS, every connection presenting a certificate of the cluster's CA ----
  /**
   * 1: every connection to NATS is TLS with a client certificate (src/nats/tls.ts). The nats-servers `npm start`
   * runs then require it (`verify: true`), with certificates infra/tls/make-certs.sh makes under `<dataDir>/tls`;
   * `npm start --tls` sets it. A `tls://` server in natsUrl means the same. The per-role NATS users and permissions
   * apply as without TLS.
   */
  tls: 0,
  /** The CA certificate a connection trusts nats-server's certificate by. Empty: `<dataDir>/tls/ca.pem`. */
  tlsCa: "",
  /** The client certificate a connection presents. Empty: `<dataDir>/tls/client.pem`. */
  tlsCert: "",
  /** That certificate's private key. Empty: `<dataDir>/tls/client-key.pem`. */
  tlsKey: "",
  // ---- end tls ----

  // ---- sizes (issue #10 class 5): every queue and buffer bounded in bytes; large bodies in fragments ----
  /** Largest client write (the msgpack body of one request); 0: whatever nats-server accepts (its max_payload). */
  writeBytesMax: 0,
  /** Bytes of the effects one write may produce (a script's); past it the write is refused, its effects not journaled. */
  writeEffectsBytesMax: 80 * 1024 * 1024,
  /** Commands one transaction (MULTI/EXEC, a `{ tx }` write) may hold; its bytes are bounded as one write's. */
  txCommandsMax: 10_000,
  /** Keys one transaction may WATCH. */
  txWatchKeysMax: 10_000,
  /**
   * Bytes of the master's map of the txid that last modified each key (WATCH's check, src/master/watch_core.ts), kept
   * in two generations of half of it each: when the newer is full the older leaves, and a transaction that watched
   * before the last txid it knew is aborted (nil), as a conflict.
   */
  watchKeysBytesMax: 16 * 1024 * 1024,
  /** A batch waits quorumTimeoutMs for its majority, plus this per MiB it holds (sending and fsyncing a large record takes time). */
  quorumTimeoutMsPerMib: 250,
  /** Bytes of client writes waiting for admission; past this, OVERLOADED (one write is always let in). */
  writesQueuedBytesMax: 64 * 1024 * 1024,
  /** Bytes of client writes admitted to Redis but not yet answered; past this, writes wait in the admission queue. */
  writesInflightBytesMax: 64 * 1024 * 1024,
  /** Largest body the bus puts back together from fragments (a batch holding the largest record, a read reply). */
  busMessageBytesMax: 100 * 1024 * 1024,
  /** Bytes of fragmented messages one subscription receives at once (and of large replies it keeps for pulls). */
  busReassemblyBytesMax: 256 * 1024 * 1024,
  /** Fragmented messages one subscription receives at once (and large replies it keeps for pulls). */
  busReassemblyStreamsMax: 64,
  /** A fragmented message (or a large reply) with no fragment sent or pulled for this long is dropped. */
  busFragmentIdleMs: 10000,

  // ---- dedupe (issue #11 item 3): write ids, replies kept in records, the dedupe window (src/dedupe/) ----
  /** A write's reply is kept in its record (to answer a retry) unless its msgpack encoding is larger than this. */
  dedupeReplyBytesMax: 64 * 1024,
  /** The dedupe window remembers the writes of the last this many txids; a retry of an older one is RETRY_EXPIRED. */
  dedupeWindowRecords: 100_000,
  /** Bytes of kept replies (plus a fixed overhead per write) the window holds; past it the oldest writes leave it. */
  dedupeWindowBytesMax: 64 * 1024 * 1024,
  /** Clients the window tracks (the most recently committing); a client dropped past this is forgotten altogether. */
  dedupeClientsMax: 100_000,
  /**
   * Writes the master remembers it answered with a retryable failure, so that a later write of the same connection
   * does not run before the earlier one's resend (src/master/write_order.ts); the oldest are forgotten first. As many
   * writes answered otherwise are remembered apart: a write naming one this master never saw waits for it.
   */
  writeOrderRefusalsMax: 65_536,
  /** How long such a refusal is remembered: the connection resends at once, or within its retry pauses. */
  writeOrderRefusalMs: 60_000,
  /** The client library (src/client/) retries a write with the same id for this long (no responders, timeouts, NO_QUORUM…). */
  clientRetryForMs: 30_000,
  /** First pause between a write's attempts; it doubles per attempt up to clientRetryBackoffMaxMs, with jitter. */
  clientRetryBackoffMinMs: 25,
  /** Longest pause between a write's attempts. */
  clientRetryBackoffMaxMs: 1000,
  // ---- end dedupe ----

  // ---- RESP front door (issue #12): every data node speaks Redis's protocol (src/frontdoor/) ----
  /** The first data node's RESP port (d1 = this, d2 = this + 1, …, as dataRedisPortBase); 0: no front door. */
  respPort: 6479,
  /** The address the front doors listen on. */
  respHost: "127.0.0.1",
  /** The front doors' password (AUTH, HELLO … AUTH; user `default`); empty: none, every connection may send commands. */
  respPassword: "",
  /** Connections one front door holds; one more is answered `-ERR max number of clients reached` and closed. */
  respConnectionsMax: 10_000,
  /** Requests of one connection in flight (pipelined); past it the door stops reading that connection's socket. */
  respPipelineMax: 256,
  /** Largest request (and bulk string) a front door takes; 0: the write bound (writeBytesMax, else nats-server's max_payload). */
  respRequestBytesMax: 0,
  /** Connections per protocol (2 and 3) a front door shares for reads on its node's Redis. */
  respUpstreamConnections: 2,
  /**
   * Reply bytes one connection may have waiting (answered, not yet taken by the client): past it the connection is
   * closed, as Redis's client-output-buffer-limit does (a client that never reads cannot grow the node's memory).
   */
  respOutputBytesMax: 64 * 1024 * 1024,
  /**
   * Past this many reply bytes waiting (and expected of its requests under way, estimated from its recent replies:
   * src/frontdoor/reply_budget.ts), the door takes no new request from that connection until they drain. A client that
   * reads is never closed for its replies' size: respOutputBytesMax is then a backstop only.
   */
  respOutputBytesPause: 1024 * 1024,
  /**
   * The front door's share of one event-loop turn, in ms (src/util/turn_budget.ts): taking pipelined requests and
   * delivering pub/sub messages stop for the turn once it is spent, and go on in the next. The door shares the data
   * node's loop with its heartbeats and the master's journal batches: a loop held past masterTimeoutMs deposes it.
   */
  respTurnBudgetMs: 5,
  /**
   * Requests in flight over all of one front door's connections (each connection at most respPipelineMax): past it
   * the door takes no new request until one is answered, the connection that waited longest first. It bounds the
   * writes one door puts on the master at once, and the bursts of their answers on the door's node.
   */
  respInflightMax: 2048,
  /**
   * Bytes the requests in flight over one front door may hold: their arguments and 128 bytes each for the objects
   * around them (a 1 MiB request of 174,000 empty arguments holds 18 MiB until answered; 2048 such in flight, 36 GB).
   * Past it the door takes no new request until one is answered (one is always taken when none is in flight).
   */
  respInflightBytesMax: 256 * 1024 * 1024,
  /**
   * How late the data node's event loop may run (a 50 ms timer's lateness) before its front door halves the requests it
   * lets in flight (respInflightMax is then the ceiling it climbs back to): on a host whose cores are shared, the
   * master's own write path for what its door let in held the loop past masterTimeoutMs and deposed it.
   */
  respLoopDelayTargetMs: 50,
  /**
   * Bytes of pub/sub messages (channel and message) a front door holds waiting to be delivered (matching thousands of
   * patterns takes many turns): past it a message from another node is dropped for this door's subscribers (logged,
   * counted in INFO qjm's dropped), and a PUBLISH on it is refused OVERLOADED, until the backlog drains.
   */
  respPubsubBacklogBytesMax: 64 * 1024 * 1024,
  /**
   * Request bytes all of a door's connections may hold buffered (requests not yet complete): past it the connection
   * holding the most is closed (a crowd of clients each sending part of a large request cannot exhaust the node).
   */
  respBufferedBytesMax: 256 * 1024 * 1024,
  /**
   * A connection's read consistency until it sends QJM.CONSISTENCY: `session` (read-your-writes and monotonic reads on
   * the connection, on any node), `linearizable` (a read index from the master, confirmed by a majority of journal
   * nodes), or `eventual` (the node's Redis as it is). No level shows a write that is not committed (docs/resp.md).
   */
  respConsistency: "session",
  /**
   * How long a read may wait for what its consistency needs (this node to apply the session's txid or the read index,
   * the master's read index, the master's uncommitted writes of the keys read to commit); past it the read is answered
   * `-TRYAGAIN qjm …` and no value is given.
   */
  respReadTimeoutMs: 5000,
  /** The largest timeout QJM.WAIT takes (a larger one is refused); its timeout 0 waits this long. */
  respWaitMaxMs: 60_000,
  /** Read-index requests the master holds for its next confirmation round; more are refused OVERLOADED. */
  readIndexQueuedMax: 10_000,
  /**
   * Subscriptions (channels, patterns and shard channels together) one front-door connection may hold; a SUBSCRIBE
   * past it is refused whole (`-ERR`), its other subscriptions stay.
   */
  respPubsubSubscriptionsMax: 10_000,
  /**
   * Subscriptions all of one front door's connections may hold together (each takes memory: its name, its place in
   * the door's index); a SUBSCRIBE past it is refused whole. 10,000 connections at respPubsubSubscriptionsMax would
   * otherwise be 100 million.
   */
  respPubsubSubscriptionsTotalMax: 1_000_000,
  /**
   * Bytes of the channel, pattern and shard channel names one front-door connection holds subscribed (a name counts
   * once per subscription); a SUBSCRIBE past it is refused whole. The count bound alone let a connection hold
   * respPubsubSubscriptionsMax names as long as a request may be. 1 MiB: 10,000 names of 100 bytes, far more than
   * channel names take in practice.
   */
  respPubsubNameBytesMax: 1024 * 1024,
  /**
   * Bytes of the names all of one front door's connections hold subscribed; a SUBSCRIBE past it is refused whole.
   * 64 MiB: respPubsubSubscriptionsTotalMax names of 64 bytes. The heap holds a name about three times (its bytes, the
   * connection's key, the index's key), so at most about 200 MiB, as respBufferedBytesMax allows for requests.
   */
  respPubsubNameBytesTotalMax: 64 * 1024 * 1024,
  /**
   * A subscribed connection's reply bytes waiting (messages it has not read) past which it is closed at once: Redis's
   * `client-output-buffer-limit pubsub` hard limit (32 MiB there too). Logged, and counted in INFO qjm.
   */
  respPubsubOutputBytesMax: 32 * 1024 * 1024,
  /** …and its soft limit: closed once its waiting bytes stayed above this for respPubsubOutputSoftMs (Redis: 8 MiB, 60 s). */
  respPubsubOutputBytesSoft: 8 * 1024 * 1024,
  /** How long a subscribed connection may stay above respPubsubOutputBytesSoft before it is closed. */
  respPubsubOutputSoftMs: 60_000,
  // ---- end RESP front door ----

  // ---- metrics and discovery (issue #14 item 4): Prometheus on every actor, a NATS micro-service per actor ----
  /**
   * The metrics port (GET /metrics, Prometheus text) of the actor started with it; 0: no metrics endpoint. `npm start`
   * gives the first actor this port and each next one the next (jn1, jn2, jn3, then d1, d2, d3 — or m1, r1, r2 in the
   * single-master layout, as the actors are listed); an actor run on its own (`--metrics-port`) or on its own host uses it.
   */
  metricsPort: 9470,
  /** The address the metrics endpoints listen on (0.0.0.0: every interface, for a Prometheus on another host). */
  metricsHost: "127.0.0.1",
  // ---- end metrics ----
};

export type Config = typeof defaults;

/** A front-door connection's read consistency (QJM.CONSISTENCY, respConsistency). */
export const CONSISTENCY_LEVELS = ["eventual", "session", "linearizable"] as const;
export type ConsistencyLevel = (typeof CONSISTENCY_LEVELS)[number];

export function envName(key: string): string {
  return "QJM_" + key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A configuration that cannot be used: a bad file, variable or value. The CLI prints its one line and exits 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Defaults overlaid with the configuration file (QJM_CONFIG_FILE in `env`, or `overrides.configFile`), then QJM_*
 * variables from `env`, then `overrides`. Throws a ConfigError naming the file, variable or key at fault.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const file = overrides.configFile ?? env[envName("configFile")] ?? "";
  const config: Record<string, unknown> = { ...defaults, ...(file === "" ? {} : readConfigFile(file)), configFile: file };
  for (const [key, value] of Object.entries(defaults)) {
    const raw = env[envName(key)];
    // A list set to nothing is the empty list (QJM_DATA_NODES= : the single-master layout); any other empty value is unset.
    if (raw === "" && Array.isArray(value)) config[key] = [];
    if (raw === undefined || raw === "" || key === "configFile") continue;
    if (typeof value === "number") {
      if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${envName(key)}=${raw}: not a non-negative whole number`);
      const n = Number(raw.trim());
      config[key] = n;
    } else if (Array.isArray(value)) {
      config[key] = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    } else {
      config[key] = raw;
    }
  }
  const merged = { ...(config as Config), ...overrides };
  const errors = validateConfig(merged);
  if (errors.length > 0) throw new ConfigError(`invalid configuration: ${errors.join("; ")}`);
  return merged;
}

/**
 * The values of a configuration file: a JSON object whose keys are those of `defaults` (but configFile), each of its
 * default's type — a whole number ≥ 0, a string, or a list of strings.
 */
export function readConfigFile(file: string): Partial<Config> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`configuration file ${file}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ConfigError(`configuration file ${file}: not a JSON object`);
  const known = defaults as Record<string, unknown>;
  for (const [key, value] of Object.entries(parsed)) {
    if (!(key in known) || key === "configFile") throw new ConfigError(`configuration file ${file}: unknown key "${key}" (keys are the camelCase names of docs/configuration.md)`);
    const problem = typeProblem(known[key], value);
    if (problem !== null) throw new ConfigError(`configuration file ${file}: "${key}" must be ${problem}, not ${JSON.stringify(value)}`);
  }
  return parsed as Partial<Config>;
}

/** Null when `value` has the type of `like` (a default); else what it must be. */
function typeProblem(like: unknown, value: unknown): string | null {
  if (typeof like === "number") return Number.isSafeInteger(value) && (value as number) >= 0 ? null : "a whole number ≥ 0";
  if (Array.isArray(like)) return Array.isArray(value) && value.every((v) => typeof v === "string") ? null : "a list of strings";
  return typeof value === "string" ? null : "a string";
}

/**
 * The servers of a QJM_NATS_URL value: comma-separated, blanks dropped. The one place the list is parsed (connectBus,
 * the local cluster, validation).
 */
export function natsUrls(natsUrl: string): string[] {
  return natsUrl.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

/** The port of one NATS URL (nats://host:port, or host:port); 4222 when it names none. */
export function natsUrlPort(url: string): number {
  const withScheme = /^[a-z]+:\/\//i.test(url) ? url : `nats://${url}`;
  return Number(new URL(withScheme.replace(/^[a-z]+:/i, "http:")).port || 4222);
}

export function validateConfig(c: Config): string[] {
  const errors: string[] = [];
  errors.push(...validateNats(c));
  if (c.journalNodes.length < 1) errors.push("journalNodes must name at least one journal node");
  if (new Set(c.journalNodes).size !== c.journalNodes.length) errors.push("journalNodes has duplicates");
  if (!/^[A-Za-z0-9_-]+$/.test(c.cluster)) errors.push("cluster must be a single subject token");
  // auth: actor ids name subjects, NATS users and credentials files; `client` and `faults` are users of their own.
  const ids = [...c.journalNodes, ...c.replicas, ...c.dataNodes];
  if (!ids.every((id) => /^[A-Za-z0-9_-]+$/.test(id))) errors.push("journal node and replica ids must be single subject tokens");
  if (new Set(ids).size !== ids.length || ids.some((id) => id === "client" || id === "admin" || id === "faults")) errors.push("journal node, replica and data node ids must be distinct, and none of client, admin, faults");
  if (c.natsPayloadBytesMax < 64 * 1024) errors.push("natsPayloadBytesMax must be at least 64 KiB");
  if (c.replicaPollMs < 1 || c.replicaBackstopPollMs < c.replicaPollMs) errors.push("replicaPollMs must be at least 1, and replicaBackstopPollMs at least replicaPollMs");
  if (c.masterHeartbeatIntervalMs * 3 > c.masterTimeoutMs) errors.push("masterTimeoutMs must be at least three master heartbeats");
  if (c.masterProbeAfterMs !== 0 && (c.masterProbeAfterMs < c.masterHeartbeatIntervalMs || c.masterProbeAfterMs >= c.masterTimeoutMs)) {
    errors.push("masterProbeAfterMs must be 0 (no probe), or at least one master heartbeat and below masterTimeoutMs");
  }
  if (c.redisStallMaxMs <= c.scriptRunMaxMs) errors.push("redisStallMaxMs must exceed scriptRunMaxMs");
  if (c.takeoverTimeoutMs <= c.masterTimeoutMs) errors.push("takeoverTimeoutMs must exceed masterTimeoutMs");
  if (c.heartbeatIntervalMs * 2 > c.quorumTimeoutMs) errors.push("quorumTimeoutMs must be at least two heartbeats");
  if (c.batchResendMs >= c.quorumTimeoutMs) errors.push("batchResendMs must be below quorumTimeoutMs (0: no resends)");
  if (c.batchResendAfterReconnectMs > 0 && (c.batchResendAfterReconnectMs < 10 || c.batchResendAfterReconnectMs > c.batchResendMs)) errors.push("batchResendAfterReconnectMs must be 0, or between 10 and batchResendMs");
  if (c.heartbeatIntervalMs * 3 > c.journalHeartbeatTimeoutMs) errors.push("journalHeartbeatTimeoutMs must be at least three heartbeats");
  if (c.journalInflightBytesMax < c.batchBytesMax) errors.push("journalInflightBytesMax must hold at least one batch");
  if (c.maxSegments < 2) errors.push("maxSegments must be at least 2");
  if (c.dataNodeHeapMb !== 0 && c.dataNodeHeapMb < 64) errors.push("dataNodeHeapMb must be 0 (node's own) or at least 64");
  if (c.snapshotsRetained < 1) errors.push("snapshotsRetained must be at least 1");
  if (c.segmentMaxBytes < c.batchBytesMax) errors.push("segmentMaxBytes must hold at least one batch");
  // replay: a Redis drops a master silent for repl-timeout (60 s by default).
  if (c.feederKeepaliveMs < 1 || c.feederKeepaliveMs > 30000) errors.push("feederKeepaliveMs must be between 1 and 30000");
  if (c.respBufferedBytesMax < 1) errors.push("respBufferedBytesMax must be at least 1");
  if (c.respOutputBytesPause < 1 || c.respOutputBytesMax < c.respOutputBytesPause) errors.push("respOutputBytesPause must be at least 1 and at most respOutputBytesMax");
  if (!(c.respTurnBudgetMs > 0) || c.respTurnBudgetMs * 10 > c.masterTimeoutMs) errors.push("respTurnBudgetMs must be above 0 and at most a tenth of masterTimeoutMs");
  if (!(c.masterTurnBudgetMs > 0) || c.masterTurnBudgetMs * 10 > c.masterTimeoutMs) errors.push("masterTurnBudgetMs must be above 0 and at most a tenth of masterTimeoutMs");
  if (c.respInflightMax < 1) errors.push("respInflightMax must be at least 1");
  if (c.respInflightBytesMax < 1) errors.push("respInflightBytesMax must be at least 1");
  if (!(c.respLoopDelayTargetMs > 0) || c.respLoopDelayTargetMs * 4 > c.masterTimeoutMs) errors.push("respLoopDelayTargetMs must be above 0 and at most a quarter of masterTimeoutMs");
  if (c.respPubsubBacklogBytesMax < 1) errors.push("respPubsubBacklogBytesMax must be at least 1");
  if (c.respConnectionsMax < 1 || c.respPipelineMax < 1 || c.respUpstreamConnections < 1) errors.push("respConnectionsMax, respPipelineMax and respUpstreamConnections must be at least 1");
  if (c.respPort > 65535) errors.push("respPort must be a TCP port (0: no front door)");
  if (c.metricsPort + localActorCount(c) - 1 > 65535) errors.push("metricsPort must leave a TCP port for every actor (0: no metrics)");
  if (!(CONSISTENCY_LEVELS as readonly string[]).includes(c.respConsistency)) errors.push(`respConsistency must be one of ${CONSISTENCY_LEVELS.join(", ")}`);
  if (c.respReadTimeoutMs < 1 || c.respWaitMaxMs < 1 || c.readIndexQueuedMax < 1) errors.push("respReadTimeoutMs, respWaitMaxMs and readIndexQueuedMax must be at least 1");
  if (c.respPubsubSubscriptionsMax < 1 || c.respPubsubSubscriptionsTotalMax < c.respPubsubSubscriptionsMax) errors.push("respPubsubSubscriptionsMax must be at least 1, and respPubsubSubscriptionsTotalMax at least it");
  if (c.respPubsubNameBytesMax < 1 || c.respPubsubNameBytesTotalMax < c.respPubsubNameBytesMax) errors.push("respPubsubNameBytesMax must be at least 1, and respPubsubNameBytesTotalMax at least it");
  if (c.respPubsubOutputBytesSoft < 1 || c.respPubsubOutputBytesMax < c.respPubsubOutputBytesSoft) errors.push("respPubsubOutputBytesSoft must be at least 1 and at most respPubsubOutputBytesMax");
  errors.push(...validateSizes(c));
  errors.push(...validateDedupe(c));
  return errors;
}

/** The NATS server list parses, and a local cluster's client, route and monitoring ports do not overlap each other or Redis's. */
function validateNats(c: Config): string[] {
  const urls = natsUrls(c.natsUrl);
  if (urls.length === 0) return ["natsUrl must name at least one server"];
  for (const url of urls) {
    try {
      natsUrlPort(url);
    } catch {
      return [`natsUrl: ${url} is not a URL`];
    }
  }
  if (c.natsServers < 1 || c.natsServers > 9) return ["natsServers must be between 1 and 9"];
  if (c.tls !== 0 && c.tls !== 1) return ["tls must be 0 (plain) or 1 (TLS with client certificates)"];
  const n = c.natsServers;
  // A single URL may name any host (a remote nats-server): only the ports a local cluster would take are checked.
  const ranges: [string, number, number][] = [];
  if (n > 1) ranges.push(["natsUrl's port", natsUrlPort(urls[0]), n], ["natsRoutePortBase", c.natsRoutePortBase, n]);
  if (c.natsMonitorPortBase > 0) ranges.push(["natsMonitorPortBase", c.natsMonitorPortBase, n]);
  ranges.push(["dataRedisPortBase", c.dataRedisPortBase, c.dataNodes.length], ["masterRedisPort", c.masterRedisPort, 1], ["replicaRedisPortBase", c.replicaRedisPortBase, c.replicas.length]);
  if (c.metricsPort > 0) ranges.push(["metricsPort", c.metricsPort, localActorCount(c)]);
  const errors: string[] = [];
  ranges.forEach(([a, from, count], i) => {
    for (const [b, from2, count2] of ranges.slice(i + 1)) {
      if (count > 0 && count2 > 0 && from < from2 + count2 && from2 < from + count) errors.push(`${a} and ${b} ports overlap (NATS: ${n} server(s) upward)`);
    }
  });
  return errors;
}

/** Block "sizes" (issue #10 class 5): the byte bounds must admit the largest write's record everywhere it travels. */
function validateSizes(c: Config): string[] {
  const errors: string[] = [];
  const headroom = 64 * 1024;
  if (c.writeEffectsBytesMax < 1024 * 1024) errors.push("writeEffectsBytesMax must be at least 1 MiB");
  if (c.writeEffectsBytesMax + headroom > RECORD_BYTES_MAX) errors.push(`writeEffectsBytesMax must leave 64 KiB of headroom under RECORD_BYTES_MAX (${RECORD_BYTES_MAX})`);
  if (c.busMessageBytesMax < RECORD_BYTES_MAX + headroom) errors.push("busMessageBytesMax must hold a batch of the largest record (RECORD_BYTES_MAX plus 64 KiB)");
  if (c.busReassemblyBytesMax < c.busMessageBytesMax) errors.push("busReassemblyBytesMax must hold at least one message of busMessageBytesMax");
  if (c.busReassemblyStreamsMax < 1) errors.push("busReassemblyStreamsMax must be at least 1");
  if (c.busFragmentIdleMs < 100) errors.push("busFragmentIdleMs must be at least 100");
  if (c.natsPingIntervalMs < 100 || c.natsConnectTimeoutMs < 100 || c.natsReconnectWaitMs < 10) errors.push("natsPingIntervalMs and natsConnectTimeoutMs must be at least 100, natsReconnectWaitMs at least 10");
  if (c.writesQueuedBytesMax < 1 || c.writesInflightBytesMax < 1) errors.push("writesQueuedBytesMax and writesInflightBytesMax must be positive");
  if (c.replStreamBytesMax < c.writeEffectsBytesMax) errors.push("replStreamBytesMax must hold the effects of the largest write (writeEffectsBytesMax)");
  return errors;
}

/** Block "dedupe" (issue #11 item 3): every bound positive, and a kept reply always fits in the window. */
function validateDedupe(c: Config): string[] {
  const errors: string[] = [];
  if (c.dedupeWindowRecords < 1 || c.dedupeClientsMax < 1) errors.push("dedupeWindowRecords and dedupeClientsMax must be at least 1");
  if (c.writeOrderRefusalsMax < 1 || c.writeOrderRefusalMs < 1) errors.push("writeOrderRefusalsMax and writeOrderRefusalMs must be at least 1");
  // A data node that becomes master rebuilds its window from the journal: what it spans must be held below a snapshot.
  if (c.dataNodes.length > 0 && c.dedupeWindowRecords > c.purgeMarginRecords) errors.push("dedupeWindowRecords must not exceed purgeMarginRecords (the journal keeps what a new master's dedupe window is rebuilt from)");
  if (c.txCommandsMax < 1) errors.push("txCommandsMax must be at least 1");
  if (c.txWatchKeysMax < 1) errors.push("txWatchKeysMax must be at least 1");
  if (c.watchKeysBytesMax < 1024) errors.push("watchKeysBytesMax must be at least 1024");
  if (c.dedupeReplyBytesMax < 1) errors.push("dedupeReplyBytesMax must be at least 1");
  if (c.clientRetryBackoffMinMs < 1 || c.clientRetryBackoffMaxMs < c.clientRetryBackoffMinMs) errors.push("clientRetryBackoffMinMs must be at least 1 and at most clientRetryBackoffMaxMs");
  if (c.dedupeWindowBytesMax < c.dedupeReplyBytesMax + DEDUPE_ENTRY_OVERHEAD_BYTES) errors.push("dedupeWindowBytesMax must hold at least one write of the largest kept reply (dedupeReplyBytesMax)");
  return errors;
}

/** Actors the local cluster starts: the journal nodes, then the data nodes (or the master and the replicas). */
export function localActorCount(c: Pick<Config, "journalNodes" | "dataNodes" | "replicas">): number {
  return c.journalNodes.length + (c.dataNodes.length > 0 ? c.dataNodes.length : 1 + c.replicas.length);
}

/** Majority of the configured journal nodes. */
export function quorumSize(nodes: number): number {
  assert(nodes >= 1, "a quorum needs at least one node");
  return Math.floor(nodes / 2) + 1;
}

/**
 * Redis 7.0's bounds on a request's framing (networking.c), which the front door applies as Redis does: a `*<n>`
 * count above INT_MAX is `invalid multibulk length`; a header line or an inline request with no line end within
 * PROTO_INLINE_MAX_SIZE (64 KiB) is refused (`too big mbulk count string`, `too big inline request`…). Nothing else
 * bounds the count: a request's bytes do (respRequestBytesMax), and an argument takes at least 6 of them (`$0\r\n\r\n`),
 * so a request within the byte bound holds at most bound / 6 arguments (174,762 at 1 MiB); an incomplete one costs the
 * heap 8 bytes per argument besides its bytes (request_framing.ts keeps offsets, not objects, until it is whole).
 */
export const RESP_MULTIBULK_ITEMS_MAX = 2 ** 31 - 1;
export const RESP_INLINE_BYTES_MAX = 64 * 1024;
/** A request's bytes on the wire (headers and CRLFs included) may pass respRequestBytesMax by this much; one argument may not. */
export const RESP_REQUEST_FRAMING_SLACK_BYTES = 64 * 1024;
/** Before AUTH (a door with a password), a request has at most this many arguments (Redis: 10)… */
export const RESP_UNAUTHENTICATED_ITEMS_MAX = 10;
/** …each at most this many bytes (Redis: 16 KiB), so that unauthenticated connections hold little. */
export const RESP_UNAUTHENTICATED_BULK_BYTES_MAX = 16 * 1024;

/** Connections one metrics endpoint holds at once (a scraper or two, an operator's curl); node:http closes any more at once. */
export const METRICS_CONNECTIONS_MAX = 8;
/** A metrics request must arrive whole within this (a slow client cannot hold one of those few connections). */
export const METRICS_REQUEST_TIMEOUT_MS = 5000;
