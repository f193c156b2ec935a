/**
 * The wrapper every emulated route goes through: reads the form body once, logs the request
 * (redacted), adds the configured latency, answers with an armed fault if one applies, and turns
 * thrown Entra errors into Entra responses.
 *
 * @module
 */
import type { Context, Handler } from 'hono'
import { EntraError, entraErrorResponse } from './entra_errors.ts'
import { faultResponse, type RouteName } from './faults.ts'
import type { EmulatorCore } from './state.ts'
import { json, sleep } from './util.ts'

/** Largest request body accepted, bytes. */
export const MAX_BODY_BYTES = 1024 * 1024

/** A request as the route handlers see it. */
export interface Incoming {
  request: Request
  url: URL
  /** `scheme://host[:port]` the client used. */
  origin: string
  /** The form body (also for an empty body of a POST), or `null` for GET. */
  form: URLSearchParams
  /** `client-request-id` header, echoed as the Entra correlation id. */
  correlationId: string | null
}

/** A route handler. */
export type RouteHandler = (c: Context, r: Incoming) => Promise<Response> | Response

async function readForm(request: Request): Promise<URLSearchParams | Response> {
  if (request.method === 'GET' || request.method === 'HEAD' || !request.body) {
    return new URLSearchParams()
  }
  const declared = Number(request.headers.get('content-length') ?? '0')
  if (declared > MAX_BODY_BYTES) return tooLarge()
  const buf = await request.arrayBuffer()
  if (buf.byteLength > MAX_BODY_BYTES) return tooLarge()
  const type = request.headers.get('content-type') ?? ''
  if (type && !type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    return new URLSearchParams()
  }
  return new URLSearchParams(new TextDecoder().decode(buf))
}

function tooLarge(): Response {
  return json({
    error: 'invalid_request',
    error_description: `Request body larger than ${MAX_BODY_BYTES} bytes`,
  }, 413)
}

/** Wraps a handler with logging, latency, faults and Entra error rendering. */
export function route(core: EmulatorCore, name: RouteName, handler: RouteHandler): Handler {
  return async (c: Context) => {
    const request = c.req.raw
    const url = new URL(request.url)
    const formOrError = await readForm(request)
    const form = formOrError instanceof Response ? null : formOrError
    const entry = core.log.record(request, url, name, form, core.now())
    const incoming: Incoming = {
      request,
      url,
      origin: url.origin,
      form: form ?? new URLSearchParams(),
      correlationId: request.headers.get('client-request-id'),
    }
    let res: Response
    try {
      if (formOrError instanceof Response) {
        res = formOrError
      } else {
        const latency = (core.settings.latency[name] ?? 0) + (core.settings.latency['*'] ?? 0)
        if (latency > 0) await sleep(latency)
        const fault = core.faults.take(name)
        if (fault) {
          entry.fault = fault.kind ?? 'status'
          if (fault.delayMs) await sleep(fault.delayMs)
          res = faultResponse(fault, name, incoming.origin, core.now())
        } else {
          res = await handler(c, incoming)
        }
      }
    } catch (err) {
      if (!(err instanceof EntraError)) {
        entry.status = 500
        throw err
      }
      res = entraErrorResponse(err, {
        origin: incoming.origin,
        correlationId: incoming.correlationId,
        now: core.now(),
      })
    }
    entry.status = res.status
    return res
  }
}
