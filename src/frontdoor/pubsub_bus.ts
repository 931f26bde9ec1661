/**
 * The NATS side of the front door's pub/sub (thin driver): each PUBLISH on this door goes out on its node's `pubsub`
 * subject (one PubSubMessage), and every message another door published on its own comes in. Not journaled:
 * a message reaches the doors connected to NATS when it is published (Redis does not keep them either), in the order
 * one door published them.
 *
 * Bad input (a forged or garbled body: anyone allowed on the subject, or anyone at all on a nats-server without
 * users, could send one) is logged (the first few, then counted) and dropped, never delivered.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { maxPayload } from "../nats/bus.js";
import { decode, encode } from "../protocol/codec.js";
import { parsePubSubMessage, type PubSubMessage } from "../protocol/messages.js";
import type { Logger } from "../util/log.js";

/** Bad messages logged one by one at warn; past this many, only every 1000th (the count is in INFO qjm). */
const BAD_LOGGED_MAX = 20;

export class PubSubBus {
  /** Messages other doors published that this one received (well-formed). */
  received = 0;
  /** Bodies on the subject that were not a PubSubMessage: dropped. */
  dropped = 0;
  private readonly sub: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    /** This node's subject, where it publishes: its own messages, echoed back by NATS, were delivered here already. */
    private readonly subject: string,
    /** Every node's subject (a wildcard). */
    all: string,
    private readonly log: Logger,
    onMessage: (m: PubSubMessage) => void,
  ) {
    this.sub = nc.subscribe(all, {
      callback: (err, msg) => {
        if (err !== null) return this.log.warn({ err, subject: all }, "pub/sub subscription error");
        if (msg.subject === this.subject) return;
        const m = this.parse(msg.subject, msg.data);
        if (m === null) return;
        this.received++;
        onMessage(m);
      },
    });
  }

  /**
   * Sends `m` to every other door. Null when sent; else why not (the error text the client gets): larger than one
   * NATS message (nats-server's max_payload), or the bus closed.
   */
  publish(shard: boolean, channel: Buffer, message: Buffer): string | null {
    const body: Record<string, unknown> = { channel, message };
    if (shard) body.shard = true;
    const data = encode(body);
    const max = maxPayload(this.nc);
    if (data.length > max) {
      return `ERR qjm PAYLOAD_TOO_LARGE a pub/sub message travels as one NATS message: channel and message take ${data.length} bytes with their envelope, nats-server's max_payload is ${max}`;
    }
    try {
      this.nc.publish(this.subject, data);
    } catch (err) {
      return `ERR qjm: the pub/sub bus cannot take the message: ${(err as Error).message.replace(/[\r\n]+/g, " ")}`;
    }
    return null;
  }

  close(): void {
    this.sub.unsubscribe();
  }

  private parse(subject: string, data: Uint8Array): PubSubMessage | null {
    try {
      const m = parsePubSubMessage(decode(data));
      // Delivered to clients as Buffers (their bytes are only read, never kept past the frames built from them).
      return { ...m, channel: Buffer.from(m.channel.buffer, m.channel.byteOffset, m.channel.byteLength), message: Buffer.from(m.message.buffer, m.message.byteOffset, m.message.byteLength) };
    } catch (err) {
      this.dropped++;
      if (this.dropped <= BAD_LOGGED_MAX || this.dropped % 1000 === 0) {
        this.log.warn({ err: (err as Error).message, subject, bytes: data.length, dropped: this.dropped }, "pub/sub: a message on the subject is not a PubSubMessage, dropped");
      }
      return null;
    }
  }
}
