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

/** By the error text the door answered (the reason is in the door's own reply). */
const BY_ERROR: [RegExp, string][] = [
  [/COMMAND_REFUSED 'flush(all|db)'/, `${REFUSED}: FLUSHALL/FLUSHDB empty the keyspace without keyspace events (a later step may journal them)`],
  [/COMMAND_REFUSED '(object|memory|debug|function)'/, `${REFUSED}: container commands other than COMMAND and CLIENT (OBJECT, MEMORY, FUNCTION) are not served`],
  [/CONFIG SET is not supported/, `${REFUSED}: CONFIG SET (the nodes' Redis settings are the cluster's, not a client's)`],
  [/SELECT n is not supported/, `${REFUSED}: SELECT n ≠ 0 (only database 0 is journaled)`],
  [/not supported yet by the front door: transactions/, `${NOT_YET}: MULTI/EXEC/WATCH (issue #12 item 4, being built)`],
  [/not supported yet by the front door: blocking/, `${NOT_YET}: blocking commands (issue #12 item 5)`],
  [/not supported yet by the front door: pub\/sub/, `${NOT_YET}: pub/sub (issue #12 item 5)`],
  [/bulk length \d+ exceeds \d+|I\/O error reading reply/, `${REFUSED}: a request over QJM_RESP_REQUEST_BYTES_MAX (the write bound, 1 MiB: nats-server's max_payload) is a protocol error and the connection is closed`],
  [/COMMAND_REFUSED '(swapdb|move|copy)'.*db|'(move|swapdb)' is refused/, `${REFUSED}: commands across databases (only database 0 is journaled)`],
  [/is neither a write nor a read|COMMAND_REFUSED '(lastsave|save|bgsave|bgrewriteaof|shutdown|monitor|sync|psync|replconf|slaveof|replicaof|failover)'/, `${REFUSED}: server administration commands are not served by the door`],
];

/** By test name, for failures whose error does not say why (an assertion on a value, a count). */
const BY_NAME: [RegExp, string][] = [];

export function explainDoorFailure(_file: string, name: string, error: string): string {
  for (const [re, why] of BY_ERROR) if (re.test(error)) return why;
  for (const [re, why] of BY_NAME) if (re.test(name)) return why;
  return UNEXPLAINED;
}
