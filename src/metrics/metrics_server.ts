/**
 * An actor's metrics endpoint: node:http answering GET /metrics with the Prometheus text, anything else 404. Bounded:
 * a few connections (METRICS_CONNECTIONS_MAX), a request must arrive whole within METRICS_REQUEST_TIMEOUT_MS, and no
 * request body is ever read — a request that announces one is refused and its connection closed. A port already
 * taken is logged and the actor serves on without metrics (status then names no URL): metrics never stop the journal.
 */
import http from "node:http";
import os from "node:os";
import { METRICS_CONNECTIONS_MAX, METRICS_REQUEST_TIMEOUT_MS } from "../config/config.js";
import type { Logger } from "../util/log.js";

export interface MetricsServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface MetricsSource {
  scrape(): Promise<string>;
  readonly contentType: string;
}

/** The URL a scraper on another host can use: a wildcard address names this host instead. */
export function metricsUrlOf(host: string, port: number): string {
  const named = host === "0.0.0.0" || host === "::" || host === "" ? os.hostname() : host;
  return `http://${named.includes(":") ? `[${named}]` : named}:${port}/metrics`;
}

/** True for a request that carries (or announces) a body: never read, refused. */
function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

function refuse(res: http.ServerResponse, status: number, text: string): void {
  // Connection: close, so whatever the client sent after its headers is not read on our behalf.
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" });
  res.end(text);
}

function handle(source: MetricsSource, log: Logger, req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = (req.url ?? "").split("?")[0];
  if (hasBody(req)) return refuse(res, 400, "no request body is read here\n");
  if (path !== "/metrics") return refuse(res, 404, "not found: GET /metrics\n");
  if (req.method !== "GET" && req.method !== "HEAD") return refuse(res, 405, "GET /metrics\n");
  source.scrape().then(
    (body) => {
      res.writeHead(200, { "Content-Type": source.contentType, "Content-Length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
    },
    (err: Error) => {
      log.warn({ err }, "metrics scrape failed");
      refuse(res, 500, "scrape failed\n");
    },
  );
}

/** Listens on host:port; null (logged) when it cannot. */
export async function startMetricsServer(host: string, port: number, source: MetricsSource, log: Logger): Promise<MetricsServer | null> {
  const server = http.createServer({ requestTimeout: METRICS_REQUEST_TIMEOUT_MS, headersTimeout: METRICS_REQUEST_TIMEOUT_MS }, (req, res) => handle(source, log, req, res));
  server.maxConnections = METRICS_CONNECTIONS_MAX;
  server.keepAliveTimeout = METRICS_REQUEST_TIMEOUT_MS;
  server.on("clientError", (_err, socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    log.error({ err, host, port }, "the metrics endpoint cannot listen: serving without metrics");
    return null;
  }
  server.on("error", (err) => log.error({ err }, "metrics endpoint error"));
  const url = metricsUrlOf(host, port);
  log.info({ metrics: url }, "metrics endpoint listening");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
