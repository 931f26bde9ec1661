/** The configuration file layer (`--config qjm.json`, QJM_CONFIG_FILE) and `redis-qjm run`'s flags. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { parseFlags } from "../../src/actor/roles.js";
import { ConfigError, defaults, loadConfig } from "../../src/config/config.js";
import { configuredActorUsers, NATS_AUTH_INCLUDE, writeDeployCredentials } from "../../src/nats/deploy_credentials.js";
import { readNatsCredentials } from "../../src/nats/auth.js";

const dirs: string[] = [];
test.after.always(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function configFile(content: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-configfile-"));
  dirs.push(dir);
  const file = path.join(dir, "qjm.json");
  fs.writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

test("config file - its values sit between the defaults and the environment", (t) => {
  const file = configFile({ cluster: "prod", quorumTimeoutMs: 4000, dataNodes: ["a", "b", "c"], natsUrl: "nats://10.0.0.1:4222,nats://10.0.0.2:4222" });
  const c = loadConfig({ QJM_CONFIG_FILE: file, QJM_QUORUM_TIMEOUT_MS: "2500" });
  t.is(c.cluster, "prod");
  t.is(c.quorumTimeoutMs, 2500, "the environment overrides the file");
  t.deepEqual(c.dataNodes, ["a", "b", "c"]);
  t.is(c.natsUrl, "nats://10.0.0.1:4222,nats://10.0.0.2:4222");
  t.is(c.batchBytesMax, defaults.batchBytesMax, "what the file does not name keeps its default");
  t.is(c.configFile, file);
  t.is(loadConfig({}, { configFile: file }).cluster, "prod", "overrides may name the file too");
});

test("config file - an unknown key, a wrong type, bad JSON or a missing file is a one-line ConfigError naming the file", (t) => {
  const cases: [unknown, RegExp][] = [
    [{ natsURL: "x" }, /unknown key "natsURL"/],
    [{ configFile: "other.json" }, /unknown key "configFile"/],
    [{ quorumTimeoutMs: "3000" }, /"quorumTimeoutMs" must be a whole number ≥ 0, not "3000"/],
    [{ quorumTimeoutMs: -1 }, /"quorumTimeoutMs" must be a whole number/],
    [{ quorumTimeoutMs: 1.5 }, /"quorumTimeoutMs" must be a whole number/],
    [{ journalNodes: "jn1,jn2" }, /"journalNodes" must be a list of strings/],
    [{ journalNodes: ["jn1", 2] }, /"journalNodes" must be a list of strings/],
    [{ cluster: 7 }, /"cluster" must be a string/],
    [[1, 2], /not a JSON object/],
    ["{ not json", /configuration file .*qjm\.json: /],
    [{ masterTimeoutMs: 10 }, /invalid configuration: masterTimeoutMs must be at least three master heartbeats/],
  ];
  for (const [content, message] of cases) {
    const err = t.throws(() => loadConfig({ QJM_CONFIG_FILE: configFile(content) }), { instanceOf: ConfigError, message }, JSON.stringify(content));
    t.false(err?.message.includes("\n"), "one line");
  }
  t.throws(() => loadConfig({ QJM_CONFIG_FILE: "/nonexistent/qjm.json" }), { instanceOf: ConfigError, message: /\/nonexistent\/qjm\.json: ENOENT/ });
  t.throws(() => loadConfig({ QJM_QUORUM_TIMEOUT_MS: "x" }), { instanceOf: ConfigError });
});

test("run flags - --name value pairs of the role's flags only", (t) => {
  t.deepEqual([...parseFlags(["--id", "d1", "--config", "q.json"], ["id", "config"])], [["id", "d1"], ["config", "q.json"]]);
  t.throws(() => parseFlags(["--id"], ["id"]), { instanceOf: ConfigError, message: "--id needs a value" });
  t.throws(() => parseFlags(["--id", "--config", "x"], ["id", "config"]), { instanceOf: ConfigError, message: "--id needs a value" });
  t.throws(() => parseFlags(["--port", "1"], ["id"]), { instanceOf: ConfigError, message: /unknown argument --port/ });
  t.throws(() => parseFlags(["d1"], ["id"]), { instanceOf: ConfigError, message: /unknown argument d1/ });
});

test("nats-credentials - a user per configured actor, client and admin; the include file holds public keys only; never overwritten silently", (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-deploycreds-"));
  dirs.push(out);
  const config = loadConfig({}, { cluster: "prod" });
  const users = writeDeployCredentials(config, out, false);
  t.deepEqual(users, ["client", "admin", "jn1", "jn2", "jn3", "d1", "d2", "d3"]);
  const include = fs.readFileSync(path.join(out, NATS_AUTH_INCLUDE), "utf8");
  for (const user of users) {
    const creds = readNatsCredentials(path.join(out, `${user}.creds`));
    t.is(creds.cluster, "prod");
    t.false(include.includes(creds.seed), `${user}'s seed stays in its own file`);
    t.is(fs.statSync(path.join(out, `${user}.creds`)).mode & 0o077, 0, "owner-only");
  }
  t.regex(include, /max_payload: 1048576/);
  t.throws(() => writeDeployCredentials(config, out, false), { instanceOf: ConfigError, message: /--force/ });
  t.notThrows(() => writeDeployCredentials(config, out, true));
  t.deepEqual(configuredActorUsers({ ...config, dataNodes: [] }).map((u) => `${u.name}:${u.role}`), ["jn1:journal", "jn2:journal", "jn3:journal", "m1:master", "r1:replica", "r2:replica"]);
});

test("three-host example - each host's qjm.json loads, and the systemd units run `redis-qjm run <role> --id %i --config /etc/redis-qjm/qjm.json`", (t) => {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
  const example = path.join(root, "infra/examples/three-hosts");
  for (const k of [1, 2, 3]) {
    const c = loadConfig({ QJM_CONFIG_FILE: path.join(example, `host-${k}`, "qjm.json") });
    t.is(c.respHost, `10.0.0.${k}`);
    t.is(c.natsUrl.split(",")[0], `nats://10.0.0.${k}:4222`, "each host's actors try their own host's nats-server first");
  }
  for (const [unit, role] of [["redis-qjm-journal@.service", "journal-node"], ["redis-qjm-data@.service", "data-node"]]) {
    const text = fs.readFileSync(path.join(root, "infra/systemd", unit), "utf8");
    t.regex(text, new RegExp(`^ExecStart=/usr/bin/npx --no-install redis-qjm run ${role} --id %i --config /etc/redis-qjm/qjm.json$`, "m"), unit);
    t.regex(text, /^Restart=always$/m, unit);
    t.regex(text, /^LimitNOFILE=\d+$/m, unit);
  }
});
