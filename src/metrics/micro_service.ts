/**
 * Each actor as an instance of the NATS micro-service `qjm` (@nats-io/services): it answers $SRV.PING, $SRV.INFO and
 * $SRV.STATS (all, `.qjm`, `.qjm.<instance>`), so `nats micro ls` lists every actor of every cluster on the bus, with
 * its cluster, id, role and metrics URL in the metadata. It serves no endpoint: discovery only.
 *
 * @nats-io/services 3.0.0-25 is typed against its own copy of @nats-io/nats-core (3.0.0-50), ours is 3.4.0: the two
 * NatsConnection types differ only in how the header `Match` option is declared (an enum there, a string union here),
 * so the connection is passed through one cast. At runtime the service only subscribes, responds and watches closed(),
 * which 3.4.0 does as 3.0.0-50 did: test/integration/metrics.test.ts checks PING and INFO against real actors.
 */
import { Svcm, type Service } from "@nats-io/services";
import type { NatsConnection } from "../nats/bus.js";
import { MICRO_SERVICE_NAME } from "../protocol/subjects.js";
import type { Logger } from "../util/log.js";
import type { ActorLabels } from "./actor_metrics.js";
import { packageVersion } from "../util/package_root.js";

type ServicesConnection = ConstructorParameters<typeof Svcm>[0];

export interface MicroService {
  readonly instanceId: string;
  stop(): Promise<void>;
}

/** Registers this actor; null (logged) when it cannot (the service keeps the actor serving: discovery is not the journal). */
export async function startMicroService(nc: NatsConnection, labels: ActorLabels, metricsUrl: string | null, log: Logger): Promise<MicroService | null> {
  let svc: Service;
  try {
    svc = await new Svcm(nc as unknown as ServicesConnection).add({
      name: MICRO_SERVICE_NAME,
      version: packageVersion(),
      description: `redis-qjm ${labels.role} ${labels.id} of cluster ${labels.cluster}`,
      // The micro protocol's metadata is string → string: no metrics endpoint is "".
      metadata: { cluster: labels.cluster, id: labels.id, role: labels.role, metricsUrl: metricsUrl ?? "" },
    });
  } catch (err) {
    log.error({ err }, "cannot register the NATS micro-service: $SRV requests go unanswered");
    return null;
  }
  // A subscription refused by nats-server (no permission for $SRV) stops the service: say so.
  void svc.stopped.then((err) => {
    if (err !== null) log.error({ err }, "the NATS micro-service stopped: $SRV requests go unanswered");
  });
  return {
    instanceId: svc.info().id,
    stop: async () => {
      await svc.stop().catch(() => {});
    },
  };
}
