/**
 * `redis-qjm run` and `nats-credentials` as an operator (or systemd) calls them: a bad configuration file, variable,
 * flag, id or role is one line on stderr and exit code 2, before anything starts (the systemd units do not restart on
 * 2). That a good one runs the actor is shown by netns.test.ts, whose every actor is started this way.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { actorProgram } from "../../src/util/package_root.js";

const CLI = actorProgram("cli");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qjm-runcli-"));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, content);
  return f;
}

/** Runs the CLI with no QJM_* variables of the runner's but `env`. */
function cli(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string; stdout: string } {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QJM_")));
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...clean, ...env }, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

test("run - a bad configuration, flag, id or role: one line on stderr, exit code 2", (t) => {
  const good = file("good.json", JSON.stringify({ cluster: "runcli", dataDir: path.join(dir, "data"), natsUrl: "nats://127.0.0.1:1" }));
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["run", "journal-node", "--id", "jn1", "--config", file("unknown.json", '{"natsURL": "x"}')], {}, /unknown key "natsURL"/],
    [["run", "data-node", "--id", "d1", "--config", file("type.json", '{"respPort": "6479"}')], {}, /"respPort" must be a whole number ≥ 0, not "6479"/],
    [["run", "data-node", "--id", "d1", "--config", file("notjson.json", "{")], {}, /notjson\.json: /],
    [["run", "journal-node", "--id", "jn1", "--config", path.join(dir, "missing.json")], {}, /missing\.json: ENOENT/],
    [["run", "journal-node", "--id", "jn1", "--config", good], { QJM_QUORUM_TIMEOUT_MS: "soon" }, /QJM_QUORUM_TIMEOUT_MS=soon: not a non-negative whole number/],
    [["run", "journal-node", "--id", "jn9", "--config", good], {}, /jn9: not one of the configuration's journalNodes \(jn1, jn2, jn3\)/],
    [["run", "data-node", "--id", "d1", "--config", good, "--resp-port", "x"], {}, /--resp-port x: not a non-negative whole number/],
    [["run", "data-node", "--id", "d1", "--port", "1"], {}, /unknown argument --port/],
    [["run", "journal-node"], {}, /journal-node needs --id <id>/],
    [["run", "sentinel", "--id", "s1"], {}, /run: no role sentinel/],
    [["nats-credentials", "--config", good], {}, /nats-credentials needs --out <dir>/],
    [["status", "--config", file("unknown2.json", '{"clusterName": "x"}')], {}, /unknown key "clusterName"/],
  ];
  for (const [args, env, message] of cases) {
    const r = cli(args, env);
    t.is(r.status, 2, args.join(" "));
    t.regex(r.stderr, message, args.join(" "));
    t.is(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
  }
});

test("nats-credentials - writes the users of the file's cluster; a second run without --force refuses to replace them", (t) => {
  const config = file("creds.json", JSON.stringify({ cluster: "runcli", dataNodes: ["a", "b", "c"] }));
  const out = path.join(dir, "creds");
  const first = cli(["nats-credentials", "--out", out, "--config", config]);
  t.is(first.status, 0, first.stderr);
  t.deepEqual(fs.readdirSync(out).sort(), ["a.creds", "admin.creds", "b.creds", "c.creds", "client.creds", "jn1.creds", "jn2.creds", "jn3.creds", "qjm-nats-auth.conf"]);
  const again = cli(["nats-credentials", "--out", out, "--config", config]);
  t.is(again.status, 2);
  t.regex(again.stderr, /--force/);
  t.is(cli(["nats-credentials", "--out", out, "--config", config, "--force"]).status, 0);
});
