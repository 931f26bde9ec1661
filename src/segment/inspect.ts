/**
 * Offline editlog viewer (after HDFS's `oev`): what a segment file holds and what is wrong with it, without a
 * journal node, NATS or Redis. `inspectSegment` and `formatReport` are pure; `runInspect` is the
 * `redis-qjm inspect` command around them (reads the file, prints, returns the exit code).
 */
import { isUtf8 } from "node:buffer";
import fsp from "node:fs/promises";
import path from "node:path";
import { isSnapshotFileName, runInspectSnapshot } from "../snapshot/inspect_snapshot.js";
import { assert } from "../util/assert.js";
import { decodeRecordPayload, scanRecords } from "./record.js";

export interface InspectedRecord {
  txid: number;
  epoch: number;
  /** Offset of the record's first byte in the file. */
  offset: number;
  /** Header plus payload. */
  bytes: number;
  /** Each effect as printable strings (see `renderArg`); empty when the payload does not decode (a problem says so). */
  effects: string[][];
  /** The write id a v2 record carries (issue #11 item 3), with whether its reply was kept; null: none (v1). */
  write: { client: string; seq: number; replyKept: boolean } | null;
}

export interface InspectReport {
  file: string;
  kind: "in-progress" | "finalized" | "unknown";
  /** Txids the file name claims; null when the name is not a segment name (or, for the end, when in progress). */
  nameStartTxid: number | null;
  nameEndTxid: number | null;
  /** Up to the limit asked for; `count` is how many valid records the file holds. */
  records: InspectedRecord[];
  count: number;
  firstTxid: number | null;
  lastTxid: number | null;
  /** Bytes from the start covered by valid records; the rest is a torn tail or follows a corrupt record. */
  validBytes: number;
  totalBytes: number;
  /** Empty when the file is sound. */
  problems: string[];
}

// The journal node's own names (src/journal/segment_store.ts): parsed here rather than exported from there so
// that this tool adds nothing to the store's surface. Keep the two in step.
const IN_PROGRESS = /^edits_inprogress_(\d+)$/;
const FINALIZED = /^edits_(\d+)-(\d+)$/;

/** Arguments longer than this are cut when printed: a viewer line should stay a line. */
const ARG_BYTES_SHOWN = 64;

function parseName(fileName: string): Pick<InspectReport, "kind" | "nameStartTxid" | "nameEndTxid"> {
  const base = path.basename(fileName);
  const ip = IN_PROGRESS.exec(base);
  if (ip !== null) return { kind: "in-progress", nameStartTxid: Number(ip[1]), nameEndTxid: null };
  const fin = FINALIZED.exec(base);
  if (fin !== null) return { kind: "finalized", nameStartTxid: Number(fin[1]), nameEndTxid: Number(fin[2]) };
  return { kind: "unknown", nameStartTxid: null, nameEndTxid: null };
}

/**
 * One effect argument as text when it is valid UTF-8 of visible characters, else as `0x` hex; either cut
 * after 64 bytes with `…(N bytes)`. Text that would read ambiguously on a space-separated line (empty, holding
 * whitespace or a quote, starting with `0x` like hex, or the effect separator `;`) is JSON-quoted.
 */
export function renderArg(arg: Uint8Array): string {
  const buf = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
  const cut = buf.length > ARG_BYTES_SHOWN;
  const suffix = cut ? `…(${buf.length} bytes)` : "";
  const text = isUtf8(buf) ? buf.toString("utf8") : null;
  // Controls, and invisible format characters and line separators (a BOM, a zero-width space, U+2028) would make
  // two different keys print alike or break the line: such arguments are shown as hex.
  if (text !== null && !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(text)) {
    let end = cut ? ARG_BYTES_SHOWN : buf.length;
    // Back off to a character boundary so the cut never splits a multi-byte character (0b10xxxxxx continues one).
    while (end > 0 && end < buf.length && (buf[end] & 0xc0) === 0x80) end--;
    const shown = buf.subarray(0, end).toString("utf8");
    const quoted = shown === "" || shown === ";" || shown.startsWith("0x") || /[\s"]/u.test(shown) ? JSON.stringify(shown) : shown;
    return quoted + suffix;
  }
  return `0x${buf.subarray(0, ARG_BYTES_SHOWN).toString("hex")}${suffix}`;
}

export function inspectSegment(data: Uint8Array, fileName: string, options: { limit?: number } = {}): InspectReport {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  assert(limit === Number.POSITIVE_INFINITY || (Number.isSafeInteger(limit) && limit >= 0), `limit must be a non-negative integer, got ${limit}`);
  const name = parseName(fileName);
  const scan = scanRecords(data);
  const problems: string[] = [];
  const records: InspectedRecord[] = [];

  let previous: number | null = null;
  for (const r of scan.records) {
    if (previous !== null && r.txid !== previous + 1) problems.push(`txids not contiguous: txid ${r.txid} at offset ${r.offset} follows ${previous}`);
    previous = r.txid;
    // Every payload is decoded, not only those shown, so that a limit never hides a problem.
    let effects: string[][] = [];
    let write: InspectedRecord["write"] = null;
    try {
      const payload = decodeRecordPayload(r.payload);
      effects = payload.effects.map((effect) => effect.map(renderArg));
      if (payload.write !== null) write = { client: payload.write.client, seq: payload.write.seq, replyKept: !payload.write.replyDropped };
    } catch (err) {
      problems.push(`payload of txid ${r.txid} at offset ${r.offset} does not decode: ${(err as Error).message}`);
    }
    if (records.length < limit) records.push({ txid: r.txid, epoch: r.epoch, offset: r.offset, bytes: r.length, effects, write });
  }

  if (scan.stop?.kind === "torn") {
    problems.push(`torn tail at offset ${scan.stop.offset}: ${scan.stop.reason} (${data.length - scan.validBytes} bytes)`);
  } else if (scan.stop?.kind === "corrupt") {
    problems.push(`corrupt record at offset ${scan.stop.offset}: ${scan.stop.reason}`);
  }

  const first = scan.records.length > 0 ? scan.records[0].txid : null;
  const last = scan.records.length > 0 ? scan.records[scan.records.length - 1].txid : null;
  if (name.nameStartTxid !== null && first !== null && first !== name.nameStartTxid) {
    problems.push(`first txid ${first} does not match the name's start ${name.nameStartTxid}`);
  }
  if (name.kind === "finalized") {
    // An empty in-progress segment is normal (a segment is created before its first append); a finalized one is not.
    if (last === null) problems.push(`finalized segment holds no valid record, its name says ${name.nameStartTxid}..${name.nameEndTxid}`);
    else if (last !== name.nameEndTxid) problems.push(`last txid ${last} does not match the name's end ${name.nameEndTxid}`);
  }

  return {
    file: fileName,
    ...name,
    records,
    count: scan.records.length,
    firstTxid: first,
    lastTxid: last,
    validBytes: scan.validBytes,
    totalBytes: data.length,
    problems,
  };
}

export function formatReport(report: InspectReport): string {
  const txids = report.firstTxid === null ? "none" : `${report.firstTxid}..${report.lastTxid}`;
  const lines = [
    `${report.file}  kind=${report.kind}  records=${report.count}  txids=${txids}  bytes=${report.validBytes}/${report.totalBytes}`,
  ];
  // Pad the numeric columns to the widest shown so the effects line up.
  const widths = [0, 0, 0];
  for (const r of report.records) {
    widths[0] = Math.max(widths[0], String(r.txid).length);
    widths[1] = Math.max(widths[1], String(r.epoch).length);
    widths[2] = Math.max(widths[2], String(r.offset).length);
  }
  for (const r of report.records) {
    const effects = r.effects.map((e) => e.join(" ")).join(" ; ");
    // The write id first (client ids are [A-Za-z0-9_-], so `id=client#seq` cannot be mistaken for an effect).
    const id = r.write === null ? "" : `id=${r.write.client}#${r.write.seq}${r.write.replyKept ? "" : "(reply dropped)"}  `;
    lines.push(`${String(r.txid).padStart(widths[0])}  ${String(r.epoch).padStart(widths[1])}  ${String(r.offset).padStart(widths[2])}  ${id}${effects}`.trimEnd());
  }
  if (report.records.length < report.count) lines.push(`… ${report.count - report.records.length} more records`);
  if (report.problems.length === 0) lines.push("problems: none");
  else lines.push("problems:", ...report.problems.map((p) => `  ${p}`));
  return lines.join("\n");
}

export const INSPECT_USAGE = "usage: redis-qjm inspect <segment-or-snapshot-file> [--json] [--limit N]";

/**
 * `redis-qjm inspect`: 0 when the file has no problem, 1 when it has, 2 on a usage error or an unreadable file.
 * A snapshot (`*.rdb`, or its `snapshot_<txid>.json` descriptor) gets a summary (src/snapshot/inspect_snapshot.ts).
 */
export async function runInspect(args: readonly string[]): Promise<number> {
  let file: string | undefined;
  let json = false;
  let limit: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--json") json = true;
    else if (arg === "--limit") {
      const value = args[++i];
      if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        console.error(`--limit needs a non-negative whole number\n${INSPECT_USAGE}`);
        return 2;
      }
      limit = Number(value);
    } else if (arg.startsWith("--") || file !== undefined) {
      console.error(`unexpected argument ${arg}\n${INSPECT_USAGE}`);
      return 2;
    } else file = arg;
  }
  if (file === undefined) {
    console.error(INSPECT_USAGE);
    return 2;
  }
  if (isSnapshotFileName(file)) {
    if (limit !== undefined) {
      console.error(`--limit applies to segments; a snapshot is shown as a summary\n${INSPECT_USAGE}`);
      return 2;
    }
    return await runInspectSnapshot(file, json);
  }
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    console.error(`cannot read ${file}: ${e.code ?? e.message}`);
    return 2;
  }
  const report = inspectSegment(data, file, { limit });
  console.log(json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.problems.length === 0 ? 0 : 1;
}
