// Repro (review s23): a write past its retry deadline is never given up while each attempt is cut short by a
// "new master" signal — which client.ts also raises on its own NATS reconnect and on a master's masterReconnected
// event, not only on an election. retryForMs 1 s; every attempt is cut short 200 ms after it is sent.
import { OrderedWritesCore } from "../dist/src/client/ordered_writes.js";
let now = 0;
const timers = [];
let seq = 0;
let attempts = 0;
const core = new OrderedWritesCore({
  nextId: () => ({ client: "c", seq: ++seq }),
  pauseMs: () => 50,
  now: () => now,
  retryForMs: 1000,
  closed: () => false,
  sleep: (ms, then) => timers.push({ at: now + ms, then }),
  attempt: (_body, settle) => {
    attempts++;
    timers.push({ at: now + 200, then: () => settle({ ok: false, code: "TIMEOUT", message: "a new master was elected", newMaster: true }) });
  },
});
let outcome = "pending";
core.write(["SET", "k", "v"], { resolve: () => (outcome = "answered"), reject: (f) => (outcome = `failed ${f.code}`) });
while (timers.length > 0 && now < 600_000 && outcome === "pending") {
  timers.sort((a, b) => a.at - b.at);
  const t = timers.shift();
  now = t.at;
  t.then();
}
console.log(`after ${now / 1000} s (retryForMs 1 s): outcome ${outcome}, ${attempts} attempts`);
process.exit(outcome === "pending" ? 1 : 0);
