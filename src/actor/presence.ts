/** Heartbeats and status: what every actor shows of itself on the bus. */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { serve } from "../nats/bus.js";
import { encode } from "../protocol/codec.js";
import type { ActorStatus } from "../protocol/messages.js";
import { subjects, type Role } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";

export interface Presence {
  /** A heartbeat now, beside the timer's (a master that starts serving says so at once). */
  beat(): void;
  stop(): void;
}

export function startPresence(nc: NatsConnection, cluster: string, intervalMs: number, status: () => ActorStatus, log: Logger): Presence {
  const s = subjects(cluster);
  const beat = () => {
    const { details: _details, redisUrl: _url, metricsUrl: _metrics, rate: _rate, ...heartbeat } = status();
    try {
      nc.publish(s.heartbeat(heartbeat.role, heartbeat.id), encode(heartbeat));
    } catch (err) {
      log.debug({ err }, "heartbeat not sent");
    }
  };
  const timer = setInterval(beat, intervalMs);
  beat();
  const sub = serve(nc, s.status, log, () => status());
  return {
    beat,
    stop() {
      clearInterval(timer);
      sub.unsubscribe();
    },
  };
}

/** Hears the heartbeats of every actor of `role`: `onBeat` gets the id its subject names and its body. */
export function hearHeartbeats(
  nc: NatsConnection,
  cluster: string,
  role: Role,
  onBeat: (id: string, data: Uint8Array) => void,
): Subscription {
  return nc.subscribe(subjects(cluster).heartbeat(role, "*"), {
    callback: (err, msg) => {
      const id = msg?.subject.split(".").at(-1);
      if (!err && id !== undefined) onBeat(id, msg.data);
    },
  });
}
