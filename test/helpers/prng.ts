/** A seeded PRNG (mulberry32) for fault schedules: the same seed gives the same schedule. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a test run: QJM_TEST_SEED, or the default given. */
export function testSeed(fallback: number): number {
  const raw = process.env.QJM_TEST_SEED;
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : fallback;
}
