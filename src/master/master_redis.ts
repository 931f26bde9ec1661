/**
 * The Redis the master serves from, through its life: a fresh redis-server rebuilt from the newest snapshot and the
 * journal (on becoming the writer, and on a reset to the journal), or a data node's own Redis that a takeover catches
 * up to the recovered log's end; then guarded, promoted and linked, so that its replication stream reaches the master
 * (effect_stream.ts); at last discarded. It decides nothing: the Master says when, and hears the stream through the
 * `StreamListener` it is given.
 */
import path from "node:path";
import { Redis } from "ioredis";
import type { EventPublisher } from "../actor/events.js";
import type { Config } from "../config/config.js";
import { ErrorCode, QjmError } from "../protocol/errors.js";
import { CommandTable } from "../redis/command_table.js";
import { redisPassword, startRedisServer, type RedisServer } from "../redis/redis_server.js";
import { ApplyError, applyRecords, dropAppliedMarker, readAppliedMarker } from "../redis/apply_records.js";
import { Feeder } from "../redis/feeder.js";
import { RespConnection } from "../redis/resp_connection.js";
import { decodeRecordPayload, type RecordWrite } from "../segment/record.js";
import type { DedupeWindow } from "../dedupe/dedupe_window.js";
import { bootstrapFromSnapshot, type BootstrapProgress } from "../snapshot/bootstrap.js";
import type { SnapshotClient } from "../snapshot/snapshot_client.js";
import { assert } from "../util/assert.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import { rebuildSources } from "./rebuild_sources.js";
import { ReplicationLink } from "./replication_link.js";
import type { TurnShare } from "../util/turn_budget.js";
import { ScriptWatch } from "./script_watch.js";

/** Who hears the replication stream of the Redis served. */
export interface StreamListener {
  /** A rebuilt Redis is about to be linked: its stream starts anew (a new secret marker channel). */
  opening(): void;
  /** One command of the current link's stream, in stream order. */
  command(args: Buffer[]): void;
  /** The current link failed: nothing more can be journaled from this Redis. */
  failed(err: Error): void;
}

export interface MasterRedisOptions {
  /** The master's id: events name it `master.<id>`. */
  id: string;
  config: Config;
  dataDir: string;
  log: Logger;
  events: EventPublisher;
  jc: JournalClient;
  snapshots: SnapshotClient;
  /** The port of the fresh redis-server it starts. */
  port: number;
  /** The command table of this redis-server binary if known already (COMMAND takes a while). */
  commands?: CommandTable;
  /** The master's share of a loop turn: the replication stream's commands are delivered within it. */
  budget?: TurnShare;
}

/** A data node's Redis, handed over for its master role: a replica of `feeder` holding the journal to `appliedTxid`. */
export interface AdoptedRedis {
  redis: RedisServer;
  feeder: Feeder;
  appliedTxid: number;
  /** The recovery's outcome: the nodes in step, and the last committed txid. */
  start: { inSync: string[]; endTxid: number };
}

/** The serving writer as a reset sees it: where its journal ends, and which nodes hold it all. */
export interface JournalEnd {
  readonly inSyncNodes: string[];
  readonly lastTxid: number;
}

export class MasterRedis {
  private redis: RedisServer | null = null;
  private client_: Redis | null = null;
  /** The rebuild's feeder: the Redis is its replica until the replication link is open. */
  private feeder: Feeder | null = null;
  private link: ReplicationLink | null = null;
  private commands_: CommandTable | null = null;
  private scriptWatch_: ScriptWatch | null = null;
  /** The connection that executes client writes once served: raw RESP, so Redis's reply keeps its type. */
  private writer_: RespConnection | null = null;
  /** A rebuild's snapshot download, for the status. */
  bootstrapProgress: BootstrapProgress | null = null;

  constructor(
    private readonly o: MasterRedisOptions,
    private readonly listener: StreamListener,
  ) {}

  get url(): string | null {
    return this.redis?.url ?? null;
  }
  /** The connection that executes writes (null while there is no Redis). */
  get client(): Redis | null {
    return this.client_;
  }
  get commands(): CommandTable | null {
    return this.commands_;
  }
  /**
   * The connection client writes (and their markers, and scripts with their keyspace-event toggles) run on while
   * served, one socket in call order; null until the link opens. ioredis (`client`) does everything before that.
   */
  get writer(): RespConnection | null {
    return this.writer_;
  }
  /** The watch of this Redis's scripts (null until the link opens). */
  get scriptWatch(): ScriptWatch | null {
    return this.scriptWatch_;
  }

  /**
   * A data node's takeover: its Redis holds the committed journal up to `appliedTxid` and is served from now on; the
   * records after it, up to what the recovery decided is committed, are fed the same way (the window learns those
   * it has not seen), then it is promoted and linked. Returns how long each step took, or null once `cancelled`.
   */
  async takeOver(
    t: AdoptedRedis,
    window: DedupeWindow,
    cancelled: () => boolean,
  ): Promise<Record<string, number> | null> {
    this.redis = t.redis;
    this.feeder = t.feeder;
    const ms: Record<string, number> = {};
    let at = Date.now();
    const lap = (name: string): void => {
      ms[name] = Date.now() - at;
      at = Date.now();
    };
    await this.connectClient();
    lap("connect");
    await this.catchUp(t.start.inSync, t.appliedTxid + 1, t.start.endTxid, window);
    lap("catchUp");
    if (cancelled()) return null;
    await this.openLink();
    lap("link");
    return ms;
  }

  /** The takeover's catch-up: the records `from`..`endTxid`, the applied-txid marker dropped, the AOF turned off. */
  private async catchUp(nodes: string[], from: number, endTxid: number, window: DedupeWindow): Promise<void> {
    const marker = { legacy: (await readAppliedMarker(this.client_!)).legacy };
    await this.applyJournal(nodes, from, endTxid, marker, (txid, write) => {
      // The window saw what the replica applied; the records after it are the ones fed here.
      if (txid > window.stats.lastTxid) window.observe(txid, write);
    });
    // The applied-txid marker means nothing on a master; the data node's Redis does not persist while it is one.
    await dropAppliedMarker(this.feeder!, this.client_!);
    // Not awaited: it runs on the same connection before any write does.
    this.client_!.call("CONFIG", "SET", "appendonly", "no").catch((err: Error) => {
      this.o.log.warn({ err }, "could not turn the AOF off");
    });
  }

  /**
   * A reset to the journal (the same epoch and segment go on): this Redis is discarded, and a fresh one rebuilt up to
   * `writer.lastTxid` and linked. The window is left alone (the core keeps it): the rebuild only refills Redis. False
   * as soon as `cancelled` says so.
   */
  async resetToJournal(writer: JournalEnd, cancelled: () => boolean): Promise<boolean> {
    await this.discard();
    if (cancelled()) return false;
    await this.open();
    if (cancelled()) return false;
    await this.rebuild(writer.inSyncNodes, writer.lastTxid, null);
    if (cancelled()) return false;
    await this.openLink();
    return !cancelled();
  }

  /**
   * Starts the master's own fresh redis-server, as the replica of a feeder that fills it (it expires nothing by its
   * own clock until the rebuild is done), and connects the client that executes writes there.
   */
  async open(): Promise<void> {
    const c = this.o.config;
    const password = redisPassword(c.dataDir);
    this.feeder = await Feeder.listen({
      syncTimeoutMs: c.feederSyncTimeoutMs,
      loadTimeoutMs: c.snapshotTimeoutMs,
      stallTimeoutMs: c.journalRequestTimeoutMs * 2,
      keepaliveMs: c.feederKeepaliveMs,
    });
    const replicaOf = ["--replicaof", "127.0.0.1", String(this.feeder.port)];
    this.redis = await startRedisServer({
      port: this.o.port,
      dir: this.o.dataDir + "/redis",
      persistent: false,
      startTimeoutMs: c.redisStartTimeoutMs,
      password,
      extraArgs: replicaOf,
    });
    await this.connectClient();
  }

  /** The connection that executes writes on the master's Redis, and the command table read from it. */
  private async connectClient(): Promise<void> {
    assert(this.redis !== null, "a client needs the Redis");
    const password = redisPassword(this.o.config.dataDir);
    // Auto-pipelining: the commands of one event-loop turn leave in one socket write, in call order. Never resend a
    // command after a reconnect (a client write would run twice); maxRetriesPerRequest 0 so that ioredis fails the
    // commands in flight at a close instead of dropping them unsettled.
    this.client_ = new Redis({
      port: this.redis.port,
      host: "127.0.0.1",
      password,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      lazyConnect: true,
      enableAutoPipelining: true,
      autoResendUnfulfilledCommands: false,
    });
    this.client_.on("error", (err) => this.o.log.debug({ err }, "redis client error"));
    await this.client_.connect();
    this.commands_ = this.o.commands ?? (await CommandTable.load(this.client_));
  }

  /** Promotes the rebuilt Redis and opens the replication link to it: from here on its effects are journaled. */
  async openLink(): Promise<void> {
    const ready = this.redis !== null && this.client_ !== null && this.feeder !== null;
    assert(ready, "the link needs the rebuilt Redis and its feeder");
    await this.guard(this.client_!, this.redis!.port);
    await this.promote();
    const { replAckIntervalMs, replStreamBytesMax, dataDir } = this.o.config;
    const password = redisPassword(dataDir);
    const link = new ReplicationLink({ port: this.redis!.port, password, replAckIntervalMs, replStreamBytesMax, budget: this.o.budget });
    // Only the current link is heard: a discarded Redis's stream is not this master's any more.
    link.on("command", (cmd: { args: Buffer[] }) => {
      if (link === this.link) this.listener.command(cmd.args);
    });
    link.on("error", (err: Error) => this.listener.failed(err));
    await link.ready;
    this.link = link;
    // From here every key the Redis's clock expires reaches the link as a DEL, and is journaled.
    await this.client_!.call("CLIENT", "UNPAUSE");
    await this.feeder!.close();
    this.feeder = null;
  }

  /**
   * Fills the fresh Redis through the feeder, before the replication link is opened: the newest durable snapshot if
   * there is one (the journal below it may be purged), then the journal from the snapshot's txid to endTxid. The
   * Redis is the feeder's replica meanwhile: keys whose TTL passed while the journal waited stay until the journal
   * or, once promoted, the Redis's clock deletes them, exactly as on every other copy.
   */
  async rebuild(nodes: string[], endTxid: number, window: DedupeWindow | null): Promise<void> {
    assert(this.client_ !== null && this.feeder !== null, "rebuild needs a Redis client and its feeder");
    const { config, log, events, dataDir } = this.o;
    const feeder = this.feeder;
    const client = this.client_;
    let from = 1;
    const bootstrapFile = path.join(dataDir, "bootstrap.rdb");
    const progress = (p: BootstrapProgress): void => {
      this.bootstrapProgress = p;
    };
    const { snapshots } = this.o;
    const snapshot = await bootstrapFromSnapshot(snapshots, feeder, client, bootstrapFile, config, log, progress);
    if (snapshot === null) await feeder.sync(client);
    else {
      assert(snapshot.txid <= endTxid, `snapshot ${snapshot.txid} is past the recovered log's end ${endTxid}`);
      from = snapshot.txid + 1;
      // The replica's applied-txid marker came with the snapshot: it means nothing on the master.
      await dropAppliedMarker(feeder, client);
      const { txid, bytes, node: fromNode, ms, downloadMs } = snapshot;
      events.publish({ type: "bootstrapped", actor: `master.${this.o.id}`, txid, bytes, fromNode, ms, downloadMs });
    }
    if (window !== null && from > 1) {
      await this.observeJournal(nodes, Math.max(1, from - config.dedupeWindowRecords), from - 1, window);
    }
    const observe = window === null ? undefined : (txid: number, w: RecordWrite | null) => window.observe(txid, w);
    await this.applyJournal(nodes, from, endTxid, undefined, observe);
    this.bootstrapProgress = null;
    log.info({ endTxid, fromSnapshot: snapshot?.txid ?? null }, "rebuilt Redis from the journal");
  }

  /**
   * The dedupe window learns the records below a snapshot the rebuild started from (best effort: what the journal
   * still holds; it keeps purgeMarginRecords below the snapshot, at least the window with data nodes).
   */
  private async observeJournal(nodes: string[], from: number, to: number, window: DedupeWindow): Promise<void> {
    const { config, jc } = this.o;
    const sources = rebuildSources(nodes, config.journalNodes);
    for (let i = 0, misses = 0; from <= to && misses < sources.length; i++) {
      const { node, uncommitted } = sources[i % sources.length];
      const read = await jc.readRecords(node, from, to, config, uncommitted);
      if (read === null) {
        misses++;
        continue;
      }
      misses = 0;
      for (const rec of read.records) {
        if (rec.txid > window.stats.lastTxid) window.observe(rec.txid, decodeRecordPayload(rec.payload).write);
      }
      from = read.records[read.records.length - 1].txid + 1;
    }
    if (from <= to) {
      const message = "the journal no longer holds what the dedupe window would learn below the snapshot";
      this.o.log.warn({ fromTxid: from, toTxid: to }, message);
    }
  }

  /**
   * Feeds the committed records `from`..`endTxid` to the Redis (optionally with the applied-txid marker), from the nodes
   * in step and then the others (rebuild_sources.ts).
   */
  private async applyJournal(
    nodes: string[],
    from: number,
    endTxid: number,
    marker?: { legacy: boolean },
    observe?: (txid: number, write: RecordWrite | null) => void,
  ): Promise<void> {
    assert(this.client_ !== null && this.feeder !== null, "applying the journal needs a Redis client and its feeder");
    const { config, jc } = this.o;
    const feeder = this.feeder;
    const client = this.client_;
    const sources = rebuildSources(nodes, config.journalNodes);
    let sourceIndex = 0;
    let misses = 0;
    while (from <= endTxid) {
      const { node, uncommitted } = sources[sourceIndex % sources.length];
      const read = await jc.readRecords(node, from, endTxid, config, uncommitted);
      if (read === null) {
        // That node has a hole here, is gone, or served damaged records: the next one.
        sourceIndex++;
        if (++misses >= sources.length * 3) {
          throw new QjmError(ErrorCode.NO_QUORUM, `no journal node serves txid ${from} for the rebuild`);
        }
        continue;
      }
      misses = 0;
      const applied = (txid: number, write: RecordWrite | null): void => {
        from = txid + 1;
        observe?.(txid, write);
      };
      await applyRecords(feeder, client, read.records, { marker, applied }).catch((err: unknown) => {
        this.reportApplyFailure(err);
      });
    }
  }

  /** An effect that ran on the master before fails on its rebuild: this copy is not the journal's. Reported. */
  private reportApplyFailure(err: unknown): never {
    if (err instanceof ApplyError && err.effectFailed) {
      const actor = `master.${this.o.id}`;
      this.o.events.publish({ type: "applyFailed", actor, txid: err.txid, reason: err.message });
    }
    throw err;
  }

  /**
   * The rebuilt Redis stops being the feeder's replica. Paused for writes first, in the same transaction: a paused
   * Redis neither expires nor evicts keys (Redis 7.0), so nothing is deleted before the replication link is open to
   * see it (REPLICAOF NO ONE drops a promoted Redis's replicas, so the link can only open after it).
   */
  private async promote(): Promise<void> {
    assert(this.client_ !== null, "promote needs a Redis client");
    const pauseMs = this.o.config.feederSyncTimeoutMs * 2;
    const transaction = this.client_.multi().call("CLIENT", "PAUSE", String(pauseMs), "WRITE");
    const results = await transaction.call("REPLICAOF", "NO", "ONE").exec();
    const failure = results === null ? new Error("transaction aborted") : results.find(([err]) => err !== null)?.[0];
    if (failure) throw new QjmError(ErrorCode.INTERNAL, `promoting the rebuilt Redis: ${failure.message}`);
  }

  /**
   * Issue #10 class 4, once the rebuild is done: FLUSHALL/FLUSHDB denied to the master's connection (so to the scripts
   * it runs: they fire no keyspace event), and so are SELECT of any database but 0, MOVE and SWAPDB (the Redis has a
   * database 1 for a replica's applied marker, apply_records.ts APPLIED_DB: only database 0 is journaled); the script
   * watch, and a new secret marker channel for this Redis's stream.
   */
  private async guard(client: Redis, port: number): Promise<void> {
    await client.call("ACL", "SETUSER", "default", "-flushall", "-flushdb", "-select", "+select|0", "-move", "-swapdb");
    const password = redisPassword(this.o.config.dataDir);
    this.writer_ = await RespConnection.open({ port, password, connectTimeoutMs: this.o.config.redisStartTimeoutMs });
    this.scriptWatch_ = await ScriptWatch.open(port, password, this.o.config, this.o.log);
    this.listener.opening();
  }

  /**
   * The Redis served is taken for lost (frozen: it answers nothing): SIGKILL now. discard()'s SIGTERM would wait out its
   * 5 s grace on a stopped process, and a data node keeps beating as master meanwhile, so no standby takes over.
   */
  kill(): void {
    this.redis?.child.process.kill("SIGKILL");
  }

  /** Stops everything of the Redis served: script watch, link, feeder, client, and the redis-server itself. */
  async discard(): Promise<void> {
    this.scriptWatch_?.close();
    this.scriptWatch_ = null;
    this.writer_?.close();
    this.writer_ = null;
    this.link?.close();
    this.link = null;
    await this.feeder?.close();
    this.feeder = null;
    this.client_?.disconnect();
    this.client_ = null;
    await this.redis?.stop();
    this.redis = null;
  }
}
