// A tiny loopback HTTP server for tests: records every request (method, path, headers, body)
// and answers with a handler. Real HTTP on 127.0.0.1, port chosen by the OS.

/** A request as the server saw it. */
export interface SeenRequest {
  method: string
  url: URL
  headers: Headers
  body: string
  form: URLSearchParams
}

/** A running loopback server. */
export interface Loopback {
  origin: string
  requests: SeenRequest[]
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** Starts a server; the handler gets the parsed request and its index (0 for the first). */
export function serveLoopback(
  handler: (req: SeenRequest, index: number, signal: AbortSignal) => Response | Promise<Response>,
): Loopback {
  const requests: SeenRequest[] = []
  const closing = new AbortController()
  const server = Deno.serve(
    { hostname: '127.0.0.1', port: 0, onListen() {}, signal: closing.signal },
    async (req) => {
      const body = await req.text()
      const seen: SeenRequest = {
        method: req.method,
        url: new URL(req.url),
        headers: req.headers,
        body,
        form: new URLSearchParams(body),
      }
      requests.push(seen)
      return await handler(seen, requests.length - 1, AbortSignal.any([req.signal, closing.signal]))
    },
  )
  const addr = server.addr as Deno.NetAddr
  const close = async () => {
    closing.abort()
    await server.finished
  }
  return {
    origin: `http://127.0.0.1:${addr.port}`,
    requests,
    close,
    [Symbol.asyncDispose]: close,
  }
}

/** Resolves after `ms`, or at once (resolving) when the signal aborts, never leaking a timer. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** A TCP listener that accepts and immediately drops every connection (a reset). */
export function serveReset(): { origin: string; accepted: () => number; close(): void } {
  const listener = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  let n = 0
  ;(async () => {
    try {
      for await (const conn of listener) {
        n++
        conn.close()
      }
    } catch {
      // listener closed
    }
  })()
  return {
    origin: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted: () => n,
    close: () => listener.close(),
  }
}

/** A fake clock: `now()` moves only when told; `sleep` advances it instantly. */
export function fakeClock(start = 1_700_000_000_000): {
  now: () => number
  advance: (ms: number) => void
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
  slept: number[]
} {
  let t = start
  const slept: number[] = []
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
    sleep: (ms, signal) => {
      if (signal?.aborted) return Promise.reject(signal.reason)
      slept.push(ms)
      t += ms
      return Promise.resolve()
    },
    slept,
  }
}

/** A JWT-shaped string (unsigned) with the given claims, for code that only reads claims. */
export function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) =>
    btoa(JSON.stringify(o)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.sig`
}
