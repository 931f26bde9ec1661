/** When the writer rolls its segment (HDFS rollEdits): past a size, a record count or an age, never while empty. */
import test from "ava";
import { rollDue, type RollLimits } from "../../src/master/segment_roll.js";

const limits: RollLimits = { segmentMaxBytes: 1000, segmentMaxRecords: 100, segmentMaxAgeMs: 60_000 };

test("segment roll - a segment under every limit is not rolled", (t) => {
  t.is(rollDue({ bytes: 999, records: 99, ageMs: 59_999 }, limits), null);
  t.is(rollDue({ bytes: 1, records: 1, ageMs: 0 }, limits), null);
});

test("segment roll - a segment at or past its size is rolled, and the reason says so", (t) => {
  t.is(rollDue({ bytes: 1000, records: 5, ageMs: 0 }, limits), "1000 bytes");
  t.is(rollDue({ bytes: 5000, records: 5, ageMs: 0 }, limits), "5000 bytes");
});

test("segment roll - a segment at or past its record count is rolled", (t) => {
  t.is(rollDue({ bytes: 10, records: 100, ageMs: 0 }, limits), "100 records");
  t.is(rollDue({ bytes: 10, records: 250, ageMs: 0 }, limits), "250 records");
});

test("segment roll - a segment open at least its age is rolled", (t) => {
  t.is(rollDue({ bytes: 10, records: 1, ageMs: 60_000 }, limits), "open 60000 ms");
  t.is(rollDue({ bytes: 10, records: 1, ageMs: 3_600_000 }, limits), "open 3600000 ms");
});

test("segment roll - an empty segment is never rolled, whatever its age", (t) => {
  t.is(rollDue({ bytes: 0, records: 0, ageMs: 3_600_000 }, limits), null);
  // Even with limits at their smallest: rolling an empty segment would only make empty files.
  t.is(rollDue({ bytes: 0, records: 0, ageMs: 1 }, { segmentMaxBytes: 0, segmentMaxRecords: 0, segmentMaxAgeMs: 0 }), null);
});

test("segment roll - with several limits passed, one reason is given", (t) => {
  const reason = rollDue({ bytes: 2000, records: 200, ageMs: 120_000 }, limits);
  t.true(reason === "2000 bytes" || reason === "200 records" || reason === "open 120000 ms", `${reason}`);
});
