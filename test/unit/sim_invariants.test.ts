/**
 * The simulator's invariants (src/sim/invariants.ts) on their own: exactly once for retried writes and one master per
 * epoch (issue #11), and a committed record kept apart from the simulated disk it was read from.
 */
import test from "ava";
import { Invariants, SimViolation } from "../../src/sim/invariants.js";
import { encodeEffects, encodeWriteRecord } from "../../src/segment/record.js";

const effects = [[Buffer.from("INCR"), Buffer.from("k")]];
const withId = (seq: number): Uint8Array => encodeWriteRecord(effects, { id: { client: "c1", seq }, reply: { ok: true, value: seq } }, 256).payload;

test("sim invariants - one write id committed under two txids is a retry applied twice", (t) => {
  const inv = new Invariants();
  inv.learnCommitted(1, 1, withId(5), "a commit");
  inv.learnCommitted(1, 1, withId(5), "a rebuild"); // the same txid learnt again is no duplicate
  inv.learnCommitted(2, 1, encodeEffects(effects), "a commit"); // a record without an id
  const err = t.throws(() => inv.learnCommitted(3, 2, withId(5), "m2's commit"), { instanceOf: SimViolation });
  t.regex(err!.message, /write c1#5 applied twice: committed at txid 1 and at txid 3/);
});

test("sim invariants - an ack, a duplicate's included, must name the committed record holding the write's id", (t) => {
  const inv = new Invariants();
  inv.learnCommitted(1, 1, withId(5), "a commit");
  inv.learnCommitted(2, 1, withId(6), "a commit");
  inv.learnCommitted(3, 1, encodeEffects(effects), "a commit");
  t.notThrows(() => inv.ackedWrite({ client: "c1", seq: 5 }, 1, false));
  t.notThrows(() => inv.ackedWrite({ client: "c1", seq: 5 }, 1, true));
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 5 }, 2, true), { instanceOf: SimViolation, message: /acked as a duplicate at txid 2, whose committed record holds write c1#6/ });
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 5 }, 3, true), { instanceOf: SimViolation, message: /holds no write id/ });
  t.throws(() => inv.ackedWrite({ client: "c1", seq: 7 }, 4, false), { instanceOf: SimViolation, message: /not committed/ });
});

/**
 * Seed 22 with faults aimed at recovery copies (sim.test.ts): txid 1 was first learnt from jn1's finalized segment, a
 * view of jn1's simulated file; a bit later flipped there changed the "committed" record too, and the disk check then
 * found no node holding it intact (jn2 held it intact all along).
 */
test("sim invariants - a committed record learnt from a disk's bytes does not change when those bytes do", (t) => {
  const inv = new Invariants();
  const file = Buffer.from(withId(5));
  inv.learnCommitted(1, 2, file.subarray(0), "jn1's finalized segment");
  file[3] ^= 1 << 3; // the bit flip on jn1
  t.notThrows(() => inv.learnCommitted(1, 2, withId(5), "jn2's finalized segment"));
});

/** One master per epoch (issue #11): a node serves, and acks, only in the epoch its own recovery established. */
test("sim invariants - a writer serves and acks only in an epoch it won", (t) => {
  const inv = new Invariants();
  inv.writerEstablished(2, "d1#1", 0);
  t.notThrows(() => inv.writerServes(2, "d1#1"));
  t.throws(() => inv.writerServes(3, "d2#1"), { instanceOf: SimViolation, message: "d2#1 serves epoch 3, which nobody won" });
  t.throws(() => inv.writerServes(2, "d2#4"), { instanceOf: SimViolation, message: "d2#4 serves epoch 2, which d1#1 won" });
  inv.learnCommitted(1, 2, withId(5), "a commit");
  t.notThrows(() => inv.acked(1, 2, withId(5), "d1#1"));
  t.throws(() => inv.acked(1, 2, withId(5), "d2#4"), { instanceOf: SimViolation, message: /d2#4 acked txid 1 in epoch 2, which d1#1 won/ });
});
