/**
 * Fault injection: "the next N responses of route X fail like this", plus the bodies a broken
 * upstream sends (malformed JSON, an HTML error page, nothing, too much, a cut connection).
 *
 * @module
 */
import { entraTimestamp, escapeHtml, json, randomHex, utf8 } from './util.ts'

/** Names of the emulated routes, used by faults, latency and the request log. */
export type RouteName =
  | 'entra.token'
  | 'entra.token.v1'
  | 'entra.devicecode'
  | 'entra.authorize'
  | 'entra.devicelogin'
  | 'entra.openid-configuration'
  | 'entra.instance-discovery'
  | 'entra.jwks'
  | 'mi.imds'
  | 'mi.app-service'
  | 'mi.azureml'
  | 'mi.cloud-shell'
  | 'mi.arc'
  | 'mi.service-fabric'
  | 'arm.subscriptions'
  | 'arm.tenants'
  | 'run-history.token'

/** Every {@link RouteName}. */
export const ROUTE_NAMES: readonly RouteName[] = Object.freeze(
  [
    'entra.token',
    'entra.token.v1',
    'entra.devicecode',
    'entra.authorize',
    'entra.devicelogin',
    'entra.openid-configuration',
    'entra.instance-discovery',
    'entra.jwks',
    'mi.imds',
    'mi.app-service',
    'mi.azureml',
    'mi.cloud-shell',
    'mi.arc',
    'mi.service-fabric',
    'arm.subscriptions',
    'arm.tenants',
    'run-history.token',
  ] as const,
)

/**
 * How an injected fault answers:
 * - `status`: the given status (default 503) with a body in the route's own error shape (or `body`);
 * - `malformed-json`: `application/json` that does not parse (status default 200);
 * - `html`: an HTML error page (status default 502), as a proxy in front of the service sends;
 * - `empty`: no body at all (status default 200);
 * - `oversized`: a JSON body of `bytes` bytes (default 4 MiB, status default 200);
 * - `drop`: headers and part of a body, then the stream errors so the client sees a reset.
 */
export type FaultKind = 'status' | 'malformed-json' | 'html' | 'empty' | 'oversized' | 'drop'

/** Every {@link FaultKind}. */
export const FAULT_KINDS: readonly FaultKind[] = Object.freeze(
  [
    'status',
    'malformed-json',
    'html',
    'empty',
    'oversized',
    'drop',
  ] as const,
)

/** One armed fault. */
export interface FaultSpec {
  /** The route it applies to, or `*` for every emulated route. */
  route: RouteName | '*'
  /** Default `status`. */
  kind?: FaultKind
  /** How many matching responses fail (default 1). */
  count?: number
  /** Let this many matching requests through first (default 0). */
  skip?: number
  /** HTTP status (defaults per kind, see {@link FaultKind}). */
  status?: number
  /** `Retry-After` header value (seconds or an HTTP date). */
  retryAfter?: number | string
  /** Extra response headers. */
  headers?: Record<string, string>
  /** For `status`: the body to send instead of the route's error shape (objects are sent as JSON). */
  body?: string | Record<string, unknown>
  /** For `oversized`: body size in bytes. */
  bytes?: number
  /** Extra delay before answering, milliseconds. */
  delayMs?: number
}

/** An armed fault as listed by `faults()`: the spec plus what is left of it. */
export interface ArmedFault extends FaultSpec {
  /** Responses still to fail. */
  remaining: number
  /** Matching requests still to let through first. */
  skipRemaining: number
}

/** Validates a fault spec, throwing `TypeError`/`RangeError` naming the field. */
export function validateFault(spec: unknown): FaultSpec {
  if (typeof spec !== 'object' || spec === null) throw new TypeError('fault must be an object')
  const f = spec as FaultSpec
  if (f.route !== '*' && !ROUTE_NAMES.includes(f.route)) {
    throw new RangeError(`fault.route must be '*' or one of: ${ROUTE_NAMES.join(', ')}`)
  }
  if (f.kind !== undefined && !FAULT_KINDS.includes(f.kind)) {
    throw new RangeError(`fault.kind must be one of: ${FAULT_KINDS.join(', ')}`)
  }
  if (f.count !== undefined && !(f.count >= 1)) throw new RangeError('fault.count must be >= 1')
  if (f.skip !== undefined && !(f.skip >= 0)) throw new RangeError('fault.skip must be >= 0')
  if (
    f.status !== undefined && !(Number.isInteger(f.status) && f.status >= 200 && f.status <= 599)
  ) {
    throw new RangeError('fault.status must be an HTTP status between 200 and 599')
  }
  if (f.bytes !== undefined && !(f.bytes >= 1 && f.bytes <= 256 * 1024 * 1024)) {
    throw new RangeError('fault.bytes must be between 1 and 256 MiB')
  }
  return f
}

/** The queue of armed faults. */
export class FaultQueue {
  #faults: ArmedFault[] = []

  /** Arms a fault. */
  add(spec: FaultSpec): void {
    const f = validateFault(spec)
    this.#faults.push({ ...f, remaining: f.count ?? 1, skipRemaining: f.skip ?? 0 })
  }

  /** Takes the fault that applies to this request, if any (first armed first). */
  take(route: RouteName): ArmedFault | undefined {
    for (let i = 0; i < this.#faults.length; i++) {
      const f = this.#faults[i]!
      if (f.route !== '*' && f.route !== route) continue
      if (f.skipRemaining > 0) {
        f.skipRemaining--
        return undefined
      }
      f.remaining--
      if (f.remaining <= 0) this.#faults.splice(i, 1)
      return f
    }
    return undefined
  }

  /** Snapshot of the armed faults. */
  list(): ArmedFault[] {
    return this.#faults.map((f) => ({ ...f }))
  }

  /** Disarms every fault. */
  clear(): void {
    this.#faults = []
  }
}

function family(route: RouteName): 'entra' | 'mi' | 'arm' {
  if (route.startsWith('entra.')) return 'entra'
  if (route.startsWith('mi.')) return 'mi'
  return 'arm'
}

function defaultErrorBody(route: RouteName, status: number, origin: string, now: number): unknown {
  const f = family(route)
  if (f === 'entra') {
    const code = status === 429 ? 50196 : 90033
    const trace = crypto.randomUUID()
    const corr = crypto.randomUUID()
    const ts = entraTimestamp(now)
    const error = status >= 500 || status === 429 ? 'temporarily_unavailable' : 'invalid_request'
    const text = status === 429
      ? 'The server is throttling requests. Retry later.'
      : 'A transient error has occurred. Please try again.'
    return {
      error,
      error_description:
        `AADSTS${code}: ${text}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${corr}\r\nTimestamp: ${ts}`,
      error_codes: [code],
      timestamp: ts,
      trace_id: trace,
      correlation_id: corr,
      error_uri: `${origin}/error?code=${code}`,
    }
  }
  if (f === 'mi') {
    return {
      error: status === 429 ? 'too_many_requests' : 'service_unavailable',
      error_description: status === 429
        ? 'Temporarily throttled, too many requests'
        : `Injected fault: HTTP ${status}`,
    }
  }
  return {
    error: {
      code: status === 429 ? 'TooManyRequests' : 'ServiceUnavailable',
      message: `Injected fault: HTTP ${status}`,
    },
  }
}

/** Builds the response of a fault. */
export function faultResponse(
  fault: FaultSpec,
  route: RouteName,
  origin: string,
  now: number,
): Response {
  const kind = fault.kind ?? 'status'
  const headers = new Headers(fault.headers)
  headers.set('x-emulator-fault', kind)
  headers.set('cache-control', 'no-store')
  if (fault.retryAfter !== undefined) headers.set('retry-after', String(fault.retryAfter))
  switch (kind) {
    case 'status': {
      const status = fault.status ?? 503
      if (typeof fault.body === 'string') return new Response(fault.body, { status, headers })
      return json(fault.body ?? defaultErrorBody(route, status, origin, now), status, headers)
    }
    case 'malformed-json':
      headers.set('content-type', 'application/json; charset=utf-8')
      return new Response('{"token_type":"Bearer","access_token":"eyJ', {
        status: fault.status ?? 200,
        headers,
      })
    case 'html': {
      const status = fault.status ?? 502
      headers.set('content-type', 'text/html; charset=utf-8')
      return new Response(
        `<!DOCTYPE html><html><head><title>${status} Bad Gateway</title></head><body>` +
          `<h1>${status} Bad Gateway</h1><p>${escapeHtml(route)} is unavailable.</p>` +
          `<hr><address>emulator-proxy</address></body></html>`,
        { status, headers },
      )
    }
    case 'empty':
      return new Response(null, { status: fault.status ?? 200, headers })
    case 'oversized': {
      const size = fault.bytes ?? 4 * 1024 * 1024
      headers.set('content-type', 'application/json; charset=utf-8')
      headers.set('content-length', String(size))
      const prefix = utf8('{"padding":"')
      const suffix = utf8('"}')
      let sent = 0
      const chunk = new Uint8Array(64 * 1024).fill(0x61)
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0 && size >= prefix.length + suffix.length) {
            controller.enqueue(prefix)
            sent += prefix.length
            return
          }
          const left = size - sent
          const tail = size >= prefix.length + suffix.length ? suffix.length : 0
          if (left <= tail) {
            if (tail) controller.enqueue(suffix)
            controller.close()
            return
          }
          const n = Math.min(chunk.length, left - tail)
          controller.enqueue(chunk.subarray(0, n))
          sent += n
        },
      })
      return new Response(body, { status: fault.status ?? 200, headers })
    }
    case 'drop': {
      headers.set('content-type', 'application/json; charset=utf-8')
      const partial = utf8(`{"token_type":"Bearer","access_token":"${randomHex(64)}`)
      let step = 0
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (step++ === 0) controller.enqueue(partial)
          else controller.error(new Error('emulated connection reset'))
        },
      })
      return new Response(body, { status: fault.status ?? 200, headers })
    }
  }
}
