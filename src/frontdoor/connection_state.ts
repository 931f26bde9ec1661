/**
 * What the front door knows of one client connection (pure, small: 10,000 idle connections hold little): its id,
 * protocol, name, whether it authenticated, and what CLIENT INFO / CLIENT LIST print for it.
 */
import type { ConsistencyLevel } from "../config/config.js";
import type { Protocol } from "./resp_encoder.js";
import { Subscriptions } from "./pubsub.js";
import { TransactionState, type TxLimitsOfDoor } from "./transaction_state.js";

/** Unbounded transactions: unit tests that build a state without a door. */
const NO_TX_LIMITS: TxLimitsOfDoor = { commandsMax: Number.MAX_SAFE_INTEGER, bytesMax: Number.MAX_SAFE_INTEGER, watchKeysMax: Number.MAX_SAFE_INTEGER };

export class ConnectionState {
  protocol: Protocol = 2;
  name: string | null = null;
  authenticated: boolean;
  libName = "";
  libVersion = "";
  lastCommand = "NULL";
  lastActiveMs: number;
  /** QJM.CONSISTENCY: what this connection's reads wait for. */
  consistency: ConsistencyLevel;
  /** QJM.LASTTXID: the txid of this connection's last acknowledged write; 0 if none. */
  lastWriteTxid = 0;
  /**
   * The highest txid this connection has seen: its writes' txids and, at each read, the txid the node had applied
   * (what the read may have shown). A session read waits until its node applied it: monotonic reads on any node.
   */
  observedTxid = 0;
  /** MULTI … EXEC and WATCH on this connection. */
  readonly tx: TransactionState;
  /** Its channels, patterns and shard channels (the door's PubSubIndex holds the reverse; RESET clears both there). */
  readonly pubsub = new Subscriptions();
  /** CLIENT REPLY OFF: no reply is sent (pub/sub's frames still are) until CLIENT REPLY ON. */
  replyOff = false;
  /** CLIENT REPLY SKIP: the next command's reply is not sent. */
  skipNext = false;
  /**
   * A write of this connection committed with effects but was answered an error, which carries no txid (a script that
   * failed after writing): the next session read takes the master's read index as its floor (read-your-writes).
   */
  untoldWrite = false;

  constructor(
    readonly id: number,
    readonly addr: string,
    readonly localAddr: string,
    readonly createdMs: number,
    /** The door has a password: the connection must AUTH (or HELLO … AUTH) first. */
    private readonly passwordSet: boolean,
    private readonly defaultConsistency: ConsistencyLevel = "session",
    txLimits: TxLimitsOfDoor = NO_TX_LIMITS,
  ) {
    this.tx = new TransactionState(txLimits);
    this.authenticated = !passwordSet;
    this.lastActiveMs = createdMs;
    this.consistency = defaultConsistency;
  }

  /** A write was acknowledged with `txid`. */
  wrote(txid: number): void {
    this.lastWriteTxid = txid;
    this.observed(txid);
  }

  /** A write committed with effects, answered an error without its txid. */
  wroteUntold(): void {
    this.untoldWrite = true;
  }

  /** This connection has seen (or was told of, QJM.WAIT) everything up to `txid`. */
  observed(txid: number): void {
    if (txid > this.observedTxid) this.observedTxid = txid;
  }

  /** RESET: back to a fresh connection's state (the id stays). */
  reset(): void {
    this.protocol = 2;
    this.name = null;
    this.authenticated = !this.passwordSet;
    this.consistency = this.defaultConsistency;
    this.lastWriteTxid = 0;
    this.observedTxid = 0;
    this.tx.clear();
    this.untoldWrite = false;
    this.replyOff = false;
    this.skipNext = false;
  }

  /** One line of CLIENT LIST / CLIENT INFO, in Redis's field order (the fields the door has). */
  infoLine(nowMs: number, inFlight: number): string {
    const age = Math.floor((nowMs - this.createdMs) / 1000);
    const idle = Math.floor((nowMs - this.lastActiveMs) / 1000);
    const fields = [
      `id=${this.id}`,
      `addr=${this.addr}`,
      `laddr=${this.localAddr}`,
      `name=${this.name ?? ""}`,
      `age=${age}`,
      `idle=${idle}`,
      `flags=${this.pubsub.total > 0 ? "P" : "N"}`,
      "db=0",
      `sub=${this.pubsub.channels.size}`,
      `psub=${this.pubsub.patterns.size}`,
      `ssub=${this.pubsub.shards.size}`,
      `multi=${this.tx.queueing ? this.tx.queued : -1}`,
      `watch=${this.tx.watchedKeys}`,
      `cmd=${this.lastCommand}`,
      "user=default",
      `resp=${this.protocol}`,
      `lib-name=${this.libName}`,
      `lib-ver=${this.libVersion}`,
      `qjm-inflight=${inFlight}`,
    ];
    return fields.join(" ");
  }
}

/** Redis's rule for client names (CLIENT SETNAME, HELLO SETNAME): printable, no spaces. */
export function validClientName(name: string): boolean {
  return /^[\x21-\x7e]*$/.test(name);
}
