import test from "ava";
import { errorsPastRun } from "../../src/redis/apply_records.js";
import { parseInfo } from "../../src/redis/redis_info.js";

/** An INFO stats + replication reply as Redis 7.0 writes it (the fields errorsPastRun reads, among others). */
function info(slaveReplOffset: number | null, unexpected: number): Map<string, string> {
  const replication = slaveReplOffset === null ? "" : `slave_repl_offset:${slaveReplOffset}\r\n`;
  return parseInfo(`# Stats\r\ntotal_commands_processed:10\r\nunexpected_error_replies:${unexpected}\r\n\r\n# Replication\r\nrole:slave\r\n${replication}master_repl_offset:${slaveReplOffset ?? 0}\r\n`);
}

test("errorsPastRun - an INFO taken once Redis processed the run's end counts; one taken before it, or without the offset, does not", (t) => {
  t.is(errorsPastRun(info(1000, 3), 1000), 3, "processed exactly to the run's end (its EXEC ran)");
  t.is(errorsPastRun(info(1200, 4), 1000), 4, "past it (a keepalive after)");
  t.is(errorsPastRun(info(999, 3), 1000), null, "mid-run: read again after the ACK");
  t.is(errorsPastRun(info(null, 3), 1000), null, "no slave_repl_offset (not linked): read again");
});
