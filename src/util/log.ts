import { pino, type Logger } from "pino";

export type { Logger };

/** pino JSON lines; pretty when stdout is a terminal. QJM_LOG_LEVEL sets the level (default info). */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.QJM_LOG_LEVEL ?? "info";
  const pretty = process.stdout.isTTY === true && process.env.QJM_LOG_JSON === undefined;
  const logger = pretty
    ? pino({ name, level, transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l" } } })
    : pino({ name, level });
  return logger.child(bindings);
}
