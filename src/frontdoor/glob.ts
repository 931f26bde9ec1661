/**
 * Redis's glob-style pattern matching (pure), as PSUBSCRIBE, PUBSUB CHANNELS and KEYS use it: Redis 7's
 * `stringmatchlen` (src/util.c) on bytes, rule for rule, so that a pattern selects the channels it would on Redis:
 *
 * - `*` any run of bytes (several in a row are one), `?` any one byte;
 * - `[abc]` one of the bytes, `[^abc]` none of them, `[a-z]` a range (its ends in either order), `\x` inside a class
 *   the byte x; a class the pattern ends inside holds what was read of it (`[ab` matches `a`);
 * - `\x` outside a class the byte x (a trailing `\` is itself);
 * - anything else itself, byte for byte (case-sensitive).
 *
 * Bounded as Redis bounds it: after a `*` whose rest matched nowhere in the rest of the subject, no earlier `*` tries a
 * longer run (so `a*a*a*a*b` against a long run of `a` is quadratic, not exponential), and more than 1000 nested `*`
 * never match. Range ends compare as C's signed chars, as on Redis's x86 and ARM builds (`[a-\xff]` is the range
 * -1..97 there, so it holds `a` but not `b`).
 */

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const CARET = 0x5e;
const BACKSLASH = 0x5c;
const DASH = 0x2d;
/** Redis's protection against abusive patterns: a `*` nested deeper than this never matches. */
const NESTING_MAX = 1000;

/**
 * True when `subject` matches `pattern` (both bytes), with Redis's rules. Compiled once per pattern object (a door
 * matches each published message against every pattern it holds) and matched greedily: O(subject) for most patterns,
 * where Redis's own walk is O(pattern × subject) (5,000 patterns of 40 stars against a 20 KB channel held a door's
 * event loop for seconds: issue #12 review). Same answers as Redis's walk (globMatchReference; a unit test compares
 * them on random patterns).
 */
export function globMatch(pattern: Uint8Array, subject: Uint8Array): boolean {
  let compiled = COMPILED.get(pattern);
  if (compiled === undefined) COMPILED.set(pattern, (compiled = compile(pattern)));
  return compiled === null ? globMatchReference(pattern, subject) : greedy(compiled, subject);
}

/** Redis's `stringmatchlen`, step for step (the reference the greedy matcher is checked against). */
export function globMatchReference(pattern: Uint8Array, subject: Uint8Array): boolean {
  return match(pattern, 0, subject, 0, { skipLonger: false }, 0);
}

/** One byte of a pattern: a literal byte, any byte (`?`), or a class (a table of the 256 bytes: 1 = matches). */
type Token = number | "any" | Uint8Array;
/** A pattern as its runs of tokens between `*`s: run 0 is anchored at the start, the last at the end (when stars > 0). */
interface Compiled {
  runs: Token[][];
  /** Each run as plain bytes when it holds only literals (searched with indexOf), else null. */
  literal: (Buffer | null)[];
  stars: number;
}

const COMPILED = new WeakMap<Uint8Array, Compiled | null>();

/** The pattern's tokens split at its stars; null past NESTING_MAX stars (the reference's walk then decides). */
function compile(p: Uint8Array): Compiled | null {
  const runs: Token[][] = [[]];
  for (let pi = 0; pi < p.length; pi++) {
    const run = runs[runs.length - 1];
    switch (p[pi]) {
      case STAR:
        while (pi + 1 < p.length && p[pi + 1] === STAR) pi++;
        runs.push([]);
        break;
      case QUESTION:
        run.push("any");
        break;
      case OPEN: {
        const table = new Uint8Array(256);
        let end = pi;
        for (let c = 0; c < 256; c++) {
          const r = matchClass(p, pi + 1, c);
          table[c] = r.match ? 1 : 0;
          end = r.end;
        }
        run.push(table);
        pi = end;
        break;
      }
      case BACKSLASH:
        if (p.length - pi >= 2) pi++;
        run.push(p[pi]);
        break;
      default:
        run.push(p[pi]);
    }
  }
  const stars = runs.length - 1;
  if (stars > NESTING_MAX) return null;
  const literal = runs.map((run) => (run.every((t) => typeof t === "number") ? Buffer.from(run as number[]) : null));
  return { runs, literal, stars };
}

function runMatchesAt(run: Token[], s: Uint8Array, at: number): boolean {
  for (let j = 0; j < run.length; j++) {
    const t = run[j];
    const c = s[at + j];
    if (typeof t === "number" ? t !== c : t !== "any" && t[c] === 0) return false;
  }
  return true;
}

/** The leftmost place from `from` where run `i` matches wholly before `limit`, or -1. */
function find(c: Compiled, i: number, s: Uint8Array, from: number, limit: number): number {
  const run = c.runs[i];
  const last = limit - run.length;
  const literal = c.literal[i];
  if (literal !== null) {
    const at = literal.length === 0 ? from : Buffer.from(s.buffer, s.byteOffset, s.byteLength).indexOf(literal, from);
    return at >= 0 && at <= last ? at : -1;
  }
  for (let at = from; at <= last; at++) if (runMatchesAt(run, s, at)) return at;
  return -1;
}

/**
 * Leftmost placement of each run between the stars is the best one (each run has a fixed length), so one pass
 * decides. Redis's quirk kept: an empty subject matches only the empty pattern (its walk never looks at a `*` then).
 */
function greedy(c: Compiled, s: Uint8Array): boolean {
  if (s.length === 0) return c.stars === 0 && c.runs[0].length === 0;
  const first = c.runs[0];
  if (c.stars === 0) return first.length === s.length && runMatchesAt(first, s, 0);
  const tail = c.runs[c.stars];
  const tailAt = s.length - tail.length;
  if (first.length > tailAt || !runMatchesAt(first, s, 0) || !runMatchesAt(tail, s, tailAt)) return false;
  let at = first.length;
  for (let i = 1; i < c.stars; i++) {
    const found = find(c, i, s, at, tailAt);
    if (found < 0) return false;
    at = found + c.runs[i].length;
  }
  return true;
}

/** C's `char` as Redis's builds see it: bytes from 0x80 are negative. */
function signed(b: number): number {
  return (b << 24) >> 24;
}

/** The byte at `i`, or 0 past the end (the NUL after an sds string, which Redis's loop may look at). */
function at(p: Uint8Array, i: number): number {
  return i < p.length ? p[i] : 0;
}

function match(p: Uint8Array, pi: number, s: Uint8Array, si: number, flags: { skipLonger: boolean }, nesting: number): boolean {
  if (nesting > NESTING_MAX) return false;
  while (pi < p.length && si < s.length) {
    switch (p[pi]) {
      case STAR: {
        while (pi + 1 < p.length && p[pi + 1] === STAR) pi++;
        if (pi + 1 === p.length) return true;
        for (; si < s.length; si++) {
          if (match(p, pi + 1, s, si, flags, nesting + 1)) return true;
          if (flags.skipLonger) return false;
        }
        // The rest matched from nowhere in the rest of the subject: a longer run for an earlier `*` cannot help.
        flags.skipLonger = true;
        return false;
      }
      case QUESTION:
        si++;
        break;
      case OPEN: {
        const r = matchClass(p, pi + 1, s[si]);
        if (!r.match) return false;
        pi = r.end;
        si++;
        break;
      }
      case BACKSLASH:
        if (p.length - pi >= 2) pi++;
        if (p[pi] !== s[si]) return false;
        si++;
        break;
      default:
        if (p[pi] !== s[si]) return false;
        si++;
    }
    pi++;
    if (si === s.length) {
      while (pi < p.length && p[pi] === STAR) pi++;
      break;
    }
  }
  return pi >= p.length && si === s.length;
}

/**
 * A `[…]` class from `pi` (just after the `[`) against byte `c`: whether it matched, and the index of its `]` (or of
 * the pattern's last byte, for a class the pattern ends inside), where the caller's `pi++` steps past it.
 */
function matchClass(p: Uint8Array, pi: number, c: number): { match: boolean; end: number } {
  const not = at(p, pi) === CARET;
  if (not) pi++;
  let match = false;
  for (;;) {
    const left = p.length - pi;
    if (at(p, pi) === BACKSLASH && left >= 2) {
      pi++;
      if (p[pi] === c) match = true;
    } else if (at(p, pi) === CLOSE) {
      break;
    } else if (left <= 0) {
      pi--;
      break;
    } else if (left >= 3 && p[pi + 1] === DASH) {
      let start = signed(p[pi]);
      let end = signed(p[pi + 2]);
      if (start > end) [start, end] = [end, start];
      const sc = signed(c);
      pi += 2;
      if (sc >= start && sc <= end) match = true;
    } else if (p[pi] === c) {
      match = true;
    }
    pi++;
  }
  return { match: not ? !match : match, end: pi };
}
