/** The wire encoding of every NATS body: msgpack, with byte strings kept as Uint8Array. */
import { Packr } from "msgpackr";
import { QjmError, ErrorCode } from "./errors.js";

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, int64AsType: "number" });

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
