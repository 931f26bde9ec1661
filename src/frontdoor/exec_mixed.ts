/**
 * EXEC of a transaction that queued commands the door runs itself (CLIENT, HELLO, SELECT, INFO, COMMAND, SUBSCRIBE,
 * PUBLISH…: transaction_state.ts DoorQueued) besides the ones that go through the journal as one transaction write.
 * Redis runs them all at EXEC, in order, and answers one array; so does the door: each door command runs in its place
 * (what it changes — the protocol after HELLO 3, CLIENT REPLY OFF — applies to the replies after it, as in Redis:
 * each reply is encoded in the protocol of its moment, the array's header `*<n>` in either), the journal's replies fill the
 * other places.
 *
 * When they run: with nothing watched, when EXEC is taken (as the door answers its own commands outside MULTI, at
 * once: a request pipelined after EXEC sees what they changed); with a WATCH, only once the master ran the
 * transaction (nil: none runs, as in Redis). PUBLISH always waits for the journal write, and is not sent when that
 * failed: a subscriber told of a change can read it. A write that fails (an error instead of EXEC's array) does not
 * undo what the door's commands changed before it (docs/resp.md, Transactions).
 */
import { assert } from "../util/assert.js";
import type { RespValue } from "../redis/resp_parser.js";
import type { ReplyValue } from "../segment/record.js";
import type { ConnectionState } from "./connection_state.js";
import type { LocalAnswer } from "./local_commands.js";
import { parsePubSub, type PubSubRequest, type PushFrame } from "./pubsub.js";
import { commandReply } from "./reply_shapes.js";
import { encodeResp, type Protocol } from "./resp_encoder.js";
import type { DoorQueued, Queued } from "./transaction_state.js";

/** What running a queued door command needs from its session and door. */
export interface ExecHost {
  readonly state: ConnectionState;
  local(command: Extract<DoorQueued, { kind: "local" }>["command"], args: Buffer[]): LocalAnswer;
  pubsub(request: Exclude<PubSubRequest, { op: "error" }>): PushFrame[] | RespValue | Promise<RespValue>;
  /** A command on the node's own Redis (COMMAND, INFO, CONFIG GET). */
  read(protocol: Protocol, args: readonly Buffer[]): Promise<RespValue>;
  finish(answer: Extract<LocalAnswer, { upstream: Buffer[] }>, reply: RespValue): RespValue;
  unavailable(err: Error): RespValue;
}

/** One place of EXEC's array: its protocol, whether CLIENT REPLY silenced it, and its bytes once known. */
interface Place {
  protocol: Protocol;
  silent: boolean;
  /**
   * Null: a journal command's (filled from the write's reply); a function: a PUBLISH, run after the write (its answer
   * once this door's receivers were handed the message).
   */
  bytes: Buffer | Promise<Buffer> | (() => Promise<Buffer>) | null;
}

export class MixedExec {
  private places: Place[] | null = null;
  /** A door command asked for the connection to close after EXEC's reply (CLIENT KILL of itself). */
  close = false;

  constructor(
    private readonly queued: Queued[],
    private readonly host: ExecHost,
  ) {}

  /** Runs the door's commands (once), in order. */
  run(): void {
    if (this.places !== null) return;
    this.places = this.queued.map((q) => {
      const protocol = this.host.state.protocol;
      if (q.door === null) return { protocol, silent: this.host.state.replyOff, bytes: null };
      const { bytes, quiet } = this.runOne(q.door, q.args);
      return { protocol, silent: quiet || this.host.state.replyOff, bytes };
    });
  }

  /** EXEC's reply bytes, given the journal write's reply (an array: one value per journal command). */
  async reply(journal: ReplyValue[], tx: Buffer[][]): Promise<Buffer> {
    this.run();
    let j = 0;
    const parts = this.places!.map((p) => {
      if (p.bytes !== null) return typeof p.bytes === "function" ? p.bytes() : p.bytes;
      const value = journal[j];
      return encodeResp(commandReply(tx[j++], value, p.protocol), p.protocol);
    });
    const done = await Promise.all(parts);
    const shown = done.filter((_, i) => !this.places![i].silent);
    return Buffer.concat([Buffer.from(`*${this.queued.length}\r\n`), ...shown]);
  }

  private runOne(door: DoorQueued, args: Buffer[]): { bytes: Place["bytes"]; quiet: boolean } {
    const host = this.host;
    if (door.kind === "upstream") return { bytes: this.upstream(args, (r) => r), quiet: false };
    if (door.kind === "pubsub") {
      const request = parsePubSub(door.command, args);
      if (request.op === "error") return { bytes: encodeResp(request.error, host.state.protocol), quiet: false };
      if (request.op === "publish") return { bytes: () => this.published(request), quiet: false };
      const r = host.pubsub(request);
      assert(!(r instanceof Promise), "only PUBLISH answers later");
      const protocol = host.state.protocol;
      return { bytes: Array.isArray(r) ? Buffer.concat(r.map((f) => f.bytes(protocol))) : encodeResp(r, protocol), quiet: false };
    }
    const answer = host.local(door.command, args);
    if (!("reply" in answer)) return { bytes: this.upstream(answer.upstream, (r) => host.finish(answer, r)), quiet: false };
    if (answer.close === true) this.close = true;
    return { bytes: encodeResp(answer.reply, host.state.protocol), quiet: answer.quiet === "silent" };
  }

  private async published(request: Extract<PubSubRequest, { op: "publish" }>): Promise<Buffer> {
    const protocol = this.host.state.protocol;
    return encodeResp((await this.host.pubsub(request)) as RespValue, protocol);
  }

  private upstream(args: readonly Buffer[], finish: (r: RespValue) => RespValue): Promise<Buffer> {
    const protocol = this.host.state.protocol;
    return this.host.read(protocol, args).then(
      (r) => encodeResp(finish(r), protocol),
      (err: Error) => encodeResp(this.host.unavailable(err), protocol),
    );
  }
}
