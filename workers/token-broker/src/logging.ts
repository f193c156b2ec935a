/**
 * Structured logs: one JSON line per request (request id, method, route pattern, caller id,
 * status, duration and a non-secret reason). The sink is injectable so tests can read the lines;
 * nothing that reaches it is a secret or a token (headers and bodies are never logged, and the
 * route is the pattern, not the path).
 *
 * @module
 */

/** Receives one JSON line. */
export type LogSink = (line: string) => void

/** Fields of a log line. */
export type LogFields = Record<string, unknown>

/** The default sink: `console.log`, which Workers Logs and `wrangler tail` collect. */
export const consoleSink: LogSink = (line: string): void => {
  // deno-lint-ignore no-console
  console.log(line)
}

/**
 * Writes one line; a failing sink is ignored (logging never fails a request).
 *
 * @param sink the sink
 * @param level `info`, `warn` or `error`
 * @param fields the fields (undefined ones are dropped by JSON)
 */
export function writeLog(sink: LogSink, level: 'info' | 'warn' | 'error', fields: LogFields): void {
  try {
    sink(JSON.stringify({ ts: new Date().toISOString(), level, ...fields }))
  } catch {
    // ignore
  }
}

/** A request id from `X-Request-Id` when it is short and plain, else a new UUID. */
export function requestId(header: string | null): string {
  return header !== null && /^[A-Za-z0-9._:-]{1,64}$/.test(header) ? header : crypto.randomUUID()
}
