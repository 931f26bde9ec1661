/** The results as a console table, a markdown table (for bench/RESULTS.md) and JSON (BENCH_OUT). */
import fs from "node:fs";
import type { Measurement } from "./harness.js";

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

const HEADERS = ["target", "clients", "writes/s", "p50 ms", "p99 ms", "writes/s vs floor", "p50 vs floor", "errors"];

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

/** Notes (failures, errors, partial windows), one line per measurement that has one. */
export function notes(rows: Row[]): string[] {
  return rows.filter((r) => r.note !== undefined).map((r) => `${r.target} ×${r.clients}: ${r.note}`);
}

export function writeJson(file: string, payload: unknown): void {
  // NaN is not JSON: missing figures become null.
  fs.writeFileSync(file, JSON.stringify(payload, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
}
