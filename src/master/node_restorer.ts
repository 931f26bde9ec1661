/**
 * The master's side of bringing a masked journal node back, over NATS: drives the RestorerCore (the catch-up
 * procedure itself, pure) with the JournalClient, one request at a time, and copies the durable snapshot to the
 * node when the core asks (SnapshotClient.ensureOn). Which nodes to catch up, and when, the MasterCore decides; every
 * catch-up started here ends with `host.rejoin` or `host.catchUpEnded`. A catch-up for a writer core that is no
 * longer the current one stops at its next answer.
 */
import type { Config } from "../config/config.js";
import type { EventPublisher } from "../actor/events.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import type { WriterCore } from "./writer_core.js";
import type { SnapshotClient } from "../snapshot/snapshot_client.js";
import { RestorerCore, type RestorerOutput } from "./restorer_core.js";

export interface RestorerHost {
  /** The writer core now serving, if any: a catch-up for another one stops. */
  readonly currentCore: WriterCore | null;
  readonly clusterId: string;
  /** `node` holds everything before `core`'s batch in flight: count it again. */
  rejoin(node: string, lastTxid: number, core: WriterCore): void;
  /** The catch-up of `node` for `core` stopped without a rejoin. */
  catchUpEnded(node: string, core: WriterCore): void;
}

export class NodeRestorer {
  constructor(
    private readonly jc: JournalClient,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: EventPublisher,
    private readonly host: RestorerHost,
    private readonly snapshots: SnapshotClient,
  ) {}

  /** Catches `node` up for `core` (the MasterCore made sure none runs for it already and the node is heard). */
  start(node: string, core: WriterCore): void {
    const restorer = new RestorerCore(node, core, this.host.clusterId, this.config);
    const finish = (): void => this.host.catchUpEnded(node, core);
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
        if (out.end.kind === "rejoin") return this.host.rejoin(node, out.end.lastTxid, core);
        this.log.debug({ node, reason: out.end.reason }, "catch-up of a journal node stopped");
        return finish();
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
