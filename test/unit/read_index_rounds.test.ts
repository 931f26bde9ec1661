import test from "ava";
import { ReadIndexRounds, type ReadIndexResult } from "../../src/frontdoor/read_index_rounds.js";

/** A master whose answers the test releases one by one. */
function fakeMaster() {
  const pending: ((r: ReadIndexResult) => void)[] = [];
  const rounds = new ReadIndexRounds(() => new Promise((resolve) => pending.push(resolve)));
  return { rounds, pending };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test("read index rounds - a read while none is on its way sends at once; the reads that arrive meanwhile share the next request, sent after it came back", async (t) => {
  const m = fakeMaster();
  const first = m.rounds.get();
  t.is(m.pending.length, 1);
  const later = [m.rounds.get(), m.rounds.get(), m.rounds.get()];
  await settle();
  t.is(m.pending.length, 1, "no request for reads that arrived while one is on its way");
  m.pending[0]({ ok: true, txid: 10 });
  t.deepEqual(await first, { ok: true, txid: 10 });
  await settle();
  t.is(m.pending.length, 2, "one request for the three, once the first came back");
  m.pending[1]({ ok: true, txid: 12 });
  t.deepEqual(await Promise.all(later), Array(3).fill({ ok: true, txid: 12 }), "never the answer of a request sent before they arrived");
  await settle();
  const last = m.rounds.get();
  t.is(m.pending.length, 3, "idle again: the next read sends at once");
  m.pending[2]({ ok: false, why: "NOT_WRITER" });
  t.deepEqual(await last, { ok: false, why: "NOT_WRITER" });
});

test("read index rounds - a failed round does not stall the next", async (t) => {
  const m = fakeMaster();
  const a = m.rounds.get();
  const b = m.rounds.get();
  m.pending[0]({ ok: false, why: "timeout" });
  t.deepEqual(await a, { ok: false, why: "timeout" });
  await settle();
  t.is(m.pending.length, 2);
  m.pending[1]({ ok: true, txid: 3 });
  t.deepEqual(await b, { ok: true, txid: 3 });
});
