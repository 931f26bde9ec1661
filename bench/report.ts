/** The results as a console table, a markdown table (for bench/RESULTS.md) and JSON (BENCH_OUT). */
import fs from "node:fs";
import type { Measurement } from "./harness.js";
import { HOPS } from "./trace.js";

/** A measurement next to the floor measured in the same run at the same concurrency. */
export interface Row extends Measurement {
  /** writes/s ÷ the floor's writes/s (1 = as fast as one NATS hop; lower is slower). */
  writesVsFloor: number;
  /** p50 ÷ the floor's p50 (1 = one NATS hop; higher is slower). */
  p50VsFloor: number;
}

export function withFloorRatios(results: Measurement[], floorName: string): Row[] {
  return results.map((m) => {
    const floor = results.find((f) => f.target === floorName && f.clients === m.clients && f.writes > 0);
    return {
      ...m,
      writesVsFloor: floor === undefined || m.writes === 0 ? Number.NaN : m.writesPerSec / floor.writesPerSec,
      p50VsFloor: floor === undefined || m.writes === 0 ? Number.NaN : m.p50Ms / floor.p50Ms,
    };
  });
}

const HEADERS = ["target", "clients", "writes/s", "p50 ms", "p99 ms", "writes/s vs floor", "p50 vs floor", "errors", "CPU ms/write"];

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "–";
}

function cells(r: Row): string[] {
  return [
    r.target,
    String(r.clients),
    r.writes === 0 ? "–" : String(Math.round(r.writesPerSec)),
    fixed(r.p50Ms, 3),
    fixed(r.p99Ms, 3),
    Number.isFinite(r.writesVsFloor) ? `${r.writesVsFloor.toFixed(2)}×` : "–",
    Number.isFinite(r.p50VsFloor) ? `${r.p50VsFloor.toFixed(1)}×` : "–",
    String(r.errors),
    r.cpuMsPerWrite === undefined ? "–" : fixed(r.cpuMsPerWrite, 3),
  ];
}

/** Left-aligned names, right-aligned numbers, for a terminal. */
export function textTable(rows: Row[]): string {
  const table = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, col) => Math.max(...table.map((line) => line[col].length)));
  const format = (line: string[]) => line.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join("  ");
  return [format(HEADERS), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map((r) => format(cells(r)))].join("\n");
}

export function markdownTable(rows: Row[]): string {
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  const align = HEADERS.map((_, col) => (col === 0 ? ":---" : "---:"));
  return [line(HEADERS), line(align), ...rows.map((r) => line(cells(r)))].join("\n");
}

/**
 * The per-hop breakdown of the traced rows (median and p99 of each hop over the sampled writes), one column pair per
 * measurement, as markdown; null when no row was traced.
 */
export function breakdownTable(rows: readonly Measurement[]): string | null {
  const traced = rows.filter((r) => r.hops !== undefined && r.hops.samples > 0);
  if (traced.length === 0) return null;
  const label = (r: Measurement) => `×${r.clients}${r.ratePerSec === undefined ? "" : ` at ${Math.round(r.ratePerSec)}/s`}`;
  const head = ["hop", ...traced.flatMap((r) => [`${label(r)} p50 ms`, `p99 ms`])];
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  const body = HOPS.map((hop, i) => line([hop, ...traced.flatMap((r) => [fixed(r.hops!.hops[i].p50Ms, 3), fixed(r.hops!.hops[i].p99Ms, 3)])]));
  const total = line(["**round trip of the traced writes**", ...traced.flatMap((r) => [fixed(r.hops!.total.p50Ms, 3), fixed(r.hops!.total.p99Ms, 3)])]);
  const samples = line(["traced writes", ...traced.flatMap((r) => [String(r.hops!.samples), ""])]);
  return [line(head), line(head.map((_, i) => (i === 0 ? ":---" : "---:"))), ...body, total, samples].join("\n");
}

/** CPU per acknowledged write of each measured target, as a ratio to `reference`'s at the same concurrency. */
export function cpuNotes(rows: readonly Measurement[], reference: string): string[] {
  return rows
    .filter((r) => r.cpuMsPerWrite !== undefined && r.target !== reference && r.ratePerSec === undefined)
    .map((r) => {
      const ref = rows.find((x) => x.target === reference && x.clients === r.clients && x.cpuMsPerWrite !== undefined);
      const ratio = ref === undefined ? "" : ` = ${(r.cpuMsPerWrite! / ref.cpuMsPerWrite!).toFixed(1)}× ${reference}'s ${ref.cpuMsPerWrite!.toFixed(3)}`;
      const byProcess = r.cpuByProcess === undefined ? "" : `; by process (each with what it started): ${r.cpuByProcess.map((p) => `${p.name} ${fixed(p.msPerWrite, 3)}`).join(", ")}`;
      return `CPU per acked write, ${r.target} ×${r.clients}: ${r.cpuMsPerWrite!.toFixed(3)} ms${ratio}${byProcess}`;
    });
}

/** P4: the replica lag of a paced row. */
export function lagNotes(rows: readonly Measurement[]): string[] {
  return rows
    .filter((r) => r.lag !== undefined && r.ratePerSec !== undefined)
    .map((r) => `P4 replica lag (commit → applied), ${r.target} ×${r.clients} paced at ${Math.round(r.ratePerSec!)} writes/s (got ${Math.round(r.writesPerSec)}, write p50 ${fixed(r.p50Ms, 3)} ms): p50 ${fixed(r.lag!.p50Ms, 3)} ms, p99 ${fixed(r.lag!.p99Ms, 3)} ms over ${r.lag!.samples} (write, replica) pairs`);
}

/** Notes (failures, errors, partial windows), one line per measurement that has one. */
export function notes(rows: Row[]): string[] {
  return rows.filter((r) => r.note !== undefined).map((r) => `${r.target} ×${r.clients}: ${r.note}`);
}

export function writeJson(file: string, payload: unknown): void {
  // NaN is not JSON: missing figures become null.
  fs.writeFileSync(file, JSON.stringify(payload, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
}
