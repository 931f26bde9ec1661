/**
 * Expiry and large-value load for fault tests, beside the linearizability load: keys whose TTL is short, then
 * extended, dropped (PERSIST, GETEX PERSIST) or renewed (GETEX PX), lists moved out of keys that expire, APPENDs,
 * and values up to `bigValueBytesMax`. What it checks is not linearizability but that every copy (the master's
 * Redis after its rebuilds, each replica, a freshly bootstrapped replica) ends with the same keyspace, TTLs included:
 * replaying an effect late must be the same as applying it live.
 *
 * Short TTLs are at most SHORT_TTL_MS_MAX, long ones at least LONG_TTL_MS_MIN, so once the load has stopped for
 * SETTLE_MS no key is about to expire while the copies are compared.
 */
import type { TestCluster } from "./harness.js";
import { History, type WriteArg } from "./history.js";
import { prng } from "./prng.js";

export const SHORT_TTL_MS_MAX = 1500;
export const LONG_TTL_MS_MIN = 10 * 60 * 1000;
/** Wait this long after stop() before comparing copies: every short TTL has passed by then. */
export const SETTLE_MS = SHORT_TTL_MS_MAX + 1000;

export interface TtlLoadOptions {
  clients: number;
  seed: number;
  timeoutMs: number;
  /** Largest value written (bytes); 0: no large values. */
  bigValueBytesMax: number;
}

export interface TtlLoad {
  done(): number;
  readonly history: History;
  stop(): Promise<void>;
}

/** One operation's arguments, chosen by `random`; key families never share a key, so no WRONGTYPE. */
export function ttlArgs(random: () => number, c: number, i: number, bigValueBytesMax: number): WriteArg[] {
  const pick = (n: number): number => Math.floor(random() * n);
  const key = `ttl${pick(8)}`;
  const shortMs = String(200 + pick(SHORT_TTL_MS_MAX - 200));
  const longMs = String(LONG_TTL_MS_MIN + pick(600_000));
  const value = `v${c}.${i}`;
  const r = random();
  if (r < 0.2) return ["SET", key, value, "PX", shortMs];
  if (r < 0.3) return ["SET", key, value, "EX", String(LONG_TTL_MS_MIN / 1000 + pick(600))];
  if (r < 0.45) return ["PEXPIRE", key, longMs];
  if (r < 0.5) return ["PERSIST", key];
  if (r < 0.55) return ["GETEX", key, "PX", random() < 0.5 ? shortMs : longMs];
  if (r < 0.6) return ["GETEX", key, "PERSIST"];
  if (r < 0.65) return ["APPEND", key, "x"];
  const from = pick(4);
  const to = (from + 1 + pick(3)) % 4;
  if (r < 0.75) return ["RPUSH", `list${from}`, value];
  if (r < 0.8) return ["PEXPIRE", `list${from}`, random() < 0.5 ? shortMs : longMs];
  if (r < 0.9) return ["LMOVE", `list${from}`, `list${to}`, random() < 0.5 ? "LEFT" : "RIGHT", "RIGHT"];
  if (bigValueBytesMax <= 0) return ["SET", key, value];
  const bytes = 1 + pick(bigValueBytesMax);
  // Seeded content, so a value's corruption anywhere in it shows in the comparison.
  const big = Buffer.alloc(bytes, (c * 31 + i) % 251);
  return ["SET", `big${pick(3)}`, big, "PX", random() < 0.3 ? shortMs : longMs];
}

/** `clients` closed-loop clients until stop(), every operation recorded in its own History. */
export function startTtlLoad(tc: TestCluster, options: TtlLoadOptions): TtlLoad {
  const history = new History();
  let running = true;
  let done = 0;
  const finished = Promise.all(
    Array.from({ length: options.clients }, async (_, c) => {
      const random = prng(options.seed * 7919 + c);
      for (let i = 0; running; i++) {
        const op = await history.run(1000 + c, ttlArgs(random, c, i, options.bigValueBytesMax), (args) => tc.write(args, options.timeoutMs));
        done++;
        if (op.status === "unknown" && running) await new Promise((r) => setTimeout(r, 100));
      }
    }),
  );
  return {
    done: () => done,
    history,
    async stop() {
      running = false;
      await finished;
    },
  };
}
