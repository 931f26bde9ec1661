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

/** True when `subject` matches `pattern` (both bytes), with Redis's rules. */
export function globMatch(pattern: Uint8Array, subject: Uint8Array): boolean {
  return match(pattern, 0, subject, 0, { skipLonger: false }, 0);
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
