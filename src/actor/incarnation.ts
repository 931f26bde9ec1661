/**
 * This process's incarnation: a random id drawn once at start, sent in its heartbeats. A restart is told apart by it,
 * not by the pid: in a container every start of an actor may get the same pid (1), and pids are reused on a host.
 */
import { randomBytes } from "node:crypto";

export const INCARNATION: string = randomBytes(8).toString("hex");
