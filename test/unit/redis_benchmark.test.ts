/** The redis-benchmark bench part's pure half (bench/redis_benchmark_report.ts): its CSV, error lines, counts and tables. */
import test from "ava";
import {
  benchmarkTable,
  commandCalls,
  counterProblems,
  medianRows,
  parseBenchmarkCsv,
  requestsFor,
  requestsSent,
  serverErrors,
  type BenchmarkRow,
} from "../../bench/redis_benchmark_report.js";

/** redis-benchmark 7.0.15's output for `--csv -e` (stdout and stderr together, as the bench reads them). */
const CSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","645161.31","1.032","0.192","0.791","2.487","5.215","5.487"
"GET","606060.62","0.912","0.272","0.815","2.087","2.367","2.487"
"MSET (10 keys)","338983.06","2.174","0.472","2.135","3.519","5.847","5.975"
WARNING: -e option has no effect. We now immediately exit on error to avoid false results.
`;

test("parses --csv: the test's name as printed, requests/s and p50; warnings are not lines", (t) => {
  t.deepEqual(parseBenchmarkCsv(CSV), [
    { test: "SET", rps: 645161.31, p50Ms: 0.791 },
    { test: "GET", rps: 606060.62, p50Ms: 0.815 },
    { test: "MSET (10 keys)", rps: 338983.06, p50Ms: 2.135 },
  ]);
  // A test shorter than a millisecond (160 requests at -P 16) has no rate.
  t.deepEqual(parseBenchmarkCsv(`${CSV.split("\n")[0]}\n"HSET","inf","0.282","0.112","0.255","0.495","0.495","0.495"\n`), [{ test: "HSET", rps: Infinity, p50Ms: 0.255 }]);
  t.is(benchmarkTable([{ target: "Redis", pipeline: 16, test: "HSET", rps: Infinity, p50Ms: 0.255 }], ["Redis"]).split("\n")[2], "| 16 | HSET | inf (under 1 ms) | 0.255 |");
  t.throws(() => parseBenchmarkCsv("SET: 1000 requests per second\n"), { message: /no header/ });
  t.throws(() => parseBenchmarkCsv(`${CSV.split("\n")[0]}\n"SET","fast","1"\n`), { message: /bad line/ });
});

test("a server error is found, with its text; the -e notice of 7.0 is not one", (t) => {
  t.deepEqual(serverErrors(CSV), []);
  // 7.0.15 against a Redis with a password it was not given (exit status 1).
  const refused = "WARNING: -e option has no effect. We now immediately exit on error to avoid false results.\nNode 127.0.0.1:58691 replied with error:\nNOAUTH Authentication required.\n";
  t.deepEqual(serverErrors(refused), ["Node 127.0.0.1:58691 replied with error: NOAUTH Authentication required."]);
  t.deepEqual(serverErrors(`${CSV}Error from server: ERR qjm OVERLOADED: too many writes in flight\n`), ["Error from server: ERR qjm OVERLOADED: too many writes in flight"]);
});

test("requests sent: rounded up to whole pipelines (as 7.0.15 measured: -n 20001 -P 16 sends 20016)", (t) => {
  t.is(requestsSent(20001, 16), 20016);
  t.is(requestsSent(20000, 16), 20000);
  t.is(requestsSent(1001, 1), 1001);
  // -n from BENCH_SECONDS: a whole number of the deepest pipeline, never 0.
  t.is(requestsFor(5, 2000, [1, 16]), 10000);
  t.is(requestsFor(0.5, 2000, [1, 16]), 1008);
  t.is(requestsFor(0.001, 2000, [1, 16]), 16);
  for (const n of [requestsFor(5, 2000, [1, 16]), requestsFor(0.5, 2000, [1, 16])]) t.is(requestsSent(n, 16), n);
});

test("state arithmetic: the counter and the list each moved by the writes sent, or the mismatch says by how much", (t) => {
  t.deepEqual(counterProblems({ counter: 100, listLength: 100 }, { counter: 1108, listLength: 1108 }, 1008), []);
  t.deepEqual(counterProblems({ counter: 0, listLength: 0 }, { counter: 1007, listLength: 1009 }, 1008), [
    "INCR: counter:__rand_int__ went from 0 to 1007 (+1007), 1008 INCRs were sent",
    "LPUSH: LLEN mylist went from 0 to 1009 (+1009), 1008 LPUSHes were sent",
  ]);
});

test("GET calls from INFO commandstats; 0 for a command never called", (t) => {
  const info = "# Commandstats\r\ncmdstat_getset:calls=3,usec=1\r\ncmdstat_get:calls=1008,usec=900,usec_per_call=0.89\r\ncmdstat_set:calls=5\r\n";
  t.is(commandCalls(info, "get"), 1008);
  t.is(commandCalls(info, "set"), 5);
  t.is(commandCalls(info, "incr"), 0);
});

test("medians over runs per (target, -P, test), and the table's ratios to the first target", (t) => {
  const row = (target: string, rps: number, p50Ms: number): BenchmarkRow => ({ target, pipeline: 1, test: "SET", rps, p50Ms });
  const medians = medianRows([[row("Redis", 100, 1), row("door", 10, 5)], [row("Redis", 300, 3), row("door", 30, 9)], [row("Redis", 200, 2), row("door", 20, 7)]]);
  t.deepEqual(medians, [row("Redis", 200, 2), row("door", 20, 7)]);
  const table = benchmarkTable(medians, ["Redis", "door", "absent"]).split("\n");
  t.is(table[0], "| -P | test | Redis req/s | p50 ms | door req/s | p50 ms | absent req/s | p50 ms |");
  t.is(table[2], "| 1 | SET | 200 | 2.000 | 20 (0.100×) | 7.000 | – | – |");
});
