/**
 * The wire encoding of every NATS body: msgpack, with byte strings kept as Uint8Array. A bigint travels as a msgpack
 * int64 (a write's integer reply past 2^53: src/segment/record.ts ReplyValue) and an int64 is read back as a number
 * within ±2^53, as a bigint past it (int64AsType "auto"): never rounded. Every field that must be a number is checked
 * as one where it is parsed (src/protocol/messages.ts), so a bigint there is refused like any other wrong type.
 */
import { Packr } from "msgpackr";
import { QjmError, ErrorCode } from "./errors.js";

/**
 * msgpackr's int64AsType "auto" (its unpack.js implements it; its index.d.ts of 2.1.4 leaves it out of the type).
 * test/unit/resp_door.test.ts checks the round trip, so a msgpackr without it fails there.
 */
export const INT64_AUTO = "auto" as unknown as "bigint";

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, int64AsType: INT64_AUTO });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes a body; anything that is not msgpack is a NOT_MSGPACK error, never an exception from deep inside. */
export function decode(body: Uint8Array): unknown {
  if (body.length === 0) throw new QjmError(ErrorCode.NOT_MSGPACK, "empty body");
  let values: unknown[];
  try {
    values = packr.unpackMultiple(body) as unknown[];
  } catch (err) {
    throw new QjmError(ErrorCode.NOT_MSGPACK, `body is not msgpack: ${(err as Error).message}`);
  }
  // Trailing bytes after one value mean the body was not one msgpack value (e.g. plain text).
  if (values.length !== 1) throw new QjmError(ErrorCode.NOT_MSGPACK, `body is not one msgpack value (${values.length} values)`);
  return values[0];
}
