/**
 * Becoming the writer over NATS: drives the RecoveryCore (the procedure itself, pure) with the JournalClient.
 * Every request of a phase goes out at once; each answer (or its timeout, as an error reply) goes back to the core.
 */
import type { Config } from "../config/config.js";
import type { Logger } from "../util/log.js";
import type { JournalClient } from "./journal_client.js";
import { RecoveryCore, type RecoveryOutput, type WriterStart } from "./recovery_core.js";

export type { WriterStart } from "./recovery_core.js";

export function establishWriter(jc: JournalClient, config: Config, log: Logger, newClusterId: string): Promise<WriterStart> {
  const core = new RecoveryCore(config.journalNodes, config, newClusterId);
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
