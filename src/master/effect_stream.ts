/**
 * The replication stream of the Redis the master serves, turned into journal records: markers the master writes after
 * each command cut the stream into one record per write (effect_assembler.ts); records are journaled in marker order,
 * each once what it waits for has come — the state of the keys a script touched (script_watch.ts), or, for a write
 * with a client id, Redis's reply that its record keeps for retries. Effects of no write (expired, evicted keys) become
 * records of their own when the MasterCore says; effects the stream cannot carry faithfully are refused.
 *
 * Entry points (`onCommand`, `onScriptRepair`) feed the core through the Master's step; the other methods run inside
 * one, from the Master's loop over the core's Ready.
 */
import type { EventPublisher } from "../actor/events.js";
import type { Config } from "../config/config.js";
import { recordedReplyOf } from "../dedupe/dedupe_answer.js";
import { ErrorCode } from "../protocol/errors.js";
import type { WriteId as ClientWriteId } from "../protocol/messages.js";
import { encodeEffects, encodeWriteRecord, type Effect } from "../segment/record.js";
import type { Logger } from "../util/log.js";
import { EffectAssembler, newMarkerChannel, type AssembledRecord } from "./effect_assembler.js";
import type { MasterCore, Outcome, WriteId } from "./master_core.js";
import { unpropagatedKeys } from "./script_watch.js";
import { WatchCore } from "./watch_core.js";
import type { TurnShare } from "../util/turn_budget.js";
import type { WriteTracer } from "./write_trace.js";

/** The keys a script touched and the effects that set them to their state after it (script_watch.ts). */
export type ScriptRepair = { effects: Effect[]; keys: Buffer[] };

/** Feeds one event to the core and does what it decided (Master.step). */
export type Step = (event: () => void) => void;

/** What an executed write's record waits for and keeps, until the write is answered. */
interface RecordInputs {
  /** A script: its record waits for the state of the keys it touched; null until that is read. */
  script: { repair: ScriptRepair | null } | null;
  /** The client's id (with a dedupe window): the record keeps it and Redis's reply, so it waits for that reply. */
  clientId: ClientWriteId | null;
  outcome: Outcome | null;
  /** The stream held effects of this write that cannot be journaled faithfully: the reply its record keeps. */
  refused: string | null;
}

export class EffectStream {
  private assembler = new EffectAssembler(newMarkerChannel(), 1);
  /** This Redis incarnation's secret marker channel (effect_assembler.ts). */
  private channel = "";
  private nextMarker = 1;
  /** Executed on Redis, marker not yet seen on the stream. */
  private readonly byMarker = new Map<number, WriteId>();
  /** Records off the stream, in marker order, waiting behind a script whose keys are still being read. */
  private readonly unjournaled: { id: WriteId; effects: Effect[] }[] = [];
  /** Every executed write not answered yet. */
  private readonly inputs = new Map<WriteId, RecordInputs>();
  private orphanSinceMs = 0;
  /** journalReady's loop waits for a later turn (the budget was spent). */
  private journalParked = false;
  /** Whether what waited for the stream was dropped for the current reset. */
  private resetDropped = false;
  /** WATCH's check (watch_core.ts): which keys the records journaled since this Redis's stream opened touched. */
  watches: WatchCore;
  /** The keys an effect touches (the command table's key positions); null: unknown. Set by the master. */
  keysOf: (effect: Effect) => Buffer[] | null = () => null;

  constructor(
    private readonly core: MasterCore,
    private readonly step: Step,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: EventPublisher,
    private readonly tracer: WriteTracer,
    /** The write path's share of a loop turn: records are encoded within it, the rest in a later turn. */
    private readonly budget: TurnShare | null = null,
  ) {
    this.watches = new WatchCore(config.watchKeysBytesMax);
  }

  /** A rebuilt Redis's stream starts: a new secret marker channel, and nothing waits from the stream before. */
  opening(): void {
    this.channel = newMarkerChannel();
    this.assembler = new EffectAssembler(this.channel, this.nextMarker, this.config.writeEffectsBytesMax);
    this.unjournaled.length = 0;
    // A rebuilt Redis: what was journaled before is known only as a floor (a WATCH older than it is aborted).
    this.watches = new WatchCore(this.config.watchKeysBytesMax);
  }

  /** A record journaled under `txid` with `effects`: WATCH's map of what each key was last modified by. */
  private touched(txid: number | null, effects: readonly Effect[]): void {
    if (txid === null) return;
    const keys: string[] = [];
    for (const e of effects) {
      const k = this.keysOf(e);
      if (k === null) return this.watches.journaled(txid, null);
      for (const key of k) keys.push(key.toString("latin1"));
    }
    this.watches.journaled(txid, keys);
  }

  /** A write is executed: the marker to write after it, on `channel`, back to back on the same connection. */
  mark(id: WriteId, clientId: ClientWriteId | null, script: boolean): { channel: string; marker: number } {
    const marker = this.nextMarker++;
    this.byMarker.set(marker, id);
    this.inputs.set(id, { script: script ? { repair: null } : null, clientId, outcome: null, refused: null });
    return { channel: this.channel, marker };
  }

  /** The write is answered: its record (if it still comes) is journaled without waiting for anything. */
  answered(id: WriteId): void {
    this.inputs.delete(id);
  }

  /**
   * Every command of the current link is assembled, whatever the state: a key whose TTL passed during the rebuild is
   * deleted by the promoted Redis before the writer serves, and its DEL must wait as an orphan to be journaled (sent
   * once the state is "writing"), never be dropped. MasterRedis hears only the current link.
   */
  onCommand(args: Buffer[]): void {
    const assembled = this.assembler.push(args);
    if (assembled === null) {
      if (this.assembler.pendingEffects === 1) this.orphanSinceMs = Date.now();
      return;
    }
    // A write's record after its writer failed, or while a reset discards this Redis: it was answered already.
    if (!this.core.serving || this.core.resetting) return;
    const id = this.byMarker.get(assembled.marker);
    // The assembler only cuts at the next marker the master wrote: this is the master's own bug, not input.
    if (id === undefined) {
      return this.step(() => this.core.fail(`marker ${assembled.marker} on the stream matches no write`));
    }
    this.byMarker.delete(assembled.marker);
    if (this.tracer.on) this.tracer.cut(id);
    const overflowBytes = assembled.overflowBytes;
    if (overflowBytes !== undefined) return this.step(() => this.core.oversized(id, overflowBytes));
    if (assembled.surprises.length > 0) this.onSurprises(id, assembled);
    this.unjournaled.push({ id, effects: assembled.effects });
    this.step(() => this.journalReady());
  }

  /** Redis's answer to a write (inside a step): a record that keeps it may go now. */
  outcome(id: WriteId, outcome: Outcome): void {
    const inputs = this.inputs.get(id);
    if (inputs === undefined) return;
    inputs.outcome = outcome;
    if (inputs.clientId !== null) this.journalReady();
  }

  /** The state of the keys a script touched is read: its record can be journaled (now, or when its marker comes). */
  onScriptRepair(id: WriteId, repair: ScriptRepair): void {
    const script = this.inputs.get(id)?.script ?? null;
    if (script === null || !this.core.serving) return;
    script.repair = repair;
    this.step(() => this.journalReady());
  }

  /**
   * Journals the records off the stream in marker order, up to the first that waits: a script whose keys are not
   * read yet, or a write with a client id whose Redis reply (which its record keeps, for retries) has not come yet.
   */
  private journalReady(): void {
    if (this.journalParked) return;
    while (this.unjournaled.length > 0 && this.core.serving && !this.core.resetting) {
      // Encoding a record costs its effects' size (a 10k-member RPUSH: ~5 ms): the rest waits for a later turn.
      if (this.budget !== null && !this.budget.spend()) return this.parkJournal();
      const { id, effects } = this.unjournaled[0];
      const inputs = this.inputs.get(id);
      const script = inputs?.script ?? null;
      if (script !== null && script.repair === null) return;
      if (inputs !== undefined && inputs.clientId !== null && inputs.outcome === null) return;
      this.unjournaled.shift();
      if (script === null) this.journal(id, inputs, effects);
      else this.journalScript(id, inputs, effects, script.repair!);
    }
  }

  private parkJournal(): void {
    this.journalParked = true;
    this.budget!.later(() => {
      this.journalParked = false;
      this.step(() => this.journalReady());
    });
  }

  /** One write's record: its effects, and with a client id the id and the reply (the dedupe window's at the commit). */
  private journal(id: WriteId, inputs: RecordInputs | undefined, effects: Effect[]): number | null {
    const txid = this.record(id, inputs, effects);
    if (this.tracer.on && txid !== null) this.tracer.journaled(id, txid);
    return txid;
  }

  private record(id: WriteId, inputs: RecordInputs | undefined, effects: Effect[]): number | null {
    if (inputs === undefined || inputs.clientId === null || inputs.outcome === null) {
      const txid = this.core.record(id, encodeEffects(effects));
      this.touched(txid, effects);
      return txid;
    }
    const reply = inputs.refused !== null
      ? ({ ok: false, message: inputs.refused, code: ErrorCode.EFFECTS_REFUSED } as const)
      : recordedReplyOf(inputs.outcome);
    const record = { id: inputs.clientId, reply };
    const { payload, write } = encodeWriteRecord(effects, record, this.config.dedupeReplyBytesMax);
    const txid = this.core.record(id, payload, write);
    this.touched(txid, effects);
    return txid;
  }

  private journalScript(id: WriteId, inputs: RecordInputs | undefined, effects: Effect[], repair: ScriptRepair): void {
    const unpropagated = unpropagatedKeys(repair.keys, effects);
    const txid = this.journal(id, inputs, [...effects, ...repair.effects]);
    if (txid === null || unpropagated.length === 0) return;
    const keys = unpropagated.slice(0, 8).map((k) => k.toString("latin1").slice(0, 64));
    const message = "a script wrote keys without propagating them; journaled their state";
    this.log.warn({ txid, keys, count: unpropagated.length }, message);
    this.events.publish({ type: "scriptEffectsRepaired", txid, keys: repair.keys.length, unpropagated: keys });
  }

  /** Client input the stream cannot carry (another database, a stray marker): a typed error and a log line. */
  private onSurprises(id: WriteId | null, assembled: Pick<AssembledRecord, "surprises">): void {
    const message = "the replication stream held effects the master cannot journal faithfully";
    this.log.warn({ write: id, surprises: assembled.surprises }, message);
    this.events.publish({ type: "streamSurprise", surprises: assembled.surprises });
    if (id === null) return;
    const refused = `${message}: ${assembled.surprises.join("; ")}`;
    const inputs = this.inputs.get(id);
    if (inputs !== undefined) inputs.refused = refused;
    this.core.refuse(id, refused);
  }

  /** Effects with no client marker (expired, evicted keys) go into a record of their own, as the core decided. */
  takeOrphans(): void {
    if (this.assembler.overflow) {
      this.core.startReset(`effects of no write passed writeEffectsBytesMax ${this.config.writeEffectsBytesMax}`);
    } else {
      const effects = this.assembler.takeOrphans();
      this.touched(this.core.orphans(encodeEffects(effects)), effects);
    }
  }

  /**
   * The timer's look at the stream: surprises that came with no write are reported once no write awaits its record;
   * returns since when effects of no write wait (null: none wait), for the core's tick.
   */
  onTimer(): number | null {
    const quiet = this.core.serving && this.core.awaitingRecords === 0;
    if (quiet && this.assembler.pendingSurprises > 0) {
      this.onSurprises(null, { surprises: this.assembler.takeSurprises() });
    }
    return this.assembler.pendingEffects > 0 ? this.orphanSinceMs : null;
  }

  /** After each Ready: a reset discards Redis, and what waited for the stream (markers, records) goes with it, once. */
  followReset(): void {
    if (this.core.resetting && !this.resetDropped) {
      this.resetDropped = true;
      this.drop();
    }
    if (!this.core.resetting) this.resetDropped = false;
  }

  /** The Redis is discarded (a failed term): no marker and no record of it is awaited any more. */
  drop(): void {
    this.byMarker.clear();
    this.unjournaled.length = 0;
  }
}
