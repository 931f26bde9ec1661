/** The front door's read gate (src/frontdoor/read_gate.ts): which states of a data node may serve reads (finding B). */
import test from "ava";
import { readRefusal, type ReadView } from "../../src/frontdoor/read_gate.js";

const replica = (r: Partial<NonNullable<ReadView["replica"]>> = {}): ReadView => ({ phase: "replica", master: false, replica: { ready: true, catchUpTo: 10, appliedTxid: 10, ...r } });

test("a serving master and a caught-up replica serve reads (also while it campaigns)", (t) => {
  t.is(readRefusal({ phase: "serving", master: true, replica: null }), null);
  t.is(readRefusal(replica()), null);
  t.is(readRefusal(replica({ appliedTxid: 12 })), null);
  t.is(readRefusal({ ...replica(), phase: "campaigning" }), null);
});

test("a replica refuses until it applied the commit index it first heard (a wiped or rebuilt Redis)", (t) => {
  t.regex(readRefusal(replica({ catchUpTo: null, appliedTxid: 0 })) ?? "", /^LOADING qjm: .*not yet heard from the journal/);
  t.regex(readRefusal(replica({ catchUpTo: 10, appliedTxid: 9 })) ?? "", /^LOADING qjm: .*catching up \(applied txid 9 of 10\)/);
  t.regex(readRefusal(replica({ ready: false })) ?? "", /^LOADING qjm: .*snapshot/);
  t.regex(readRefusal({ phase: "replica", master: false, replica: null }) ?? "", /^LOADING qjm: .*starting/);
});

test("every role change refuses reads: releasing, taking over, ending, rejoining; serving without a master role", (t) => {
  for (const phase of ["releasing", "takingOver", "ending", "rejoining"] as const) {
    t.regex(readRefusal({ phase, master: phase === "takingOver", replica: null }) ?? "", new RegExp(`^LOADING qjm: .*changing role \\(${phase}\\)`));
  }
  t.regex(readRefusal({ phase: "serving", master: false, replica: null }) ?? "", /^LOADING/);
});
