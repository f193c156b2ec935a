import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertRejects,
  assertStringIncludes,
} from '@std/assert'
import { AmlAuthError, AuthenticationError } from '@aml-edge/auth'
import { _httpContext, _retryAfterMs, sendRequest } from '../src/http.ts'
import { _parseTokenResponse } from '../src/token_response.ts'
import { delay, fakeClock, serveLoopback, serveReset } from './_fixtures/loopback.ts'

const SECRET = 'super-secret-value-123'

function ctx(extra: Parameters<typeof _httpContext>[0] = {}) {
  return _httpContext({ timeoutMs: 2000, retry: { baseDelayMs: 5, maxDelayMs: 20 }, ...extra })
}

async function tokenFrom(origin: string, c = ctx()) {
  const res = await sendRequest(c, {
    method: 'POST',
    url: `${origin}/tenant/oauth2/v2.0/token`,
    form: { client_id: 'app', client_secret: SECRET, grant_type: 'client_credentials' },
    what: 'the test token endpoint',
  })
  return {
    res,
    token: _parseTokenResponse(res, {
      what: 'the test token endpoint',
      now: Date.now(),
      secrets: [SECRET],
    }),
  }
}

function assertNoSecret(e: Error) {
  for (
    const text of [e.message, String(e), JSON.stringify(e), Deno.inspect(e), String(e.cause ?? '')]
  ) {
    assert(!text.includes(SECRET), 'secret leaked: ' + text)
  }
}

const ok = () => Response.json({ access_token: 'tok', expires_in: 3600, token_type: 'Bearer' })

for (const status of [408, 429, 500, 502, 503, 504]) {
  Deno.test(`sendRequest() retries status ${status} and then succeeds`, async () => {
    await using srv = serveLoopback((_r, i) => i === 0 ? new Response('busy', { status }) : ok())
    const { token, res } = await tokenFrom(srv.origin)
    assertEquals(token.token, 'tok')
    assertEquals(res.attempts, 2)
    assertEquals(srv.requests.length, 2)
    assertEquals(srv.requests[1]!.method, 'POST')
    assertEquals(srv.requests[1]!.form.get('grant_type'), 'client_credentials')
    assertStringIncludes(
      srv.requests[1]!.headers.get('content-type')!,
      'application/x-www-form-urlencoded',
    )
  })
}

Deno.test('sendRequest() does not retry 400 and the error carries no secret', async () => {
  await using srv = serveLoopback(() =>
    Response.json({
      error: 'invalid_client',
      error_description: `AADSTS7000215: Invalid client secret provided: ${SECRET}`,
      error_codes: [7000215],
      trace_id: 'trace-1',
      correlation_id: 'corr-1',
    }, { status: 401 })
  )
  const e = await assertRejects(() => tokenFrom(srv.origin), AuthenticationError)
  assertEquals(srv.requests.length, 1)
  assertEquals(e.code, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 401)
  assertEquals(e.errorCodes, [7000215])
  assertEquals(e.traceId, 'trace-1')
  assertEquals(e.correlationId, 'corr-1')
  assertEquals(e.error, 'invalid_client')
  assertStringIncludes(e.message, 'AADSTS7000215')
  assert(!Object.keys(e).includes('response'), 'raw response must be non-enumerable')
  assert(e.response instanceof Response)
  assertNoSecret(e)
})

Deno.test('sendRequest() gives up after maxRetries and returns the last refusal', async () => {
  await using srv = serveLoopback(() => new Response('down', { status: 503 }))
  const e = await assertRejects(
    () => tokenFrom(srv.origin, ctx({ retry: { maxRetries: 2, baseDelayMs: 1 } })),
    AuthenticationError,
  )
  assertEquals(srv.requests.length, 3)
  assertEquals(e.status, 503)
})

Deno.test('sendRequest() honours Retry-After in seconds', async () => {
  const clock = fakeClock()
  await using srv = serveLoopback((_r, i) =>
    i === 0 ? new Response('', { status: 429, headers: { 'retry-after': '7' } }) : ok()
  )
  await tokenFrom(srv.origin, ctx({ now: clock.now, sleep: clock.sleep }))
  assertEquals(clock.slept, [7000])
})

Deno.test('sendRequest() honours Retry-After as an HTTP date', async () => {
  const clock = fakeClock(Date.parse('2026-01-01T00:00:00Z'))
  const when = new Date(Date.parse('2026-01-01T00:00:12Z')).toUTCString()
  await using srv = serveLoopback((_r, i) =>
    i === 0 ? new Response('', { status: 503, headers: { 'retry-after': when } }) : ok()
  )
  await tokenFrom(srv.origin, ctx({ now: clock.now, sleep: clock.sleep }))
  assertEquals(clock.slept, [12000])
})

Deno.test('sendRequest() honours retry-after-ms and x-ms-retry-after-ms', () => {
  assertEquals(_retryAfterMs(new Headers({ 'retry-after-ms': '250' }), 0), 250)
  assertEquals(_retryAfterMs(new Headers({ 'x-ms-retry-after-ms': '40' }), 0), 40)
  assertEquals(_retryAfterMs(new Headers({ 'retry-after': 'soon' }), 0), undefined)
})

Deno.test('sendRequest() stops waiting when Retry-After passes the total deadline', async () => {
  const clock = fakeClock()
  await using srv = serveLoopback(() =>
    new Response('', { status: 429, headers: { 'retry-after': '3600' } })
  )
  const e = await assertRejects(
    () => tokenFrom(srv.origin, ctx({ now: clock.now, sleep: clock.sleep })),
    AuthenticationError,
  )
  assertEquals(e.status, 429)
  assertEquals(clock.slept, [])
  assertEquals(srv.requests.length, 1)
})

Deno.test('sendRequest() times out a slow attempt with ERR_TIMEOUT', async () => {
  await using srv = serveLoopback(async (_r, _i, signal) => {
    await delay(2000, signal)
    return ok()
  })
  const e = await assertRejects(
    () => tokenFrom(srv.origin, ctx({ timeoutMs: 100, retry: { maxRetries: 1, baseDelayMs: 1 } })),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_TIMEOUT')
  assertEquals(srv.requests.length, 2)
  assertStringIncludes(e.message, 'timeoutMs')
  assertNoSecret(e)
})

Deno.test('sendRequest() ends at once when the caller aborts during a back-off wait', async () => {
  await using srv = serveLoopback(() =>
    new Response('', { status: 503, headers: { 'retry-after': '30' } })
  )
  const controller = new AbortController()
  const started = Date.now()
  const p = sendRequest(ctx(), {
    method: 'GET',
    url: srv.origin,
    what: 'the test endpoint',
    signal: controller.signal,
  })
  setTimeout(() => controller.abort(), 50)
  const e = await assertRejects(() => p, AmlAuthError)
  assertEquals(e.code, 'ERR_ABORTED')
  assert(Date.now() - started < 5000)
  assertEquals(srv.requests.length, 1)
})

Deno.test('sendRequest() retries a connection reset, then fails with ERR_NETWORK', async () => {
  const srv = serveReset()
  try {
    const e = await assertRejects(
      () => tokenFrom(srv.origin, ctx({ retry: { maxRetries: 2, baseDelayMs: 1 } })),
      AmlAuthError,
    )
    assertEquals(e.code, 'ERR_NETWORK')
    assertGreaterOrEqual(srv.accepted(), 3)
    assertNoSecret(e)
  } finally {
    srv.close()
  }
})

const bodies: [string, () => Response, string][] = [
  [
    'garbage JSON',
    () => new Response('{"access_token": ', { headers: { 'content-type': 'application/json' } }),
    'not valid JSON',
  ],
  [
    'an HTML page',
    () =>
      new Response('<html><body>Sign in</body></html>', {
        headers: { 'content-type': 'text/html' },
      }),
    'HTML page',
  ],
  ['an empty body', () => new Response(''), 'empty body'],
  ['a JSON array', () => Response.json([1, 2]), 'not a JSON object'],
  [
    '200 without access_token',
    () => Response.json({ token_type: 'Bearer', expires_in: 3600 }),
    'no access_token',
  ],
  [
    '200 without expiry',
    () => Response.json({ access_token: 'x' }),
    'neither expires_on nor expires_in',
  ],
  [
    'a bad expires_on',
    () => Response.json({ access_token: 'x', expires_on: 'tomorrow' }),
    'expires_on is not a number or date',
  ],
]
for (const [name, make, text] of bodies) {
  Deno.test(`_parseTokenResponse() turns ${name} into ERR_RESPONSE_INVALID`, async () => {
    await using srv = serveLoopback(make)
    const e = await assertRejects(() => tokenFrom(srv.origin), AmlAuthError)
    assertEquals(e.code, 'ERR_RESPONSE_INVALID')
    assertStringIncludes(e.message, text)
    assertNoSecret(e)
  })
}

Deno.test('sendRequest() refuses an oversized body with ERR_RESPONSE_TOO_LARGE', async () => {
  await using srv = serveLoopback(() => {
    const chunk = new Uint8Array(64 * 1024).fill(97)
    let sent = 0
    return new Response(
      new ReadableStream({
        pull(c) {
          if (sent++ >= 40) return c.close()
          c.enqueue(chunk)
        },
      }),
    )
  })
  const e = await assertRejects(() => tokenFrom(srv.origin), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_TOO_LARGE')
  assertNoSecret(e)
})

Deno.test('sendRequest() refuses a declared oversized Content-Length without reading it', async () => {
  await using srv = serveLoopback(() => new Response('x'.repeat(2 << 20)))
  const e = await assertRejects(() => tokenFrom(srv.origin), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_TOO_LARGE')
})

Deno.test('sendRequest() does not follow redirects (a secret never travels to another host)', async () => {
  await using other = serveLoopback(ok)
  await using srv = serveLoopback(() =>
    new Response(null, { status: 307, headers: { location: other.origin } })
  )
  const e = await assertRejects(() => tokenFrom(srv.origin), AuthenticationError)
  assertEquals(e.status, 307)
  assertEquals(other.requests.length, 0)
})

Deno.test('sendRequest() sends through an injected fetch', async () => {
  const seen: string[] = []
  const c = ctx({
    fetch: (input) => {
      seen.push(String(input))
      return Promise.resolve(ok())
    },
  })
  const res = await sendRequest(c, { method: 'GET', url: 'https://example.test/x', what: 'x' })
  assertEquals(res.status, 200)
  assertEquals(seen, ['https://example.test/x'])
})

Deno.test('sendRequest() fails at once on a connection failure when retryNetworkErrors is off', async () => {
  const srv = serveReset()
  try {
    const e = await assertRejects(
      () =>
        sendRequest(ctx(), {
          method: 'GET',
          url: srv.origin,
          what: 'the test endpoint',
          retryNetworkErrors: false,
        }),
      AmlAuthError,
    )
    assertEquals(e.code, 'ERR_NETWORK')
    assertEquals(srv.accepted(), 1)
  } finally {
    srv.close()
  }
})
