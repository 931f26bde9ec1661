/**
 * Why a test of Redis's suite fails on a front door and passes on plain Redis (docs/resp.md, "Redis's own test
 * suite"): by the error the door answered where it says, else by the test's name. UNEXPLAINED is what is not known —
 * the integration test (redis_suite.test.ts) fails on it.
 */
export const UNEXPLAINED = "UNEXPLAINED";

/** Groups of docs/resp.md's section. */
export const REFUSED = "refused by design";
export const NOT_YET = "not supported yet";
export const SEMANTICS = "semantics";
export const BUG = "bug, not fixed";

/** By the error text the door answered (the reason is in the door's own reply). */
const BY_ERROR: [RegExp, string][] = [
  [/COMMAND_REFUSED 'flush(all|db)'/, `${REFUSED}: FLUSHALL/FLUSHDB (they empty the keyspace without keyspace events, which the master's script checks rely on; the command table refuses them)`],
  [/COMMAND_REFUSED '(sync|psync)'|attach_to_replication_stream/, `${REFUSED}: SYNC — the test reads Redis's replication stream; the door is not a Redis master (replication is the journal)`],
  [/COMMAND_REFUSED 'debug'/, `${REFUSED}: DEBUG (flagged admin: never served to clients)`],
  [/COMMAND_REFUSED '(object|memory)'/, `${REFUSED}: container commands other than COMMAND and CLIENT, even read-only ones (OBJECT, MEMORY)`],
  [/COMMAND_REFUSED '(xgroup|xinfo|function|script)'/, `${NOT_YET}: container commands whose subcommand is not read-only (XGROUP CREATE, SCRIPT KILL, FUNCTION LOAD): refused; the read-only ones (OBJECT ENCODING, XINFO STREAM) are reads`],
  [/CONFIG SET is not supported|'config' is not supported inside MULTI/, `${REFUSED}: CONFIG SET (the nodes' Redis settings are the cluster's, not a client's)`],
  [/SELECT n is not supported|COMMAND_REFUSED 'copy' with DB|COMMAND_REFUSED '(move|swapdb)'/, `${REFUSED}: other databases than 0 (only database 0 is journaled)`],
  [/not supported yet by the front door: blocking/, `${NOT_YET}: blocking commands (issue #12 item 5)`],
  [/no blocked clients|Timeout waiting for blocked clients/, `${NOT_YET} (follows): the test waits for a client blocked in BLPOP/BLMOVE…, which the door refuses (issue #12 item 5)`],
  [/bulk length \d+ exceeds \d+|I\/O error reading reply/, `${REFUSED}: a request over QJM_RESP_REQUEST_BYTES_MAX (the write bound, 1 MiB: nats-server's max_payload) is a protocol error and the connection is closed (the next test on that connection: I/O error)`],
  [/COMMAND_REFUSED '\w+' is refused: it is flagged admin|is neither a write nor a read/, `${REFUSED}: server administration commands are not served by the door`],
];

/**
 * By test name, for failures whose error does not say why: an assertion that failed because an earlier test of the
 * same server block stopped at a refused command (its keys were left, or not made).
 */
const AFTER_FLUSHDB = `${REFUSED} (follows): the test before it stopped at FLUSHDB or FLUSHALL, so the keys this one counts on are not as it expects`;
/** A block that set RESP3 outside its tests (zset's readraw block: `r hello 3`) runs on in RESP2 after a failure. */
const AFTER_FRESH_CONNECTION = `${NOT_YET} (follows): its block set RESP3 (\`r hello 3\`) before its tests; the test before it failed on a blocking command the door refuses, and the harness's fresh connection after a failed test speaks RESP2, so this RESP3 test reads RESP2's null array`;
const AFTER_CONFIG_SET = `${REFUSED} (follows): CONFIG SET refused, so the setting the test made (an encoding threshold) is the server's default and the reply's order or shape differs`;
const BY_NAME: [RegExp, string][] = [
  // set.tcl: WATCH dstset; another client's SMOVE of a member dstset already holds leaves it unchanged; EXEC must run.
  [/^SMOVE only notify dstset when the addition is successful$/, `${SEMANTICS}: WATCH on a door is key-level by the journal's records (src/master/watch_core.ts): a committed write whose effects name a watched key aborts the EXEC even when it left the key as it was (this SMOVE's destination), where Redis touches only keys it changed — conservative by design, a client retries a nil EXEC`],
  // multi.tcl: a script loops for ever on one connection while another EXECs; Redis answers BUSY (lua-time-limit).
  [/^(EXEC and script timeout|just EXEC and script timeout)$/, `${SEMANTICS}: a write through a door waits its turn behind a running script instead of answering BUSY (the master's writes are one ordered stream; the master itself ends a script past scriptRunMaxMs, src/master/script_watch.ts), so EXEC runs after it instead of EXECABORT … BUSY; the test's SCRIPT KILL is refused too`],
  [/^DBSIZE should be 10000 now$/, AFTER_FLUSHDB],
  // zset.tcl: `ZRANGESTORE basic` starts with FLUSHALL and makes z1{t}; the tests after it read z1{t} and z2{t}.
  [/^ZRANGESTORE (RESP3|range|BYLEX|BYSCORE|BYSCORE LIMIT|BYSCORE REV LIMIT)$|^ZRANGE (BYSCORE REV LIMIT|BYLEX)$/, AFTER_FLUSHDB],
  [/^ZMPOP readraw in RESP3$/, AFTER_FRESH_CONNECTION],
  [/^MGET against non existing key$|^MGET against non-string key$/, AFTER_FLUSHDB],
  [/^(Hash|List|Set|Zset|ZSET) ziplist of various encodings/i, AFTER_CONFIG_SET],
];

export function explainDoorFailure(_file: string, name: string, error: string): string {
  for (const [re, why] of BY_ERROR) if (re.test(error)) return why;
  for (const [re, why] of BY_NAME) if (re.test(name)) return why;
  return UNEXPLAINED;
}
