/**
 * Message fragmentation, pure: a body larger than one NATS message travels as numbered fragments on the same
 * subject and is put back together by the receiver. The bus (bus.ts) is the only user; cores never see fragments.
 *
 * A request fragment carries the header `Qjm-Frag: <stream> <index> <count> <totalBytes>`; fragments 0..count-2 are
 * answered with a small ack, the last one with the handler's reply. A reply too large for one message is kept in the
 * replier's outbox: the first fragment answers the request (same header), the requester pulls the others with
 * `Qjm-Pull: <stream> <index>` requests on the same subject. Both sides bound their memory in bytes and streams and
 * forget a stream that stays idle; a forged or broken stream is refused with a typed error, never a crash.
 */
import { ErrorCode, QjmError } from "../protocol/errors.js";

export const FRAG_HEADER = "Qjm-Frag";
export const PULL_HEADER = "Qjm-Pull";
/** Bytes kept free in each NATS message for the protocol line and the fragment headers. */
export const FRAGMENT_HEADROOM_BYTES = 1024;

export interface FragmentLimits {
  /** Largest body put back together (request or reply). */
  busMessageBytesMax: number;
  /** Bytes of unfinished streams (reassembly) or unpulled replies (outbox) a subscription holds at most. */
  busReassemblyBytesMax: number;
  /** Unfinished streams (or unpulled replies) a subscription holds at most. */
  busReassemblyStreamsMax: number;
  /** A stream with no fragment (or pull) for this long is forgotten. */
  busFragmentIdleMs: number;
}

export interface FragmentHeader {
  stream: string;
  index: number;
  count: number;
  total: number;
}

/** Bytes of body one fragment carries under nats-server's `max_payload`. */
export function fragmentBytes(maxPayload: number): number {
  return Math.max(1, maxPayload - FRAGMENT_HEADROOM_BYTES);
}

/** `body` in consecutive slices of at most `size` bytes (views, no copies). */
export function splitBody(body: Uint8Array, size: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += size) parts.push(body.subarray(at, Math.min(body.length, at + size)));
  return parts.length > 0 ? parts : [body];
}

export function formatFragHeader(h: FragmentHeader): string {
  return `${h.stream} ${h.index} ${h.count} ${h.total}`;
}

const STREAM = /^[A-Za-z0-9_-]{1,64}$/;

function uintToken(s: string | undefined): number | null {
  if (s === undefined || !/^\d{1,15}$/.test(s)) return null;
  return Number(s);
}

/** A fragment header, checked (the values come from any NATS client): a BAD_REQUEST QjmError if malformed. */
export function parseFragHeader(value: string): FragmentHeader {
  const [stream, ...rest] = value.trim().split(" ");
  const [index, count, total] = rest.map(uintToken);
  if (rest.length !== 3 || !STREAM.test(stream ?? "") || index === null || count === null || total === null) {
    throw new QjmError(ErrorCode.BAD_REQUEST, `malformed fragment header "${value.slice(0, 100)}"`);
  }
  if (count < 2 || index >= count || total < count) throw new QjmError(ErrorCode.BAD_REQUEST, `fragment ${index} of ${count} (${total} bytes) is inconsistent`);
  return { stream, index, count, total };
}

/** A pull header `<stream> <index>`, checked. */
export function parsePullHeader(value: string): { stream: string; index: number } {
  const [stream, raw, ...extra] = value.trim().split(" ");
  const index = uintToken(raw);
  if (extra.length > 0 || !STREAM.test(stream ?? "") || index === null || index < 1) {
    throw new QjmError(ErrorCode.BAD_REQUEST, `malformed pull header "${value.slice(0, 100)}"`);
  }
  return { stream, index };
}

interface Partial_ {
  parts: Uint8Array[];
  received: number;
  next: number;
  count: number;
  total: number;
  lastMs: number;
}

/**
 * Puts request bodies back together. Fragments of a stream must come in order (NATS keeps one publisher's order on
 * one subscription); a stream's whole size is reserved at its first fragment, so the bounds hold however the
 * fragments come.
 */
export class Reassembler {
  private readonly streams = new Map<string, Partial_>();
  private reserved = 0;

  constructor(private readonly limits: FragmentLimits) {}

  get streamCount(): number {
    return this.streams.size;
  }
  get reservedBytes(): number {
    return this.reserved;
  }

  /** One fragment: the whole body once the last one came, else null. Throws a QjmError (the stream is dropped). */
  add(h: FragmentHeader, data: Uint8Array, nowMs: number): Uint8Array | null {
    this.expire(nowMs);
    let s = this.streams.get(h.stream);
    if (h.index === 0) {
      if (s !== undefined) this.drop(h.stream);
      s = this.open(h, nowMs);
    } else if (s === undefined) {
      throw new QjmError(ErrorCode.BAD_REQUEST, `fragment ${h.index} of unknown or expired stream ${h.stream}`);
    }
    if (h.index !== s.next || h.count !== s.count || h.total !== s.total || s.received + data.length > s.total) {
      this.drop(h.stream);
      throw new QjmError(ErrorCode.BAD_REQUEST, `fragment ${h.index}/${h.count} (${data.length} bytes) does not continue stream ${h.stream} at ${s.next}/${s.count}`);
    }
    // Copies: the NATS client may reuse the message's buffer.
    s.parts.push(Buffer.from(data));
    s.received += data.length;
    s.next++;
    s.lastMs = nowMs;
    if (s.next < s.count) return null;
    this.drop(h.stream);
    if (s.received !== s.total) throw new QjmError(ErrorCode.BAD_REQUEST, `stream ${h.stream} has ${s.received} bytes, its header said ${s.total}`);
    return Buffer.concat(s.parts, s.total);
  }

  private open(h: FragmentHeader, nowMs: number): Partial_ {
    const l = this.limits;
    if (h.total > l.busMessageBytesMax) throw new QjmError(ErrorCode.PAYLOAD_TOO_LARGE, `message of ${h.total} bytes exceeds busMessageBytesMax ${l.busMessageBytesMax}`);
    if (this.streams.size >= l.busReassemblyStreamsMax) throw new QjmError(ErrorCode.OVERLOADED, `${this.streams.size} fragmented messages already being received`);
    if (this.reserved + h.total > l.busReassemblyBytesMax) throw new QjmError(ErrorCode.OVERLOADED, `${this.reserved} bytes of fragmented messages already being received, busReassemblyBytesMax ${l.busReassemblyBytesMax}`);
    const s: Partial_ = { parts: [], received: 0, next: 0, count: h.count, total: h.total, lastMs: nowMs };
    this.streams.set(h.stream, s);
    this.reserved += h.total;
    return s;
  }

  private drop(stream: string): void {
    const s = this.streams.get(stream);
    if (s === undefined) return;
    this.streams.delete(stream);
    this.reserved -= s.total;
  }

  /** Forgets streams idle for busFragmentIdleMs (a sender that died or gave up). */
  expire(nowMs: number): void {
    for (const [id, s] of this.streams) if (nowMs - s.lastMs > this.limits.busFragmentIdleMs) this.drop(id);
  }
}

interface Outgoing {
  parts: Uint8Array[];
  total: number;
  lastMs: number;
}

/** Replies too large for one message, waiting for their requester to pull the fragments after the first. */
export class ReplyOutbox {
  private readonly replies = new Map<string, Outgoing>();
  private bytes = 0;

  constructor(private readonly limits: FragmentLimits) {}

  get size(): number {
    return this.replies.size;
  }
  get heldBytes(): number {
    return this.bytes;
  }

  /** Keeps `body` for pulls; returns the first fragment and its header. Throws OVERLOADED / PAYLOAD_TOO_LARGE. */
  put(stream: string, body: Uint8Array, fragment: number, nowMs: number): { header: FragmentHeader; data: Uint8Array } {
    this.expire(nowMs);
    const l = this.limits;
    if (body.length > l.busMessageBytesMax) throw new QjmError(ErrorCode.PAYLOAD_TOO_LARGE, `reply of ${body.length} bytes exceeds busMessageBytesMax ${l.busMessageBytesMax}`);
    if (this.replies.size >= l.busReassemblyStreamsMax || this.bytes + body.length > l.busReassemblyBytesMax) {
      throw new QjmError(ErrorCode.OVERLOADED, `${this.replies.size} large replies (${this.bytes} bytes) wait to be pulled`);
    }
    const parts = splitBody(body, fragment);
    this.replies.set(stream, { parts, total: body.length, lastMs: nowMs });
    this.bytes += body.length;
    return { header: { stream, index: 0, count: parts.length, total: body.length }, data: parts[0] };
  }

  /** Fragment `index` of a kept reply; the reply is forgotten once its last fragment is pulled. */
  pull(stream: string, index: number, nowMs: number): { header: FragmentHeader; data: Uint8Array } {
    this.expire(nowMs);
    const r = this.replies.get(stream);
    if (r === undefined || index >= r.parts.length) throw new QjmError(ErrorCode.NOT_FOUND, `no reply fragment ${index} of stream ${stream} (pulled already, expired or never sent)`);
    r.lastMs = nowMs;
    if (index === r.parts.length - 1) this.forget(stream);
    return { header: { stream, index, count: r.parts.length, total: r.total }, data: r.parts[index] };
  }

  private forget(stream: string): void {
    const r = this.replies.get(stream);
    if (r === undefined) return;
    this.replies.delete(stream);
    this.bytes -= r.total;
  }

  expire(nowMs: number): void {
    for (const [id, r] of this.replies) if (nowMs - r.lastMs > this.limits.busFragmentIdleMs) this.forget(id);
  }
}
