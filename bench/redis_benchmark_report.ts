/**
 * The pure half of the redis-benchmark bench part (bench/redis_benchmark.ts): redis-benchmark's --csv output parsed,
 * the requests it really sent, the state checks' arithmetic, and the tables (one run, and the medians of several).
 */

/** One line of `redis-benchmark --csv`: the test's name as it prints it ("MSET (10 keys)"), requests/s, p50. */
export interface CsvLine {
  test: string;
  rps: number;
  p50Ms: number;
}

/** One measured (target, pipeline depth, test). */
export interface BenchmarkRow extends CsvLine {
  target: string;
  pipeline: number;
}

/**
 * The lines of `redis-benchmark --csv` (header `"test","rps",…,"p50_latency_ms",…`); anything else in the output
 * (warnings, errors) is left out. Throws when the header or a number is missing: a format we do not know.
 */
export function parseBenchmarkCsv(output: string): CsvLine[] {
  const lines = output.split(/\r?\n/).filter((l) => l.startsWith('"'));
  const header = lines.findIndex((l) => l.startsWith('"test"'));
  if (header < 0) throw new Error("redis-benchmark --csv: no header line in its output");
  const fields = (l: string): string[] => l.trim().slice(1, -1).split('","');
  const names = fields(lines[header]);
  const rpsAt = names.indexOf("rps");
  const p50At = names.indexOf("p50_latency_ms");
  if (rpsAt < 0 || p50At < 0) throw new Error(`redis-benchmark --csv: header without rps or p50_latency_ms: ${lines[header]}`);
  return lines.slice(header + 1).map((l) => {
    const f = fields(l);
    // A test that took under a millisecond has no rate: redis-benchmark prints "inf".
    const rps = f[rpsAt] === "inf" ? Infinity : Number(f[rpsAt]);
    const p50Ms = Number(f[p50At]);
    if (f.length !== names.length || Number.isNaN(rps) || !Number.isFinite(p50Ms)) throw new Error(`redis-benchmark --csv: bad line ${l}`);
    return { test: f[0], rps, p50Ms };
  });
}

/**
 * The server errors redis-benchmark printed: 7.0 exits (status 1) at the first, printing `Node <addr> replied with
 * error:` and the error on the next line (joined here); any other line that speaks of an error too, but its own notice
 * that -e is now the default.
 */
export function serverErrors(output: string): string[] {
  const lines = output.split(/\r?\n/).map((l) => l.trim());
  const errors: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/error/i.test(lines[i]) || /-e option has no effect/.test(lines[i])) continue;
    errors.push(/replied with error:$/.test(lines[i]) && i + 1 < lines.length ? `${lines[i]} ${lines[++i]}` : lines[i]);
  }
  return errors;
}

/**
 * The requests redis-benchmark sends for `-n requests -P pipeline`: each client takes `pipeline` requests at a time
 * from the shared count until it reaches `requests`, so the total is rounded up to a whole number of pipelines
 * (measured on 7.0.15: -n 20001 -P 16 sends 20016 INCRs).
 */
export function requestsSent(requests: number, pipeline: number): number {
  return Math.ceil(requests / pipeline) * pipeline;
}

/** `-n` for a run of `seconds` at `perSecond`, a whole number of the deepest pipeline (so every depth sends exactly it). */
export function requestsFor(seconds: number, perSecond: number, pipelines: readonly number[]): number {
  const unit = Math.max(...pipelines);
  return Math.max(unit, Math.round((seconds * perSecond) / unit) * unit);
}

/** What the state checks read before and after one redis-benchmark run. */
export interface CounterState {
  /** `counter:__rand_int__` (INCR's key, literal without -r); 0 when absent. */
  counter: number;
  /** LLEN of `mylist` (LPUSH's key). */
  listLength: number;
}

/** The mismatches between what one run sent and how the state moved; empty when every INCR and LPUSH took effect once. */
export function counterProblems(before: CounterState, after: CounterState, sent: number): string[] {
  const problems: string[] = [];
  const incr = after.counter - before.counter;
  const lpush = after.listLength - before.listLength;
  if (incr !== sent) problems.push(`INCR: counter:__rand_int__ went from ${before.counter} to ${after.counter} (+${incr}), ${sent} INCRs were sent`);
  if (lpush !== sent) problems.push(`LPUSH: LLEN mylist went from ${before.listLength} to ${after.listLength} (+${lpush}), ${sent} LPUSHes were sent`);
  return problems;
}

/** `calls=` of `cmdstat_<command>` in INFO commandstats' text; 0 when the command was never called. */
export function commandCalls(info: string, command: string): number {
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m").exec(info);
  return m === null ? 0 : Number(m[1]);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Per (target, pipeline, test): the median requests/s and the median p50 over several runs' rows. */
export function medianRows(runs: readonly BenchmarkRow[][]): BenchmarkRow[] {
  const groups = new Map<string, BenchmarkRow[]>();
  for (const row of runs.flat()) {
    const key = `${row.target}\u0000${row.pipeline}\u0000${row.test}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()].map((rows) => ({ ...rows[0], rps: median(rows.map((r) => r.rps)), p50Ms: median(rows.map((r) => r.p50Ms)) }));
}

/**
 * A markdown table, one line per (pipeline, test), a column pair per target: requests/s with its ratio to
 * `reference`'s (the first target, plain Redis), and p50 ms.
 */
export function benchmarkTable(rows: readonly BenchmarkRow[], targets: readonly string[]): string {
  const reference = targets[0];
  const keys = [...new Set(rows.map((r) => `${r.pipeline}\u0000${r.test}`))];
  const find = (target: string, key: string) => rows.find((r) => r.target === target && `${r.pipeline}\u0000${r.test}` === key);
  const head = ["-P", "test", ...targets.flatMap((t) => [`${t} req/s`, "p50 ms"])];
  const body = keys.map((key) => {
    const [pipeline, test] = key.split("\u0000");
    const ref = find(reference, key);
    const cells = targets.flatMap((t) => {
      const r = find(t, key);
      if (r === undefined) return ["–", "–"];
      const ratio = t === reference || ref === undefined || ref.rps === 0 || !Number.isFinite(ref.rps) ? "" : ` (${(r.rps / ref.rps).toFixed(3)}×)`;
      return [Number.isFinite(r.rps) ? `${Math.round(r.rps)}${ratio}` : "inf (under 1 ms)", r.p50Ms.toFixed(3)];
    });
    return [pipeline, test, ...cells];
  });
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(head), line(head.map((_, i) => (i < 2 ? ":---" : "---:"))), ...body.map(line)].join("\n");
}
