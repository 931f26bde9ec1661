/**
 * The simulated network between actors: each message gets its own delay (so messages reorder; a client's writes on
 * one link keep their order, but for the slow ones), may be lost or delivered twice, and is dropped when a partition separates sender and receiver at delivery time or the receiver
 * is down. Any subset of actors can be cut from the rest, several cuts at once.
 */
import type { WriteId, WriteReply } from "../protocol/messages.js";
import type { PeerBeat, ProbeAnswer } from "../datanode/election_core.js";
import type { Prng } from "./prng.js";
import type { SimClock } from "./clock.js";
import type { Trace } from "./trace.js";

/**
 * A client's write, as the sim's clients issue them: SET/INCR/DEL, and the TTL workload (issue #10 class 2): SET … PX,
 * PEXPIRE and GETEX … PX (a sliding extension), PERSIST, RENAME (a move out of a key that may be expiring).
 */
export type ClientOp =
  | { op: "SET"; key: string; value: string; pxMs?: number }
  | { op: "INCR"; key: string }
  | { op: "DEL"; key: string }
  | { op: "PEXPIRE"; key: string; pxMs: number }
  | { op: "GETEX"; key: string; pxMs: number }
  | { op: "PERSIST"; key: string }
  | { op: "RENAME"; key: string; dst: string };

export type SimMessage =
  /** A journal request (msgpack body, as on NATS); `id` matches the reply. */
  | { kind: "request"; id: number; body: Uint8Array }
  | { kind: "reply"; id: number; body: Uint8Array }
  /** The master's commit hint (msgpack CommitHint), one copy per journal node and replica (production: one fan-out publish). */
  | { kind: "commitHint"; body: Uint8Array }
  /**
   * A batch for several journal nodes as the replicas hear it (msgpack BatchFanout, production's one publish on
   * `qjm.<cluster>.batch`): one copy per replica (or data node), each delayed, lost or doubled on its own.
   */
  | { kind: "fanout"; body: Uint8Array }
  /** A journal node's presence, heard by the masters (NodeWatch). */
  | { kind: "heartbeat" }
  /** A client's write; `writeId` (client, seq) is the same on each retry of it, null for a write sent without one. */
  | { kind: "write"; id: number; writeId: WriteId | null; op: ClientOp }
  | { kind: "writeReply"; id: number; reply: WriteReply }
  /**
   * A master starts serving, heard by clients: their unanswered writes go again at once (client.ts hears it as the
   * master's first heartbeat serving in a higher epoch, which master.ts sends as it starts serving).
   */
  | { kind: "writerElected"; epoch: number }
  /** A data node's heartbeat, heard by the other data nodes (their ElectionCore ranks and waits by these). */
  | { kind: "dataBeat"; beat: PeerBeat }
  /** A standby asks a silent master's node for its role (a request on its control subject). */
  | { kind: "probe"; id: number }
  /** The probed node's role — or, sent by the bus itself, "no responders": the node is down (NATS's own answer). */
  | { kind: "probeAnswer"; id: number; answer: ProbeAnswer }
  /** A planned switchover: the drained master tells the standby it chose to campaign now (production: its control subject). */
  | { kind: "campaignNow"; id: number }
  | { kind: "campaignReply"; id: number; ok: boolean; message: string };

export interface BusOptions {
  delayMsMin: number;
  delayMsMax: number;
  /** Chance that a message takes up to slowDelayMsMax instead (reordering past timeouts). */
  slowChance: number;
  slowDelayMsMax: number;
  lossChance: number;
  duplicateChance: number;
}

export interface SimActor {
  readonly id: string;
  readonly up: boolean;
  onMessage(from: string, msg: SimMessage): void;
}

export class SimBus {
  private readonly actors = new Map<string, SimActor>();
  /** Active partitions: each separates its members from every other actor. */
  private readonly cuts: Set<string>[] = [];
  sent = 0;
  lost = 0;
  /** Per link `from>to`: when its last client write is delivered (writes on one link keep their order, as on NATS). */
  private readonly writeLinks = new Map<string, number>();

  constructor(
    private readonly clock: SimClock,
    private readonly prng: Prng,
    private readonly options: BusOptions,
    private readonly trace: Trace,
  ) {}

  register(actor: SimActor): void {
    this.actors.set(actor.id, actor);
  }

  connected(a: string, b: string): boolean {
    for (const cut of this.cuts) if (cut.has(a) !== cut.has(b)) return false;
    return true;
  }

  cut(members: readonly string[]): Set<string> {
    const cut = new Set(members);
    this.cuts.push(cut);
    this.trace.add("net", `partition {${members.join(",")}} | rest`);
    return cut;
  }

  heal(cut: Set<string>): void {
    const i = this.cuts.indexOf(cut);
    if (i < 0) return;
    this.cuts.splice(i, 1);
    this.trace.add("net", `heal {${[...cut].join(",")}}`);
  }

  healAll(): void {
    while (this.cuts.length > 0) this.heal(this.cuts[0]);
  }

  /** Sends `msg`; returns how many copies go (0: lost, 2: delivered twice). */
  send(from: string, to: string, msg: SimMessage): number {
    this.sent++;
    if (this.prng.chance(this.options.lossChance)) {
      this.lost++;
      return 0;
    }
    const copies = this.prng.chance(this.options.duplicateChance) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const o = this.options;
      const slow = this.prng.chance(o.slowChance);
      const drawn = slow ? this.prng.int(o.delayMsMax, o.slowDelayMsMax) : this.prng.int(o.delayMsMin, o.delayMsMax);
      const delay = msg.kind === "write" && i === 0 && !slow ? this.inOrder(`${from}>${to}`, drawn) : drawn;
      this.clock.after(delay, () => {
        const target = this.actors.get(to);
        if (!this.connected(from, to)) return;
        if (target !== undefined && target.up) return target.onMessage(from, msg);
        // Nobody subscribes for a process that is down: NATS answers a request with "no responders" at once.
        if (msg.kind === "probe") this.send(to, from, { kind: "probeAnswer", id: msg.id, answer: { kind: "noResponders" } });
      });
    }
    return copies;
  }

  /**
   * A client's writes on one link arrive in the order sent (one NATS connection to one subscriber): a write's delay is
   * stretched to arrive no earlier than the one sent before it. A slow one does not hold the rest back, nor does a
   * second copy: they are overtaken, as a large write sent in fragments is by the small ones pipelined behind it
   * (write_order.ts), or a copy that comes again later.
   */
  private inOrder(link: string, delay: number): number {
    const at = Math.max(this.clock.nowMs + delay, this.writeLinks.get(link) ?? 0);
    this.writeLinks.set(link, at);
    return at - this.clock.nowMs;
  }
}
