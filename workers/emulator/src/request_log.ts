/**
 * The request log: what clients sent, with every secret replaced by `[redacted]` (so that its
 * presence can still be asserted) and client assertions decoded (header and claims, never the
 * signature).
 *
 * @module
 */
import type { FaultKind, RouteName } from './faults.ts'
import { decodeJwt } from './util.ts'

/** Placeholder for a redacted value. */
export const REDACTED = '[redacted]'

const SECRET_FIELDS = new Set([
  'client_secret',
  'client_assertion',
  'refresh_token',
  'code',
  'code_verifier',
  'device_code',
  'password',
  'assertion',
])
const SECRET_HEADERS = new Set([
  'authorization',
  'secret',
  'x-identity-header',
  'cookie',
  'proxy-authorization',
])

/** One logged request. */
export interface RequestLogEntry {
  /** Sequence number, from 1. */
  seq: number
  /** When it arrived (ISO 8601, emulator clock). */
  time: string
  /** Route name, or `null` for a path the emulator does not serve. */
  route: RouteName | null
  /** HTTP method. */
  method: string
  /** Path without the query. */
  path: string
  /** Query parameters (secrets redacted). */
  query: Record<string, string>
  /** Request headers, lowercase names (secrets redacted). */
  headers: Record<string, string>
  /** Form fields of an `application/x-www-form-urlencoded` body (secrets redacted). */
  form?: Record<string, string>
  /** A `client_assertion`'s decoded header and claims (the signature is never kept). */
  assertion?: { header: Record<string, unknown>; claims: Record<string, unknown> }
  /** Response status (absent while the request is in flight). */
  status?: number
  /** The injected fault that answered, if any. */
  fault?: FaultKind
}

function redactParams(params: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of params) out[k] = SECRET_FIELDS.has(k) ? REDACTED : v
  return out
}

/** A bounded in-memory request log. */
export class RequestLog {
  #entries: RequestLogEntry[] = []
  #seq = 0
  limit: number

  constructor(limit: number) {
    this.limit = limit
  }

  /** Records a request; the returned entry is completed (status, fault) by the caller. */
  record(
    request: Request,
    url: URL,
    route: RouteName | null,
    form: URLSearchParams | null,
    now: number,
  ): RequestLogEntry {
    const headers: Record<string, string> = {}
    request.headers.forEach((v, k) => {
      headers[k] = SECRET_HEADERS.has(k) ? REDACTED : v
    })
    const entry: RequestLogEntry = {
      seq: ++this.#seq,
      time: new Date(now).toISOString(),
      route,
      method: request.method,
      path: url.pathname,
      query: redactParams(url.searchParams),
      headers,
    }
    if (form) {
      entry.form = redactParams(form)
      const assertion = form.get('client_assertion')
      if (assertion) {
        const decoded = decodeJwt(assertion)
        if (decoded) entry.assertion = decoded
      }
    }
    this.#entries.push(entry)
    if (this.#entries.length > this.limit) {
      this.#entries.splice(0, this.#entries.length - this.limit)
    }
    return entry
  }

  /** Entries, oldest first, optionally only those of one route. */
  list(filter?: { route?: RouteName | null }): RequestLogEntry[] {
    const all = filter?.route === undefined
      ? this.#entries
      : this.#entries.filter((e) => e.route === filter.route)
    return structuredClone(all)
  }

  /** Forgets every entry (the sequence continues). */
  clear(): void {
    this.#entries = []
  }
}
