/** The bus over TLS (issue #14 item 3): configuration, nats-server's tls blocks, and make-certs.sh's files. */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { defaults, loadConfig, validateConfig } from "../../src/config/config.js";
import { natsClusterConf } from "../../src/nats/nats_server.js";
import { certFiles, clientTls, loopbackNatsUrl, makeCertsScript, makeCertificates, natsServerTls, natsTlsConf, NATS_TLS_TIMEOUT_S, tlsEnabled, tlsHint } from "../../src/nats/tls.js";

test("tls - QJM_TLS and the file paths: off by default; on, each file defaults under <dataDir>/tls", (t) => {
  t.is(loadConfig({}).tls, 0);
  t.is(clientTls(loadConfig({})), null);
  const on = loadConfig({ QJM_TLS: "1", QJM_DATA_DIR: "/srv/qjm" });
  t.deepEqual(clientTls(on), { caFile: "/srv/qjm/tls/ca.pem", certFile: "/srv/qjm/tls/client.pem", keyFile: "/srv/qjm/tls/client-key.pem" });
  const own = loadConfig({ QJM_TLS: "1", QJM_TLS_CA: "/etc/qjm/ca.pem", QJM_TLS_CERT: "/etc/qjm/app.pem", QJM_TLS_KEY: "/etc/qjm/app-key.pem" });
  t.deepEqual(clientTls(own), { caFile: "/etc/qjm/ca.pem", certFile: "/etc/qjm/app.pem", keyFile: "/etc/qjm/app-key.pem" });
  t.throws(() => loadConfig({ QJM_TLS: "2" }), { message: /tls must be 0 \(plain\) or 1/ });
  t.throws(() => loadConfig({ QJM_TLS: "yes" }), { message: /QJM_TLS=yes: not a non-negative whole number/ });
  t.deepEqual(validateConfig({ ...defaults, tls: 1 }), []);
  // A tls:// server in the list (what npm start --tls prints) is a TLS bus as well.
  t.deepEqual(clientTls(loadConfig({ QJM_NATS_URL: "tls://10.0.0.1:4222,tls://10.0.0.2:4222", QJM_DATA_DIR: "/srv/qjm" }))?.caFile, "/srv/qjm/tls/ca.pem");
  t.true(tlsEnabled(loadConfig({ QJM_NATS_URL: "TLS://a:4222" })));
  t.false(tlsEnabled(loadConfig({ QJM_NATS_URL: "nats://a:4222" })));
});

test("tls - nats-server's blocks: clients and routes need a certificate of the CA (verify), with a handshake timeout", (t) => {
  const tls = natsServerTls("/d/tls");
  t.deepEqual(tls, { cert_file: "/d/tls/server.pem", key_file: "/d/tls/server-key.pem", ca_file: "/d/tls/ca.pem", verify: true, timeout: NATS_TLS_TIMEOUT_S });
  const conf = natsTlsConf(tls);
  t.regex(conf, /^# .*\ntls \{\n/);
  t.deepEqual(JSON.parse(conf.slice(conf.indexOf("{"))), tls);
  const cluster = natsClusterConf({ serverName: "a", clusterName: "c", routePort: 6222, routePorts: [6222, 6223], tls });
  const block = JSON.parse(cluster.slice(cluster.indexOf("{"))) as { tls: unknown; routes: string[] };
  const { verify: _verify, ...rest } = tls;
  t.deepEqual(block.tls, { ...rest, verify_cert_and_check_known_urls: true }, "routes over TLS, the peer's certificate naming a route's host");
  t.deepEqual(block.routes, ["nats-route://localhost:6223"], "a DNS name: nats-server 2.9 checks no IP address");
  const plain = natsClusterConf({ serverName: "a", clusterName: "c", routePort: 6222, routePorts: [6222, 6223] });
  t.false(plain.includes("tls"), "no TLS asked: plain routes");
  t.true(plain.includes("nats-route://127.0.0.1:6223"));
  t.is(loopbackNatsUrl(4222, true), "tls://127.0.0.1:4222");
  t.is(loopbackNatsUrl(4222, false), "nats://127.0.0.1:4222");
});

test("tls - make-certs.sh: a CA, a server and a client certificate, keys 0600; never overwrites; extra names in the server's", (t) => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "qjm-certs-")), "tls");
  try {
    makeCertificates(dir, ["node1.example", "10.1.2.3"]);
    const f = certFiles(dir);
    t.is(fs.statSync(dir).mode & 0o777, 0o700);
    for (const key of [f.caKey, f.serverKey, f.clientKey]) t.is(fs.statSync(key).mode & 0o777, 0o600, key);
    const openssl = (...args: string[]): string => execFileSync("openssl", args, { encoding: "utf8" });
    t.regex(openssl("verify", "-CAfile", f.ca, f.serverCert, f.clientCert), /server.pem: OK\n.*client.pem: OK/);
    const san = openssl("x509", "-in", f.serverCert, "-noout", "-ext", "subjectAltName");
    for (const name of ["DNS:localhost", "IP Address:127.0.0.1", "DNS:node1.example", "IP Address:10.1.2.3"]) t.true(san.includes(name), `${name} in ${san}`);
    t.regex(openssl("x509", "-in", f.serverCert, "-noout", "-ext", "extendedKeyUsage"), /Server Authentication, TLS Web Client Authentication/, "server auth, and client auth for routes");
    t.regex(openssl("x509", "-in", f.clientCert, "-noout", "-ext", "extendedKeyUsage"), /TLS Web Client Authentication/);

    const before = Object.values(f).map((file) => fs.readFileSync(file, "utf8"));
    const again = spawnSync("bash", [makeCertsScript(), dir, "node2.example"], { encoding: "utf8" });
    t.is(again.status, 0);
    t.deepEqual(Object.values(f).map((file) => fs.readFileSync(file, "utf8")), before, "nothing overwritten");
    t.regex(again.stderr, /server.pem does not name node2.example: delete server.pem and server-key.pem/);
    // A lost client certificate is issued again by the same CA.
    fs.rmSync(f.clientCert);
    fs.rmSync(f.clientKey);
    makeCertificates(dir);
    t.regex(openssl("verify", "-CAfile", f.ca, f.clientCert), /OK/);
    t.is(fs.readFileSync(f.serverCert, "utf8"), before[2]);
  } finally {
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

test("tls - a connection error that looks like a TLS mismatch says what to try", (t) => {
  t.regex(tlsHint("unable to verify the first certificate", false), /set QJM_TLS=1/);
  t.regex(tlsHint("server does not support 'tls'", true), /unset QJM_TLS/);
  t.regex(tlsHint("timeout", true), /QJM_TLS_CERT signed by the server's CA/);
  t.is(tlsHint("timeout", false), "");
  t.is(tlsHint("Authorization Violation", true), "");
});

test("tls - make-certs.sh without a directory is a usage error", (t) => {
  const r = spawnSync("bash", [makeCertsScript()], { encoding: "utf8" });
  t.is(r.status, 2);
  t.regex(r.stderr, /usage: .*make-certs.sh <dir>/);
  t.throws(() => makeCertificates("--bad"), { message: /failed \(2\)/ });
});
