/**
 * Becoming the writer over NATS: drives the RecoveryCore (the procedure itself, pure) with the JournalClient.
 * Every request of a phase goes out at once; each answer (or its timeout, as an error reply) goes back to the core.
 * A master with a Redis of its own (`recoverWriter`) then rebuilds that Redis from the recovered log, and retries
 * the whole until it serves.
 */
import { randomUUID } from "node:crypto";
import type { Config } from "../config/config.js";
import { DedupeWindow } from "../dedupe/dedupe_window.js";
import { QjmError } from "../protocol/errors.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import type { MasterRedis } from "./master_redis.js";
import { RecoveryCore, type CampaignGuard, type RecoveryOutput, type WriterStart } from "./recovery_core.js";

export type { WriterStart } from "./recovery_core.js";

/**
 * `guard`: a data node's campaign, which defers once to a rival's promise (CampaignGuard); on a failure,
 * `attempt.epochAsked` says which epoch it had asked a majority to promise (0: none).
 */
export function establishWriter(jc: JournalClient, config: Config, log: Logger, newClusterId: string, guard: CampaignGuard | null = null, attempt = { epochAsked: 0 }): Promise<WriterStart> {
  const core = new RecoveryCore(config.journalNodes, config, newClusterId);
  if (guard !== null) core.guardCampaign(guard);
  return new Promise<WriterStart>((resolve, reject) => {
    let finished = false;
    const step = (run: () => RecoveryOutput): void => {
      if (finished) return;
      let out: RecoveryOutput;
      try {
        out = run();
      } catch (err) {
        // The attempt is over; answers still on their way find it finished.
        finished = true;
        attempt.epochAsked = core.epochAsked;
        reject(err);
        return;
      }
      for (const note of out.notes) log.info(note.fields, note.message);
      if (out.done !== null) {
        finished = true;
        resolve(out.done);
        return;
      }
      for (const r of out.send) void jc.call(r.node, r.req, r.timeoutMs).then((reply) => step(() => core.onReply(r.id, reply)));
    };
    step(() => core.start());
  });
}

/**
 * Becoming the writer with a Redis of its own (the single-master layout, and after a failed term): a new epoch on a
 * majority, then a fresh Redis rebuilt from the snapshot and the recovered log, and linked. A new Redis, a new dedupe
 * window: the rebuild fills it from the records it replays (and those before its snapshot). Retried after
 * writerRetryMs while `wanted()`, the Redis discarded each time; after writerAttemptsMax the process exits. Null once
 * no longer wanted.
 */
export async function recoverWriter(
  jc: JournalClient,
  config: Config,
  log: Logger,
  redis: MasterRedis,
  wanted: () => boolean,
): Promise<{ start: WriterStart; window: DedupeWindow } | null> {
  for (let attempt = 1; wanted(); attempt++) {
    try {
      // The new cluster id is used only if the journal nodes are all new: they are formatted with it.
      const start = await establishWriter(jc, config, log, randomUUID());
      await redis.open();
      const window = new DedupeWindow(config);
      await redis.rebuild(start.inSync, start.endTxid, window);
      await redis.openLink();
      return { start, window };
    } catch (err) {
      const level = err instanceof QjmError ? "warn" : "error";
      log[level]({ err, attempt }, "could not become the writer; retrying");
      await redis.discard();
      if (attempt >= config.writerAttemptsMax) {
        log.fatal("giving up becoming the writer");
        process.exit(1);
      }
      await new Promise((r) => setTimeout(r, config.writerRetryMs));
    }
  }
  return null;
}
