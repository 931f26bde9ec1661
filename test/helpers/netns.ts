/**
 * Hosts on this machine, for tests: network namespaces joined by veth pairs to a bridge in the root namespace, each
 * with its own loopback and address on a 10.213.<n>.0/24 subnet, and processes run in them (`ip netns exec`). A host
 * is cut off by iptables DROP rules inside its namespace (its sockets stay open and hear nothing, as with a pulled
 * cable) and healed by flushing them. Needs root, iproute2 and iptables (infra/setup.sh installs them).
 *
 * Names carry this process's pid (namespaces qjmt<pid>-<host>, bridge qjb<pid>, veths qjv<pid>h<k>): a run that
 * crashed leaves names no other run takes, and the next run removes those whose pid is gone (cleanLeftovers).
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import { promisify } from "node:util";
import { startChild, type Child } from "../../src/process/child.js";

const run = promisify(execFile);
const NS_PREFIX = "qjmt";
const BRIDGE_PREFIX = "qjb";
/** The root namespace's FORWARD rule that lets the bridge's hosts talk whatever the machine's policy; tagged with this. */
const RULE_TAG = "qjm-netns";

/** Runs a command; an Error carrying its stderr when it fails. */
export async function sh(command: string, ...args: string[]): Promise<string> {
  try {
    return (await run(command, args)).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${command} ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

/** Why this machine cannot run the lab (not root, no `ip`, no `iptables`); null when it can. */
export function labUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "the network-namespace test creates namespaces, veths and iptables rules: it must run as root";
  for (const tool of ["ip", "iptables"]) {
    if (!["/usr/sbin", "/sbin", "/usr/bin", "/bin"].some((d) => fs.existsSync(`${d}/${tool}`))) return `${tool} is missing: run infra/setup.sh (it installs iproute2 and iptables)`;
  }
  return null;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes the namespaces, bridges and FORWARD rules of earlier runs whose process is gone (never a live run's). */
export async function cleanLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const dead = (name: string, prefix: string): boolean => {
    const pid = Number(/^\d+/.exec(name.slice(prefix.length))?.[0]);
    return Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
  };
  for (const line of (await sh("ip", "netns", "list")).split("\n")) {
    const name = line.split(" ")[0];
    if (name.startsWith(NS_PREFIX) && dead(name, NS_PREFIX)) {
      await sh("ip", "netns", "delete", name).catch(() => {});
      removed.push(name);
    }
  }
  for (const line of (await sh("ip", "-o", "link", "show", "type", "bridge")).split("\n")) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1];
    if (name !== undefined && name.startsWith(BRIDGE_PREFIX) && dead(name, BRIDGE_PREFIX)) {
      await sh("ip", "link", "delete", name).catch(() => {});
      removed.push(name);
    }
  }
  for (const rule of (await sh("iptables", "-S", "FORWARD")).split("\n")) {
    const m = new RegExp(`--comment "?${RULE_TAG}-(\\d+)"?`).exec(rule);
    if (m !== null && !pidAlive(Number(m[1]))) {
      await sh("iptables", ...rule.replace(/^-A /, "-D ").replace(/"/g, "").split(" ")).catch(() => {});
      removed.push(`FORWARD rule ${m[0]}`);
    }
  }
  return removed;
}

export interface Host {
  readonly name: string;
  readonly ns: string;
  readonly address: string;
}

/** The bridge, its hosts, and the processes started in them (stopped by pid). */
export class NetnsLab {
  readonly hosts = new Map<string, Host>();
  /** Processes started, each with its tier: destroy() stops the higher tiers first (actors before their nats-servers). */
  private readonly children: { child: Child; tier: number }[] = [];
  private readonly bridge = `${BRIDGE_PREFIX}${process.pid}`;
  private readonly subnet = `10.213.${(process.pid % 250) + 1}`;
  private readonly tag = `${RULE_TAG}-${process.pid}`;
  private bridgeUp = false;
  private ruleAdded = false;

  /** The root namespace's own address on the bridge (the test's clients connect from there). */
  get gateway(): string {
    return `${this.subnet}.1`;
  }

  async createBridge(): Promise<void> {
    await sh("ip", "link", "add", this.bridge, "type", "bridge");
    this.bridgeUp = true;
    await sh("ip", "addr", "add", `${this.gateway}/24`, "dev", this.bridge);
    await sh("ip", "link", "set", this.bridge, "up");
    // With br_netfilter, bridged frames cross the root FORWARD chain: a DROP policy there (Docker's) would cut every host.
    await sh("iptables", "-I", "FORWARD", "-i", this.bridge, "-o", this.bridge, "-m", "comment", "--comment", this.tag, "-j", "ACCEPT");
    this.ruleAdded = true;
  }

  /** A host: its namespace (loopback up), a veth pair to the bridge, and address <subnet>.<octet>. */
  async addHost(name: string, octet: number): Promise<Host> {
    const ns = `${NS_PREFIX}${process.pid}-${name}`;
    const veth = `qjv${process.pid}h${this.hosts.size}`;
    const host: Host = { name, ns, address: `${this.subnet}.${octet}` };
    await sh("ip", "netns", "add", ns);
    this.hosts.set(name, host);
    await sh("ip", "-n", ns, "link", "set", "lo", "up");
    await sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
    await sh("ip", "link", "set", veth, "master", this.bridge, "up");
    await sh("ip", "-n", ns, "addr", "add", `${host.address}/24`, "dev", "eth0");
    await sh("ip", "-n", ns, "link", "set", "eth0", "up");
    return host;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (h === undefined) throw new Error(`no host ${name}`);
    return h;
  }

  /**
   * Starts `command args` inside the host's namespace (the same pid: ip execs it, and it dies with this process), output
   * into `logFile`. destroy() stops tier 1 before tier 0 (actors before the nats-servers they talk through).
   */
  spawn(host: string, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; logFile: string; tier?: number }): Child {
    const child = startChild("ip", ["netns", "exec", this.host(host).ns, command, ...args], { env: options.env, logFile: options.logFile });
    this.children.push({ child, tier: options.tier ?? 0 });
    return child;
  }

  /** Every packet in or out of the host but its loopback's is dropped: its peers hear nothing, nothing is reset. */
  async cut(host: string): Promise<void> {
    const ns = this.host(host).ns;
    await sh("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "!", "-i", "lo", "-j", "DROP");
    await sh("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP");
  }

  async heal(host: string): Promise<void> {
    const ns = this.host(host).ns;
    await sh("ip", "netns", "exec", ns, "iptables", "-F", "INPUT");
    await sh("ip", "netns", "exec", ns, "iptables", "-F", "OUTPUT");
  }

  /** Stops every process (SIGTERM, then SIGKILL), then removes the namespaces (their veths and rules go with them), the bridge and the rule. */
  async destroy(): Promise<void> {
    for (const tier of [...new Set(this.children.map((c) => c.tier))].sort((a, b) => b - a)) {
      await Promise.all(this.children.filter((c) => c.tier === tier).map((c) => c.child.stop("SIGTERM", 5000)));
    }
    for (const h of this.hosts.values()) await sh("ip", "netns", "delete", h.ns).catch(() => {});
    this.hosts.clear();
    if (this.bridgeUp) await sh("ip", "link", "delete", this.bridge).catch(() => {});
    if (this.ruleAdded) await sh("iptables", "-D", "FORWARD", "-i", this.bridge, "-o", this.bridge, "-m", "comment", "--comment", this.tag, "-j", "ACCEPT").catch(() => {});
    this.bridgeUp = this.ruleAdded = false;
  }
}
