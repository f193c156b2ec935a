/**
 * The one HTTP layer. Every request any credential makes goes through {@linkcode sendRequest}:
 * per-attempt timeout, the caller's `AbortSignal` (also during back-off), bounded retries with
 * exponential back-off and jitter, `Retry-After`, a total deadline and a response-size cap. It
 * throws only for transport failures; a completed response (any status) is returned for a
 * separate parse step, so every error path can be tested on its own.
 *
 * @module
 */
import { AmlAuthError } from './errors.ts'

/** The `fetch` signature this package needs; pass your own to intercept or instrument. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** Retry and timeout settings, common to every credential (`retry` option). */
export interface RetryOptions {
  /** Retries after the first attempt (default 3). */
  maxRetries?: number
  /** First back-off delay in ms before jitter (default 800). */
  baseDelayMs?: number
  /** Longest single back-off delay in ms (default 30 000). */
  maxDelayMs?: number
  /** Upper bound in ms for all attempts and waits together (default 60 000). */
  totalTimeoutMs?: number
}

/** What the transport needs from a credential. */
export interface HttpContext {
  /** The fetch implementation. */
  fetch: FetchLike
  /** Per-attempt timeout in ms. */
  timeoutMs: number
  /** Retry settings. */
  retry: Required<RetryOptions>
  /** Clock in ms. */
  now: () => number
  /** Waits `ms`, rejecting at once when `signal` aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Largest response body accepted, in bytes. */
  maxBodyBytes: number
}

/** Decides whether a status is retried: attempt counts from 1 (the first retry). */
export type RetryPredicate = (
  status: number,
  state: { attempt: number; elapsedMs: number; maxRetries: number },
) => boolean

/** 408, 429 and 5xx while retries remain: the set for Entra ID and most managed-identity sources. */
export function _retryStandard(
  status: number,
  s: { attempt: number; maxRetries: number },
): boolean {
  return s.attempt <= s.maxRetries && (status === 408 || status === 429 || status >= 500)
}

/** One request, described as data. */
export interface HttpRequest {
  /** `GET` or `POST`. */
  method: 'GET' | 'POST'
  /** Target URL. */
  url: string | URL
  /** Extra headers. */
  headers?: Record<string, string>
  /** Form fields, sent as `application/x-www-form-urlencoded`; undefined values are dropped. */
  form?: Record<string, string | undefined>
  /** Human name of the endpoint for messages, e.g. `the Entra ID token endpoint`. */
  what: string
  /** Which statuses are retried (default {@linkcode _retryStandard}). */
  retryOn?: RetryPredicate
  /** Overrides of the context's retry settings for this request (IMDS waits longer). */
  retry?: Partial<RetryOptions>
  /** The caller's signal: aborts at once, including during back-off. */
  signal?: AbortSignal | undefined
  /**
   * Whether connection failures and attempt timeouts are retried (default true). IMDS turns this
   * off: on a host without it, a dropped packet means "not on Azure", not "try again".
   */
  retryNetworkErrors?: boolean
}

/** A completed response whose body has been read (bounded). */
export interface HttpResponse {
  /** HTTP status. */
  status: number
  /** Response headers. */
  headers: Headers
  /** Body text. */
  body: string
  /** The raw response (body already consumed). */
  raw: Response
  /** Attempts made, 1 when the first one succeeded. */
  attempts: number
}

/** Default sleep: a timer that the signal cancels. */
export function _sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Builds an {@linkcode HttpContext} from common credential options. */
export function _httpContext(options: {
  fetch?: FetchLike | undefined
  timeoutMs?: number | undefined
  retry?: RetryOptions | undefined
  now?: (() => number) | undefined
  sleep?: ((ms: number, signal?: AbortSignal) => Promise<void>) | undefined
}): HttpContext {
  const f = options.fetch ?? ((input, init) => fetch(input, init))
  return {
    fetch: f,
    timeoutMs: options.timeoutMs ?? 10_000,
    retry: {
      maxRetries: options.retry?.maxRetries ?? 3,
      baseDelayMs: options.retry?.baseDelayMs ?? 800,
      maxDelayMs: options.retry?.maxDelayMs ?? 30_000,
      totalTimeoutMs: options.retry?.totalTimeoutMs ?? 60_000,
    },
    now: options.now ?? Date.now,
    sleep: options.sleep ?? _sleep,
    maxBodyBytes: 1 << 20,
  }
}

/**
 * How long a server asked us to wait, in ms: `retry-after-ms`, `x-ms-retry-after-ms`, then
 * `Retry-After` as seconds or an HTTP date. `undefined` when absent or unreadable.
 */
export function _retryAfterMs(headers: Headers, nowMs: number): number | undefined {
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const v = headers.get(name)
    if (v !== null && /^\d+(\.\d+)?$/.test(v.trim())) return Number(v)
  }
  const ra = headers.get('retry-after')
  if (ra === null) return undefined
  const t = ra.trim()
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000
  const date = Date.parse(t)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

function backoff(retry: Required<RetryOptions>, attempt: number): number {
  const exp = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1))
  return exp / 2 + Math.random() * (exp / 2)
}

function originOf(url: string | URL): string {
  try {
    return new URL(url).origin
  } catch {
    return 'the endpoint'
  }
}

async function readBounded(res: Response, max: number, what: string): Promise<string> {
  const declared = Number(res.headers.get('content-length'))
  if (declared > max) {
    await res.body?.cancel()
    throw tooLarge(what, max, res.status)
  }
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > max) {
      await reader.cancel()
      throw tooLarge(what, max, res.status)
    }
    chunks.push(value)
  }
  const all = new Uint8Array(size)
  let off = 0
  for (const c of chunks) {
    all.set(c, off)
    off += c.byteLength
  }
  return new TextDecoder().decode(all)
}

function tooLarge(what: string, max: number, status: number): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_TOO_LARGE',
    `The response of ${what} is larger than ${max} bytes; check that the endpoint is an identity service`,
    { status },
  )
}

function aborted(what: string): AmlAuthError {
  return new AmlAuthError('ERR_ABORTED', `The request to ${what} was aborted by the caller`)
}

/**
 * Sends one logical request with retries. Returns the final response whatever its status;
 * throws {@linkcode AmlAuthError} for timeouts (`ERR_TIMEOUT`), caller aborts (`ERR_ABORTED`),
 * connection failures (`ERR_NETWORK`) and oversized bodies (`ERR_RESPONSE_TOO_LARGE`).
 */
export async function sendRequest(ctx: HttpContext, req: HttpRequest): Promise<HttpResponse> {
  const retry = { ...ctx.retry, ...req.retry }
  const retryOn = req.retryOn ?? _retryStandard
  const start = ctx.now()
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers }
  let body: string | undefined
  if (req.form) {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(req.form)) if (v !== undefined) params.set(k, v)
    body = params.toString()
    headers['content-type'] = 'application/x-www-form-urlencoded;charset=utf-8'
  }
  const signal = req.signal
  for (let attempt = 1;; attempt++) {
    if (signal?.aborted) throw aborted(req.what)
    const elapsed = ctx.now() - start
    const remaining = retry.totalTimeoutMs - elapsed
    if (remaining <= 0) {
      throw new AmlAuthError(
        'ERR_TIMEOUT',
        `${req.what} did not give a usable answer within ${retry.totalTimeoutMs} ms over ${
          attempt - 1
        } attempts`,
      )
    }
    const attemptMs = Math.min(ctx.timeoutMs, remaining)
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, attemptMs)
    const onAbort = () => controller.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    let res: Response
    let text: string
    try {
      res = await ctx.fetch(req.url, {
        method: req.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: controller.signal,
        redirect: 'manual',
      })
      text = await readBounded(res, ctx.maxBodyBytes, req.what)
    } catch (e) {
      if (e instanceof AmlAuthError) throw e
      if (signal?.aborted) throw aborted(req.what)
      const state = { attempt, elapsedMs: ctx.now() - start, maxRetries: retry.maxRetries }
      const err = timedOut
        ? new AmlAuthError(
          'ERR_TIMEOUT',
          `${req.what} did not answer within ${attemptMs} ms; check connectivity or raise timeoutMs`,
        )
        : new AmlAuthError(
          'ERR_NETWORK',
          `Could not connect to ${req.what} at ${
            originOf(req.url)
          }; check the endpoint and the network`,
          { cause: e },
        )
      if (req.retryNetworkErrors === false || state.attempt > state.maxRetries) throw err
      await wait(ctx, backoff(retry, attempt), signal, req.what)
      continue
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const state = { attempt, elapsedMs: ctx.now() - start, maxRetries: retry.maxRetries }
    if (res.status < 400 || !retryOn(res.status, state)) {
      return { status: res.status, headers: res.headers, body: text, raw: res, attempts: attempt }
    }
    const asked = _retryAfterMs(res.headers, ctx.now())
    const delay = asked ?? backoff(retry, attempt)
    // A wait past the deadline cannot end in success: hand back the refusal now.
    if (ctx.now() - start + delay >= retry.totalTimeoutMs) {
      return { status: res.status, headers: res.headers, body: text, raw: res, attempts: attempt }
    }
    await wait(ctx, delay, signal, req.what)
  }
}

async function wait(
  ctx: HttpContext,
  ms: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<void> {
  try {
    await ctx.sleep(ms, signal)
  } catch {
    throw aborted(what)
  }
}

/**
 * Parses a response body as a JSON object, turning empty bodies, HTML pages and garbage into
 * `ERR_RESPONSE_INVALID` errors that say what arrived instead.
 */
export function _parseJsonObject(res: HttpResponse, what: string): Record<string, unknown> {
  const text = res.body.trim()
  if (text === '') {
    throw invalid(`The response of ${what} (status ${res.status}) has an empty body`, res.status)
  }
  const type = res.headers.get('content-type') ?? ''
  if (type.includes('text/html') || text.startsWith('<')) {
    throw invalid(
      `${what} answered with an HTML page (status ${res.status}) instead of JSON; check the endpoint URL`,
      res.status,
    )
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw invalid(`The response of ${what} (status ${res.status}) is not valid JSON`, res.status)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(`The response of ${what} (status ${res.status}) is not a JSON object`, res.status)
  }
  return value as Record<string, unknown>
}

function invalid(message: string, status: number): AmlAuthError {
  return new AmlAuthError('ERR_RESPONSE_INVALID', message, { status })
}
