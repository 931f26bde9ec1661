/**
 * The bus over TLS (issue #14 item 3): the files a connection presents, nats-server's `tls` block, and the certificates
 * of a local cluster, made by infra/tls/make-certs.sh (the one place certificates are made; operators run it by hand
 * for other hosts). nats-server requires a client certificate signed by the cluster's CA (`verify: true`): a
 * connection without one is refused at the handshake, before the per-role NATS users (auth.ts) are even asked.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { natsUrls, type Config } from "../config/config.js";
import { packageRoot } from "../util/package_root.js";

/** What a connection presents and trusts: files (`caFile`…) or PEM text (`ca`…), as nats.js takes them. */
export interface NatsTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/** infra/tls/make-certs.sh. */
export function makeCertsScript(): string {
  return path.join(packageRoot(), "infra", "tls", "make-certs.sh");
}

/**
 * Seconds nats-server gives a TLS handshake (its default, half a second, is less than a loaded machine's actor may
 * take; the connection would be dropped and dialled again and again). Below NATS_AUTH_TIMEOUT_S, as nats-server wants.
 */
export const NATS_TLS_TIMEOUT_S = 5;

/** `<dataDir>/tls`: where the local cluster keeps its CA and certificates. */
export function tlsDir(dataDir: string): string {
  return path.join(path.resolve(dataDir), "tls");
}

/** The files make-certs.sh writes in `dir`. */
export function certFiles(dir: string): { ca: string; caKey: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string } {
  const f = (name: string): string => path.join(dir, name);
  return { ca: f("ca.pem"), caKey: f("ca-key.pem"), serverCert: f("server.pem"), serverKey: f("server-key.pem"), clientCert: f("client.pem"), clientKey: f("client-key.pem") };
}

/**
 * Whether the bus is TLS: QJM_TLS=1, or a `tls://` server in QJM_NATS_URL (what `npm start --tls` prints, copied into
 * a client's environment, needs nothing more).
 */
export function tlsEnabled(config: Pick<Config, "tls" | "natsUrl">): boolean {
  return config.tls === 1 || natsUrls(config.natsUrl).some((u) => /^tls:\/\//i.test(u));
}

/** What this process's connections present: QJM_TLS_CA/_CERT/_KEY, each by default under `<dataDir>/tls`; null without TLS. */
export function clientTls(config: Pick<Config, "tls" | "natsUrl" | "tlsCa" | "tlsCert" | "tlsKey" | "dataDir">): NatsTls | null {
  if (!tlsEnabled(config)) return null;
  const made = certFiles(tlsDir(config.dataDir));
  return { caFile: config.tlsCa || made.ca, certFile: config.tlsCert || made.clientCert, keyFile: config.tlsKey || made.clientKey };
}

/** The URL of a server of ours on loopback: `tls://` says, to whoever reads it, that the port speaks only TLS. */
export function loopbackNatsUrl(port: number, tls: boolean): string {
  return `${tls ? "tls" : "nats"}://127.0.0.1:${port}`;
}

/** nats-server's `tls` block, for clients (top level) and for routes (in `cluster`): its certificate, the CA it checks peers by. */
export interface NatsServerTls {
  cert_file: string;
  key_file: string;
  ca_file: string;
  verify: true;
  timeout: number;
}

export function natsServerTls(dir: string): NatsServerTls {
  const f = certFiles(dir);
  return { cert_file: f.serverCert, key_file: f.serverKey, ca_file: f.ca, verify: true, timeout: NATS_TLS_TIMEOUT_S };
}

/**
 * The `tls` block of a `cluster`: as for clients, and the peer's certificate must also name the host of one of the
 * configured routes, so that a client certificate of the same CA (it names no host) cannot join as a route and bypass
 * every user's permissions. nats-server 2.9 matches DNS names only, not IP addresses: routes name `localhost`.
 */
export interface NatsRouteTls extends Omit<NatsServerTls, "verify"> {
  verify_cert_and_check_known_urls: true;
}

export function natsRouteTls(tls: NatsServerTls): NatsRouteTls {
  const { verify: _verify, ...rest } = tls;
  return { ...rest, verify_cert_and_check_known_urls: true };
}

/** The host routes on loopback are dialled by: with TLS, a name the peer's certificate holds (natsRouteTls). */
export function loopbackRouteHost(tls: boolean): string {
  return tls ? "localhost" : "127.0.0.1";
}

/** The top-level block of nats-server's configuration (nats-server reads JSON values). */
export function natsTlsConf(tls: NatsServerTls): string {
  return `# TLS only, with a client certificate of the cluster's CA (src/nats/tls.ts).\ntls ${JSON.stringify(tls, null, 2)}\n`;
}

/**
 * Makes what is missing of `dir`'s CA and certificates (make-certs.sh never overwrites a file); `names`: more DNS
 * names or addresses for nats-server's certificate. Throws with the script's output when it fails.
 */
export function makeCertificates(dir: string, names: readonly string[] = []): void {
  const script = makeCertsScript();
  const r = spawnSync("bash", [script, dir, ...names], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script} ${dir} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || "").trim()}`);
}

/**
 * What to try, appended to an error connecting to NATS that looks like a TLS mismatch: a TLS-only bus reached without
 * TLS, a plain server reached with it, or (nats.js does not see TLS 1.3's late alert for a refused client certificate)
 * a timeout with TLS on. Empty when nothing points at TLS.
 */
export function tlsHint(message: string, tlsOn: boolean): string {
  if (!tlsOn && /certificate|tls|ssl/i.test(message)) return " (the bus takes TLS only? set QJM_TLS=1: certificates from $QJM_DATA_DIR/tls, or QJM_TLS_CA, QJM_TLS_CERT, QJM_TLS_KEY)";
  if (tlsOn && /does not support 'tls'|tls.*not available/i.test(message)) return " (this nats-server does not take TLS: unset QJM_TLS)";
  if (tlsOn && /timeout/i.test(message)) return " (with TLS, a client certificate nats-server refuses shows as a timeout: is QJM_TLS_CERT signed by the server's CA?)";
  return "";
}
