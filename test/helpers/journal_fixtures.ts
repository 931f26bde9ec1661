/** Journal nodes and records for the unit tests of the cores that talk to journal nodes (recovery, restorer). */
import { JournalCore } from "../../src/journal/journal_core.js";
import { encodeEffects, encodeRecord } from "../../src/segment/record.js";

/** A journal node as it first starts: no segment, no promise, not formatted. */
export function unformattedNode(name: string): JournalCore {
  return new JournalCore(name, { meta: { promisedEpoch: 0, writerEpoch: 0, accepted: null }, segments: [], fault: null, identity: { clusterId: null, restoring: true } });
}

/** The record every writer of these tests journals at txid (in epoch 1). */
export function epochOneRecord(txid: number): Buffer {
  return encodeRecord(txid, 1, encodeEffects([[Buffer.from("SET"), Buffer.from("k"), Buffer.from(String(txid))]]));
}

/** epochOneRecord from..to, concatenated as a batch. */
export function epochOneRecords(from: number, to: number): Buffer {
  const out: Buffer[] = [];
  for (let txid = from; txid <= to; txid++) out.push(epochOneRecord(txid));
  return Buffer.concat(out);
}
