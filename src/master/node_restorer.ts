/**
 * The master's side of bringing a masked journal node back, over NATS: drives the RestorerCore (the catch-up
 * procedure itself, pure) with the JournalClient, one request at a time, and copies the durable snapshot to the
 * node when the core asks (SnapshotClient.ensureOn). A catch-up for a writer core that is no longer the current
 * one stops at its next answer.
 */
import type { Config } from "../config/config.js";
import type { EventPublisher } from "../actor/events.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import type { NodeWatch } from "./node_watch.js";
import type { WriterCore } from "./writer_core.js";
import type { SnapshotClient } from "../snapshot/snapshot_client.js";
import { RestorerCore, type RestorerOutput } from "./restorer_core.js";

export interface RestorerHost {
  /** The writer core now serving, if any: a catch-up for another one stops. */
  readonly currentCore: WriterCore | null;
  readonly clusterId: string;
  /** `node` holds everything before `core`'s batch in flight: count it again. */
  rejoin(node: string, lastTxid: number, core: WriterCore): void;
}

export class NodeRestorer {
  private readonly inProgress = new Set<string>();

  constructor(
    private readonly jc: JournalClient,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: EventPublisher,
    private readonly watch: NodeWatch,
    private readonly host: RestorerHost,
    private readonly snapshots: SnapshotClient,
  ) {}

  isCatchingUp(node: string): boolean {
    return this.inProgress.has(node);
  }

  /** Starts catching `node` up for `core` unless one runs already, or the node is silent or reported bad. */
  start(node: string, core: WriterCore): void {
    if (this.inProgress.has(node) || !this.watch.restorable(node, Date.now())) return;
    this.inProgress.add(node);
    const restorer = new RestorerCore(node, core, this.host.clusterId, this.config);
    const finish = (): void => {
      this.inProgress.delete(node);
    };
    const step = (run: () => RestorerOutput): void => {
      let out: RestorerOutput;
      try {
        if (this.host.currentCore !== core) return finish();
        out = run();
      } catch (err) {
        this.log.error({ err, node }, "catching up a journal node failed");
        return finish();
      }
      for (const note of out.notes) this.log[note.level](note.fields, note.message);
      if (out.catchingUpFrom !== null) this.events.publish({ type: "catchingUp", node, fromTxid: out.catchingUpFrom });
      if (out.end !== null) {
        finish();
        if (out.end.kind === "rejoin") this.host.rejoin(node, out.end.lastTxid, core);
        else this.log.debug({ node, reason: out.end.reason }, "catch-up of a journal node stopped");
        return;
      }
      for (const r of out.send) void this.jc.call(r.node, r.req, r.timeoutMs).then((reply) => step(() => restorer.onReply(r.id, reply)));
      if (out.ensureSnapshot) {
        void this.snapshots.ensureOn(node, this.host.clusterId).then(
          (copied) => step(() => restorer.onSnapshotEnsured(copied)),
          (err: unknown) => {
            this.log.error({ err, node }, "catching up a journal node failed");
            finish();
          },
        );
      }
    };
    step(() => restorer.start());
  }
}
