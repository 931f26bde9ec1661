/**
 * What the front door knows of one client connection (pure, small: 10,000 idle connections hold little): its id,
 * protocol, name, whether it authenticated, and what CLIENT INFO / CLIENT LIST print for it.
 */
import type { Protocol } from "./resp_encoder.js";

export class ConnectionState {
  protocol: Protocol = 2;
  name: string | null = null;
  authenticated: boolean;
  libName = "";
  libVersion = "";
  lastCommand = "NULL";
  lastActiveMs: number;

  constructor(
    readonly id: number,
    readonly addr: string,
    readonly localAddr: string,
    readonly createdMs: number,
    /** The door has a password: the connection must AUTH (or HELLO … AUTH) first. */
    private readonly passwordSet: boolean,
  ) {
    this.authenticated = !passwordSet;
    this.lastActiveMs = createdMs;
  }

  /** RESET: back to a fresh connection's state (the id stays). */
  reset(): void {
    this.protocol = 2;
    this.name = null;
    this.authenticated = !this.passwordSet;
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
      "flags=N",
      "db=0",
      "sub=0",
      "psub=0",
      "multi=-1",
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
