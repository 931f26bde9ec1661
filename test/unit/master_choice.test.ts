/** Which master a client sends its next write to (client/master_choice.ts): pure. */
import test from "ava";
import { MasterChoice } from "../../src/client/master_choice.js";

const serving = (id: string, epoch: number) => ({ id, epoch, serving: true });

test("master choice - the queue group until a master serving is heard; its first report is news, later ones are not", (t) => {
  const c = new MasterChoice();
  t.is(c.target(), null);
  t.true(c.heard(serving("d1", 3)));
  t.is(c.target(), "d1");
  t.false(c.heard(serving("d1", 3)), "the same master again: nothing to resend");
  t.is(c.epoch, 3);
});

test("master choice - a higher epoch wins; a lower one never counts (a deposed master that resumes), nor another id in the same epoch", (t) => {
  const c = new MasterChoice();
  c.heard(serving("d1", 3));
  t.true(c.heard(serving("d2", 4)), "a new master: resend what waits");
  t.is(c.target(), "d2");
  t.false(c.heard(serving("d1", 3)), "the frozen master, resumed, still says it serves epoch 3");
  t.is(c.target(), "d2");
  t.false(c.heard(serving("d3", 4)), "one writer per epoch");
  t.is(c.target(), "d2");
  t.false(c.heard({ id: "d2", epoch: Number.NaN, serving: true }));
  t.false(c.heard({ id: "d9", epoch: 0, serving: true }));
  t.false(c.heard({ id: "d9", epoch: 2 ** 60, serving: true }), "not a safe integer");
  t.is(c.target(), "d2");
});

test("master choice - a failed attempt to the master sends the next ones to the queue group until it is named again", (t) => {
  const c = new MasterChoice();
  c.heard(serving("d1", 3));
  c.failed("d2");
  t.is(c.target(), "d1", "a failure at another node says nothing of this one");
  c.failed(null);
  t.is(c.target(), "d1", "a failure in the queue group neither");
  c.failed("d1");
  t.is(c.target(), null);
  t.is(c.known, "d1", "still the newest master known (whose events count)");
  t.false(c.heard(serving("d1", 3)), "alive after all: its heartbeat names it again, no news");
  t.is(c.target(), "d1");
});

test("master choice - a higher epoch not serving yet deposes the master known, and is news once it serves", (t) => {
  const c = new MasterChoice();
  c.heard(serving("d1", 3));
  t.false(c.heard({ id: "d2", epoch: 4, serving: false }), "taking over, not serving yet");
  t.is(c.target(), null, "not the deposed d1: the queue group");
  t.true(c.heard(serving("d2", 4)), "serves now: resend what waits");
  t.is(c.target(), "d2");
  t.false(c.heard({ id: "d2", epoch: 4, serving: false }), "stepping down");
  t.is(c.target(), null);
  t.false(c.heard(serving("d2", 4)), "serving in epoch 4 again is no news");
  t.is(c.target(), "d2");
});
