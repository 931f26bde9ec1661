/**
 * The checksum that ends an RDB file: CRC-64/Jones as Redis computes it (crc64.c: polynomial 0xad93d23594c935a9,
 * reflected, initial value 0, no final xor; "123456789" → 0xe9c6d914c4b8d9ca), over every byte before the 8-byte
 * little-endian trailer. Redis writes 0 there when it runs with `rdbchecksum no`.
 *
 * Pure and incremental. The 64-bit value is kept as two 32-bit halves with slice-by-8 tables (no BigInt per byte).
 */

/** Bytes of the checksum trailer at the end of an RDB. */
export const RDB_CHECKSUM_BYTES = 8;

const POLY_REFLECTED_HI = 0x95ac9329;
const POLY_REFLECTED_LO = 0xac4bc9b5;
const SLICES = 8;

/** TABLE_HI/LO[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLE_HI = new Uint32Array(256 * SLICES);
const TABLE_LO = new Uint32Array(256 * SLICES);
for (let b = 0; b < 256; b++) {
  let hi = 0;
  let lo = b;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | (hi << 31)) >>> 0;
    hi = hi >>> 1;
    if (carry) {
      hi = (hi ^ POLY_REFLECTED_HI) >>> 0;
      lo = (lo ^ POLY_REFLECTED_LO) >>> 0;
    }
  }
  TABLE_HI[b] = hi;
  TABLE_LO[b] = lo;
}
for (let k = 1; k < SLICES; k++) {
  for (let b = 0; b < 256; b++) {
    const prevHi = TABLE_HI[(k - 1) * 256 + b];
    const prevLo = TABLE_LO[(k - 1) * 256 + b];
    const i = prevLo & 0xff;
    TABLE_HI[k * 256 + b] = (prevHi >>> 8) ^ TABLE_HI[i];
    TABLE_LO[k * 256 + b] = ((prevLo >>> 8) | (prevHi << 24)) ^ TABLE_LO[i];
  }
}

export class Crc64 {
  private hi = 0;
  private lo = 0;

  update(bytes: Uint8Array): void {
    let hi = this.hi;
    let lo = this.lo;
    let i = 0;
    const n = bytes.length;
    // Eight bytes per step: xor them into the CRC, then one table lookup per byte position.
    for (; i + SLICES <= n; i += SLICES) {
      const l = lo ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
      const h = hi ^ (bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24));
      const a7 = 7 * 256 + (l & 0xff), a6 = 6 * 256 + ((l >>> 8) & 0xff), a5 = 5 * 256 + ((l >>> 16) & 0xff), a4 = 4 * 256 + (l >>> 24);
      const a3 = 3 * 256 + (h & 0xff), a2 = 2 * 256 + ((h >>> 8) & 0xff), a1 = 256 + ((h >>> 16) & 0xff), a0 = h >>> 24;
      hi = TABLE_HI[a7] ^ TABLE_HI[a6] ^ TABLE_HI[a5] ^ TABLE_HI[a4] ^ TABLE_HI[a3] ^ TABLE_HI[a2] ^ TABLE_HI[a1] ^ TABLE_HI[a0];
      lo = TABLE_LO[a7] ^ TABLE_LO[a6] ^ TABLE_LO[a5] ^ TABLE_LO[a4] ^ TABLE_LO[a3] ^ TABLE_LO[a2] ^ TABLE_LO[a1] ^ TABLE_LO[a0];
    }
    for (; i < n; i++) {
      const t = (lo ^ bytes[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ TABLE_LO[t];
      hi = (hi >>> 8) ^ TABLE_HI[t];
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
  }

  get value(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }
}

/** The checksum an RDB trailer holds (8 bytes, little-endian). */
export function trailerChecksum(trailer: Uint8Array): bigint {
  if (trailer.length !== RDB_CHECKSUM_BYTES) throw new RangeError(`an RDB checksum trailer has ${RDB_CHECKSUM_BYTES} bytes, not ${trailer.length}`);
  return Buffer.from(trailer.buffer, trailer.byteOffset, trailer.length).readBigUInt64LE(0);
}

export function crc64(bytes: Uint8Array): bigint {
  const crc = new Crc64();
  crc.update(bytes);
  return crc.value;
}
