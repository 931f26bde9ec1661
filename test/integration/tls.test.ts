/**
 * The bus over TLS (issue #14 item 3): a cluster whose three nats-servers take TLS only, with a client certificate of
 * the cluster's CA, routes over TLS as well, passes the write-path check; a plain connection, a TLS one without a
 * client certificate (or with another CA's), and one with a certificate but no credentials are refused; the client
 * library and the CLI with the client's certificate and credentials write.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import tls from "node:tls";
import path from "node:path";
import test from "ava";
import { connect as natsConnect } from "@nats-io/transport-node";
import { connect } from "../../src/client/index.js";
import { envName } from "../../src/config/config.js";
import { CLIENT_USER, credsFile, natsAuthOptions, readNatsCredentials } from "../../src/nats/auth.js";
import { connectBus } from "../../src/nats/bus.js";
import { certFiles, clientTls, makeCertificates, tlsDir } from "../../src/nats/tls.js";
import { startTestCluster, type TestCluster } from "../helpers/harness.js";
import { checkWritePath } from "../helpers/write_path_check.js";
import { actorProgram } from "../../src/util/package_root.js";

const CLI_JS = actorProgram("cli");

let tc: TestCluster | undefined;
const otherCa = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-tls-other-ca-"));
test.before(async () => {
  tc = await startTestCluster("tls", { natsServers: 3 }, { tls: true, natsMonitor: true });
});
test.after.always(async () => {
  await tc?.stop();
  fs.rmSync(otherCa, { recursive: true, force: true });
});

const firstUrl = (): string => tc!.cluster.natsServers[0].url;
const clientCreds = () => natsAuthOptions(readNatsCredentials(credsFile(tc!.cluster.dataDir, CLIENT_USER)));

/**
 * A plain TCP client of `port`: it sends the protocol in the clear at once (as a client that ignores tls_required
 * would) and collects what comes back until the server closes the connection.
 */
async function plainDial(port: number): Promise<string> {
  const socket = net.connect(port, "127.0.0.1", () => socket.write('CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n'));
  let received = "";
  socket.on("data", (d) => (received += d.toString("latin1")));
  socket.on("error", () => {});
  // Bounded: a server that kept a plain connection open fails the test rather than hanging it.
  const timer = setTimeout(() => socket.destroy(), 10_000);
  await new Promise<void>((resolve) => socket.on("close", () => resolve()));
  clearTimeout(timer);
  return received;
}

/**
 * A TLS handshake with the first server presenting `cert` (or none), then CONNECT and PING in it: the TLS alert the
 * server sends (its refusal of the certificate), or the server's first answer.
 */
async function tlsDial(cert: { certFile: string; keyFile: string } | null): Promise<string> {
  const plain = net.connect(tc!.cluster.natsServers[0].port, "127.0.0.1");
  // nats-server speaks first (INFO), then the client starts TLS on the same connection.
  await new Promise((resolve) => plain.once("data", resolve));
  const ca = fs.readFileSync(certFiles(tlsDir(tc!.cluster.dataDir)).ca);
  const pem = cert === null ? {} : { cert: fs.readFileSync(cert.certFile), key: fs.readFileSync(cert.keyFile) };
  const socket = tls.connect({ socket: plain, servername: "localhost", ca, ...pem }, () => socket.write("CONNECT {}\r\nPING\r\n"));
  try {
    return await new Promise<string>((resolve) => {
      socket.on("error", (e: NodeJS.ErrnoException) => resolve(`alert ${e.code}`));
      socket.on("data", (d) => resolve(d.toString()));
      socket.on("close", () => resolve("closed"));
    });
  } finally {
    socket.destroy();
  }
}

test.serial("tls - a TLS-only cluster of three nats-servers (routes over TLS) passes the write-path check", async (t) => {
  t.true(tc!.cluster.natsUrl.split(",").every((u) => u.startsWith("tls://")), tc!.cluster.natsUrl);
  const written = await checkWritePath(t, tc!, 20, 50);
  t.is(written, 1000);
  // Every server routes to both others (the writes crossed them: actors are spread over the servers).
  for (const s of tc!.cluster.natsServers) {
    const routez = (await (await fetch(`http://127.0.0.1:${s.monitorPort}/routez`)).json()) as { num_routes: number };
    t.is(routez.num_routes, 2, `server ${s.port}'s routes`);
  }
});

test.serial("tls - a plain connection is refused, on client and route ports", async (t) => {
  for (const s of tc!.cluster.natsServers) {
    const toClientPort = await plainDial(s.port);
    t.regex(toClientPort, /^INFO .*"tls_required":true/, `port ${s.port} says it requires TLS`);
    t.false(/PONG|\+OK/.test(toClientPort), `port ${s.port} answered a plain CONNECT: ${toClientPort}`);
    const toRoutePort = await plainDial(s.routePort!);
    t.false(/PONG|\+OK|INFO/.test(toRoutePort), `route port ${s.routePort} answered in the clear: ${toRoutePort}`);
  }
});

test.serial("tls - a client certificate does not make a route: a route's certificate must name a route's host", async (t) => {
  const ours = certFiles(tlsDir(tc!.cluster.dataDir));
  for (const s of tc!.cluster.natsServers) {
    const socket = tls.connect({ host: "127.0.0.1", port: s.routePort!, servername: "localhost", ca: fs.readFileSync(ours.ca), cert: fs.readFileSync(ours.clientCert), key: fs.readFileSync(ours.clientKey) }, () =>
      socket.write(`CONNECT ${JSON.stringify({ verbose: false, pedantic: false, tls_required: true, name: "intruder", cluster: `qjm-${tc!.cluster.cluster}` })}\r\nPING\r\n`),
    );
    let received = "";
    socket.on("data", (d) => (received += d.toString()));
    socket.on("error", () => {});
    const timer = setTimeout(() => socket.destroy(), 10_000);
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    clearTimeout(timer);
    t.regex(received, /-ERR 'Authorization Violation'/, `route port ${s.routePort}`);
    t.false(received.includes("PONG"));
  }
});

test.serial("tls - a TLS connection without a client certificate, or with another CA's, is refused at the handshake", async (t) => {
  makeCertificates(otherCa);
  const other = certFiles(otherCa);
  t.is(await tlsDial(null), "alert ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "no certificate");
  t.is(await tlsDial({ certFile: other.clientCert, keyFile: other.clientKey }), "alert ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "another CA's certificate");
  // The same through nats.js: it does not see TLS 1.3's late alert, so its connect fails at its own timeout.
  const ca = certFiles(tlsDir(tc!.cluster.dataDir)).ca;
  await t.throwsAsync(natsConnect({ servers: firstUrl(), tls: { caFile: ca }, timeout: 2000, ignoreClusterUpdates: true, ...clientCreds() }));
  // Nor does a client trust a server whose certificate another CA signed (it would hand it its credentials).
  await t.throwsAsync(connectBus(firstUrl(), "wrong-ca", credsFile(tc!.cluster.dataDir, CLIENT_USER), { tls: { caFile: other.ca, certFile: other.clientCert, keyFile: other.clientKey } }), { message: /certificate/i });
  // Our client certificate, in the same raw handshake: nats-server answers (and wants credentials).
  const ours = certFiles(tlsDir(tc!.cluster.dataDir));
  t.regex(await tlsDial({ certFile: ours.clientCert, keyFile: ours.clientKey }), /Authorization Violation/);
});

test.serial("tls - with the client certificate but no credentials, the connection is refused", async (t) => {
  await t.throwsAsync(connectBus(firstUrl(), "no-creds", null, { tls: clientTls(tc!.cluster.config) }), { message: /authorization/i });
});

test.serial("tls - with the client's certificate and credentials, the client library and the CLI (QJM_TLS=1, or tls:// URLs) write", async (t) => {
  const { dataDir, natsUrl, cluster } = tc!.cluster;
  const client = await connect({ servers: natsUrl, cluster, credsFile: credsFile(dataDir, CLIENT_USER), tls: clientTls(tc!.cluster.config) });
  try {
    const w = await client.write("SET", "over-tls", "1");
    t.true(w.txid > 0);
  } finally {
    await client.close();
  }
  // No tls option: the tls:// URLs ask for it, and the files default to $QJM_DATA_DIR/tls.
  const savedDataDir = process.env[envName("dataDir")];
  process.env[envName("dataDir")] = dataDir;
  try {
    const byUrl = await connect({ servers: natsUrl, cluster, credsFile: credsFile(dataDir, CLIENT_USER) });
    t.true((await byUrl.write("SET", "over-tls-by-url", "1")).txid > 0);
    await byUrl.close();
  } finally {
    if (savedDataDir === undefined) delete process.env[envName("dataDir")];
    else process.env[envName("dataDir")] = savedDataDir;
  }
  const cli = (args: string[], url: string, tlsFlag: string) => {
    const env = { ...process.env, [envName("natsUrl")]: url, [envName("dataDir")]: dataDir, [envName("cluster")]: cluster, [envName("natsCredsFile")]: "", [envName("tls")]: tlsFlag };
    return spawnSync(process.execPath, [CLI_JS, ...args], { env, encoding: "utf8", timeout: 30000 });
  };
  const asNats = natsUrl.replace(/tls:\/\//g, "nats://");
  const write = cli(["write", "SET", "from-cli-over-tls", "v"], asNats, "1");
  t.is(write.status, 0, write.stderr);
  t.regex(write.stdout, /"ok":true/);
  // The tls:// URLs npm start --tls prints are enough on their own.
  const status = cli(["status", "--json"], natsUrl, "0");
  t.is(status.status, 0, status.stderr);
  t.is((JSON.parse(status.stdout) as unknown[]).length, 6);
  const plain = cli(["status"], asNats, "0");
  t.is(plain.status, 1, "the CLI without TLS is refused");
  t.regex(plain.stderr, /certificate.*set QJM_TLS=1/);
});
