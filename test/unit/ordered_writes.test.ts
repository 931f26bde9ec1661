/**
 * The ordered group of writes (src/client/ordered_writes.ts): pipelined on the happy path, and across a retryable
 * failure the unanswered writes go again together, in request order, only once every attempt in flight settled;
 * writes added meanwhile wait for that resend (review finding A: 720 inversions in a pipelined RPUSH over failovers).
 */
import test from "ava";
import { OrderedWrites, type AttemptOutcome, type OrderedFailure, type WriteBody } from "../../src/client/ordered_writes.js";
import { ErrorCode } from "../../src/protocol/errors.js";

interface Sent {
  seq: number;
  after: number | undefined;
  settle: (o: AttemptOutcome<string>) => void;
}

function harness(opts: { pauseMs?: number; retryForMs?: number } = {}) {
  const sent: Sent[] = [];
  let seq = 0;
  let now = 0;
  let closed = false;
  const sleeps: (() => void)[] = [];
  const group = new OrderedWrites<string>({
    nextId: () => ({ client: "c", seq: ++seq }),
    attempt: (body: WriteBody) => new Promise((resolve) => sent.push({ seq: body.id.seq, after: body.id.after, settle: resolve })),
    pauseMs: () => opts.pauseMs ?? 10,
    sleep: () => new Promise((resolve) => sleeps.push(resolve)),
    now: () => now,
    retryForMs: opts.retryForMs ?? 1000,
    closed: () => closed,
  });
  const answers: string[] = [];
  const write = (name: string) =>
    group.write([name]).then(
      (r) => answers.push(`${name}:${r.result}#${r.attempts}`),
      (f: OrderedFailure) => answers.push(`${name}:${f.code}${f.outcomeUnknown ? "?" : ""}#${f.attempts}`),
    );
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  const take = () => sent.splice(0).map((s) => s);
  return { group, sent, write, answers, tick, take, sleeps, advance: (ms: number) => (now += ms), close: () => (closed = true) };
}

const ok = (v: string): AttemptOutcome<string> => ({ ok: true, result: v });
const fail = (code: ErrorCode, newMaster = false): AttemptOutcome<string> => ({ ok: false, code, message: code, newMaster });

test("happy path: every write is sent at once (pipelined), answered as each comes", async (t) => {
  const h = harness();
  for (const w of ["a", "b", "c"]) void h.write(w);
  const round = h.take();
  t.deepEqual(round.map((s) => s.seq), [1, 2, 3]);
  round[2].settle(ok("C"));
  round[0].settle(ok("A"));
  round[1].settle(ok("B"));
  await h.tick();
  t.deepEqual(h.answers, ["c:C#1", "a:A#1", "b:B#1"]);
  t.is(h.group.size, 0);
});

test("a retryable failure: the group waits for every attempt in flight, then resends the unanswered ones together, in order", async (t) => {
  const h = harness();
  for (const w of ["a", "b", "c", "d"]) void h.write(w);
  const first = h.take();
  first[0].settle(ok("A"));
  first[2].settle(fail(ErrorCode.NO_QUORUM));
  await h.tick();
  // b and d still in flight: nothing is resent yet, and a new write waits.
  void h.write("e");
  await h.tick();
  t.deepEqual(h.sent, [], "nothing sent while the group's attempts are in flight");
  first[3].settle(fail(ErrorCode.TIMEOUT));
  await h.tick();
  t.deepEqual(h.sent, []);
  first[1].settle(fail(ErrorCode.OVERLOADED));
  await h.tick();
  t.is(h.sleeps.length, 1, "one pause for the group");
  t.deepEqual(h.sent, []);
  h.sleeps[0]();
  await h.tick();
  const again = h.take();
  t.deepEqual(again.map((s) => s.seq), [2, 3, 4, 5], "b c d, then e, in request order with their ids");
  for (const [i, s] of again.entries()) s.settle(ok(`v${i}`));
  await h.tick();
  t.deepEqual(h.answers, ["a:A#1", "b:v0#2", "c:v1#2", "d:v2#2", "e:v3#1"]);
});

test("a new master elected: the group is resent at once, without a pause", async (t) => {
  const h = harness();
  for (const w of ["a", "b"]) void h.write(w);
  const first = h.take();
  first[1].settle(fail(ErrorCode.TIMEOUT, true));
  first[0].settle(fail(ErrorCode.TIMEOUT, true));
  await h.tick();
  t.is(h.sleeps.length, 0);
  t.deepEqual(h.take().map((s) => s.seq), [1, 2]);
});

test("a definite failure answers that write only; past the deadline a write fails with its last failure, outcome unknown", async (t) => {
  const h = harness({ retryForMs: 100 });
  for (const w of ["a", "b", "c"]) void h.write(w);
  const first = h.take();
  first[0].settle(fail(ErrorCode.REDIS_ERROR));
  first[1].settle(fail(ErrorCode.NO_QUORUM));
  first[2].settle(fail(ErrorCode.NOT_WRITER));
  await h.tick();
  h.advance(150);
  h.sleeps[0]();
  await h.tick();
  t.deepEqual(h.answers, ["a:REDIS_ERROR#1", "b:NO_QUORUM?#1", "c:NOT_WRITER#1"]);
  t.deepEqual(h.sent, []);
});

test("a write whose outcome an earlier attempt left unknown and that fails NOT_WRITER in the end: its failure keeps the earlier attempt's why (and txid)", async (t) => {
  const h = harness({ retryForMs: 100 });
  let failure: OrderedFailure | undefined;
  void h.group.write(["INCR", "k"]).catch((f: OrderedFailure) => (failure = f));
  h.take()[0].settle({ ok: false, code: ErrorCode.NO_QUORUM, message: "outcome unknown: txid 42 journaled, not confirmed by a majority of journal nodes: fenced by jn1" });
  await h.tick();
  h.sleeps[0]();
  await h.tick();
  h.advance(150);
  h.take()[0].settle({ ok: false, code: ErrorCode.NOT_WRITER, message: "master is stopping" });
  await h.tick();
  h.sleeps[1]();
  await h.tick();
  t.is(failure?.code, ErrorCode.NOT_WRITER);
  t.true(failure?.outcomeUnknown);
  t.is(failure?.message, "master is stopping; an earlier attempt: NO_QUORUM outcome unknown: txid 42 journaled, not confirmed by a majority of journal nodes: fenced by jn1");
});

test("closed while retrying: the unanswered writes fail CLOSED, none is sent again", async (t) => {
  const h = harness();
  void h.write("a");
  h.take()[0].settle(fail(ErrorCode.TIMEOUT));
  await h.tick();
  h.close();
  h.sleeps[0]();
  await h.tick();
  t.deepEqual(h.answers, ["a:CLOSED?#1"]);
  t.deepEqual(h.sent, []);
  void h.write("b");
  await h.tick();
  t.deepEqual(h.answers, ["a:CLOSED?#1", "b:CLOSED#0"]);
});

test("each attempt names the group's unanswered write just before it (id.after), so the master never runs it first", async (t) => {
  const h = harness();
  for (const w of ["a", "b", "c"]) void h.write(w);
  const round = h.take();
  t.deepEqual(round.map((s) => [s.seq, s.after]), [[1, undefined], [2, 1], [3, 2]]);
  // b answered, a not yet: d names c (sent last); once c is answered too, e names d.
  round[1].settle(ok("B"));
  await h.tick();
  void h.write("d");
  const d = h.take();
  t.deepEqual(d.map((s) => [s.seq, s.after]), [[4, 3]]);
  round[2].settle(ok("C"));
  await h.tick();
  void h.write("e");
  const e = h.take();
  t.deepEqual(e.map((s) => [s.seq, s.after]), [[5, 4]]);
  // a, d and e refused: the resend goes in request order, each naming the one before it; the first names none.
  round[0].settle(fail(ErrorCode.OVERLOADED));
  d[0].settle(fail(ErrorCode.OVERLOADED));
  e[0].settle(fail(ErrorCode.OVERLOADED));
  await h.tick();
  h.sleeps.splice(0).forEach((wake) => wake());
  await h.tick();
  t.deepEqual(h.take().map((s) => [s.seq, s.after]), [[1, undefined], [4, 1], [5, 4]]);
});

test("past its deadline, a write whose last attempt an election cut short goes again to the new master; it fails once an attempt ends on its own", async (t) => {
  const h = harness({ retryForMs: 100 });
  for (const w of ["a", "b"]) void h.write(w);
  const first = h.take();
  h.advance(150);
  // The attempts' copies may still be on their way to the old master: given up now, a's could run after b's resend.
  first[0].settle(fail(ErrorCode.TIMEOUT, true));
  first[1].settle(fail(ErrorCode.TIMEOUT, true));
  await h.tick();
  const overtime = h.take();
  t.deepEqual(overtime.map((s) => [s.seq, s.after]), [[1, undefined], [2, 1]], "both again, in order, at once");
  t.deepEqual(h.answers, []);
  overtime[0].settle(ok("A"));
  overtime[1].settle(fail(ErrorCode.TIMEOUT, true));
  await h.tick();
  const again = h.take();
  t.deepEqual(again.map((s) => s.seq), [2], "b cut short by another election: again");
  again[0].settle(fail(ErrorCode.TIMEOUT));
  await h.tick();
  h.sleeps.splice(0).forEach((wake) => wake());
  await h.tick();
  t.deepEqual(h.take(), [], "b's attempt timed out in full: its last");
  t.deepEqual(h.answers, ["a:A#2", "b:TIMEOUT?#3"]);
});

test("a write cut short by 'new master' signals without end is given up once twice its retry time passed (outcome unknown)", async (t) => {
  // client.ts raises the same signal on its own NATS reconnect and on a master's masterReconnected: a flapping link
  // cut every attempt short, and the write (and every write of its connection behind it) was retried without end.
  const h = harness({ retryForMs: 100 });
  void h.write("a");
  let rounds = 0;
  for (; rounds < 50 && h.answers.length === 0; rounds++) {
    const sent = h.take();
    if (sent.length === 0) break;
    h.advance(30);
    sent[0].settle(fail(ErrorCode.TIMEOUT, true));
    await h.tick();
  }
  t.deepEqual(h.answers, ["a:TIMEOUT?#7"], `given up after ${rounds} attempts`);
});
