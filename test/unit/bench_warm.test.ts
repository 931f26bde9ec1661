/** The bench's warm writes (bench/harness.ts `warm`), BENCH_WARM_WRITES (bench/settings.ts) and its CPU notes (bench/report.ts). */
import test from "ava";
import { warm, type Target } from "../../bench/harness.js";
import { cpuNotes } from "../../bench/report.js";
import { DEFAULT_WARM_WRITES, ERRORS_MAX, WARM_CLIENTS, benchLagRate, benchWarmWrites } from "../../bench/settings.js";

function countingTarget(fail: (n: number) => boolean): Target & { byClient: Map<number, number>; calls: () => number; peak: () => number } {
  const byClient = new Map<number, number>();
  let calls = 0;
  let inFlight = 0;
  let peak = 0;
  return {
    name: "counting",
    byClient,
    calls: () => calls,
    peak: () => peak,
    setup: async () => {},
    teardown: async () => {},
    async write(c) {
      calls++;
      inFlight++;
      peak = Math.max(peak, inFlight);
      byClient.set(c, (byClient.get(c) ?? 0) + 1);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      if (fail(calls)) throw new Error("refused");
    },
  };
}

test("warm - exactly the asked writes, WARM_CLIENTS at once, spread over the target's clients", async (t) => {
  const target = countingTarget(() => false);
  await warm(target, 1, 1000);
  t.is(target.calls(), 1000);
  t.is(target.peak(), WARM_CLIENTS);
  t.deepEqual([...target.byClient.keys()], [0]);
  const many = countingTarget(() => false);
  await warm(many, 256, 1000);
  t.is(many.calls(), 1000);
  t.is(many.byClient.size, WARM_CLIENTS);
});

test("warm - a few errors pass, a broken target is reported", async (t) => {
  const flaky = countingTarget((n) => n % 10 === 0);
  await t.notThrowsAsync(warm(flaky, 1, 500));
  const broken = countingTarget(() => true);
  await t.throwsAsync(warm(broken, 1, ERRORS_MAX * 10), { message: /errors in the warm writes/ });
  t.true(broken.calls() < ERRORS_MAX + WARM_CLIENTS + 1);
});

test("BENCH_WARM_WRITES - default, 0, and bad values refused", (t) => {
  t.is(benchWarmWrites({}), DEFAULT_WARM_WRITES);
  t.is(benchWarmWrites({ BENCH_WARM_WRITES: "0" }), 0);
  t.is(benchWarmWrites({ BENCH_WARM_WRITES: "5000" }), 5000);
  for (const bad of ["-1", "1.5", "x", "1e400"]) t.throws(() => benchWarmWrites({ BENCH_WARM_WRITES: bad }), { message: /BENCH_WARM_WRITES/ });
});

test("BENCH_LAG_RATE - default 0 (half of each target's peak), a rate, and bad values refused", (t) => {
  t.is(benchLagRate({}), 0);
  t.is(benchLagRate({ BENCH_LAG_RATE: "4500" }), 4500);
  for (const bad of ["-1", "1.5", "x"]) t.throws(() => benchLagRate({ BENCH_LAG_RATE: bad }), { message: /BENCH_LAG_RATE/ });
});

test("cpuNotes - CPU per write as a ratio to the reference, then process by process", (t) => {
  const row = (target: string, cpuMsPerWrite: number, cpuByProcess?: { name: string; msPerWrite: number }[]) =>
    ({ target, clients: 1, seconds: 5, writes: 100, writesPerSec: 20, p50Ms: 1, p99Ms: 2, errors: 0, cpuMsPerWrite, cpuByProcess });
  const notes = cpuNotes([row("ref", 0.5), row("qjm", 2, [{ name: "nats-server", msPerWrite: 0.75 }, { name: "jn1", msPerWrite: 1.25 }])], "ref");
  t.deepEqual(notes, ["CPU per acked write, qjm ×1: 2.000 ms = 4.0× ref's 0.500; by process (each with what it started): nats-server 0.750, jn1 1.250"]);
});
