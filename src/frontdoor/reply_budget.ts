/**
 * A connection's replies bounded by bytes, not only by count (issue #12 review): a door that took respPipelineMax
 * pipelined GETs of a 900 KB value at once had 230 MB of replies to hold, and closed a client that read as fast as it
 * could. Pure: the session (session.ts) asks `admits` before it takes the next request from the socket, and tells
 * `filled` each reply's size.
 *
 * A request's reply size is not known before it is answered, so it is estimated by the connection's recent replies:
 * the largest one, decaying by 1/8 per smaller reply (a pipeline of 900 KB GETs runs one at a time; a pipeline of
 * small replies soon runs respPipelineMax deep). A connection new to the door starts as if its replies were
 * pauseBytes / 16 each, so its first burst is at most 16 requests until its replies say otherwise. The next request
 * is taken while the bytes waiting for the client plus the estimate for every unanswered request stay within
 * pauseBytes; otherwise the socket is not read (TCP back-pressure), never closed: a client that reads is served, a
 * client that does not read holds about pauseBytes plus the replies already under way.
 *
 * `closeBytes` stays as a backstop for an estimate far off (small replies first, then a deep pipeline of large ones):
 * past it, not counting the largest reply since the output was last within pauseBytes (one reply is always allowed,
 * up to Redis's proto-max-bulk-len), the connection is closed as Redis's client-output-buffer-limit would.
 */
export class ReplyBudget {
  private estimate: number;
  private largestSincePause = 0;

  constructor(
    private readonly pauseBytes: number,
    private readonly closeBytes: number,
  ) {
    this.estimate = Math.ceil(pauseBytes / 16);
  }

  /** May one more request be taken, with `waiting` reply bytes not yet taken by the client and `unanswered` requests? */
  admits(waiting: number, unanswered: number): boolean {
    return waiting + unanswered * this.estimate <= this.pauseBytes;
  }

  /** A reply of `bytes` is ready, `waiting` bytes now wait for the client (it included): true past the backstop. */
  filled(bytes: number, waiting: number): boolean {
    this.estimate = bytes >= this.estimate ? bytes : this.estimate - Math.ceil((this.estimate - bytes) / 8);
    if (waiting - bytes <= this.pauseBytes) this.largestSincePause = 0;
    this.largestSincePause = Math.max(this.largestSincePause, bytes);
    return waiting - this.largestSincePause > this.closeBytes;
  }

  /** The current estimate of one reply, in bytes. */
  get replyEstimate(): number {
    return this.estimate;
  }
}
