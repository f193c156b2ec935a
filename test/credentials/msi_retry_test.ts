import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertLess,
  assertRejects,
  assertStringIncludes,
} from '@std/assert'
import { AuthenticationError } from '@aml-edge/auth'
import { _retryStandard } from '../../src/http.ts'
import {
  _IMDS_GONE_MS,
  _retryImds,
  type ManagedIdentitySource,
} from '../../src/credentials/_msi_sources.ts'
import { fakeClock, serveLoopback } from '../_fixtures/loopback.ts'
import { assertCode, EXP, msi, sourceEnv, tokenResponse } from './_msi_helpers.ts'

const SOURCES: ManagedIdentitySource[] = [
  'imds',
  'app-service',
  'azure-ml',
  'cloud-shell',
  'service-fabric',
]

const gone = () =>
  Response.json(
    { error: 'service_unavailable', error_description: 'IMDS is being updated' },
    { status: 410 },
  )

Deno.test('_retryImds retries 410 for 70 s whatever the retry count, the rest while retries remain', () => {
  const s = (attempt: number, elapsedMs: number, maxRetries = 3) => ({
    attempt,
    elapsedMs,
    maxRetries,
  })
  assertEquals(_retryImds(410, s(40, _IMDS_GONE_MS - 1, 0)), true)
  assertEquals(_retryImds(410, s(1, _IMDS_GONE_MS)), false)
  assertEquals(_retryImds(410, s(100, 1000)), false) // safety bound against zero-delay loops
  for (const status of [404, 408, 429, 500, 502, 503, 504]) {
    assertEquals(_retryImds(status, s(3, 0)), true, String(status))
    assertEquals(_retryImds(status, s(4, 0)), false, String(status))
  }
  for (const status of [400, 401, 403, 405, 409]) assertEquals(_retryImds(status, s(1, 0)), false)
  for (const status of [408, 429, 500, 503]) {
    assertEquals(_retryStandard(status, s(1, 0)), true, String(status))
  }
  for (const status of [400, 401, 404, 410]) {
    assertEquals(_retryStandard(status, s(1, 0)), false, String(status))
  }
})

Deno.test('MsiAuthentication (imds) retries 410 past 70 s, beyond the retry count', async () => {
  await using srv = serveLoopback(() => gone())
  const clock = fakeClock()
  const start = clock.now()
  const auth = msi({
    env: sourceEnv(srv.origin).imds!,
    now: clock.now,
    sleep: clock.sleep,
    retry: { maxRetries: 1 },
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 410)
  assertStringIncludes(e.message, 'IMDS kept answering 410')
  assertGreaterOrEqual(clock.now() - start, 70_000)
  assertGreaterOrEqual(srv.requests.length, 5) // far more than maxRetries + 1
  assertEquals(srv.requests.length, clock.slept.length + 1)
})

Deno.test('MsiAuthentication (imds) keeps the 70 s of 410 retries under default settings, whatever the jitter', async () => {
  await using srv = serveLoopback(() => gone())
  for (let run = 0; run < 25; run++) {
    const clock = fakeClock()
    const start = clock.now()
    const auth = msi({ env: sourceEnv(srv.origin).imds!, now: clock.now, sleep: clock.sleep })
    const e = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e, 'ERR_AUTHENTICATION')
    assertEquals(e.status, 410)
    assertGreaterOrEqual(clock.now() - start, 70_000)
    assertLess(clock.now() - start, 100_000)
  }
})

Deno.test('MsiAuthentication (imds) gets a token once IMDS stops answering 410 after 65 s', async () => {
  const clock = fakeClock()
  const start = clock.now()
  await using srv = serveLoopback(() =>
    clock.now() - start < 65_000 ? gone() : tokenResponse({ expires_on: String(EXP) })
  )
  const auth = msi({ env: sourceEnv(srv.origin).imds!, now: clock.now, sleep: clock.sleep })
  const t = await auth.getToken()
  assertEquals(t.expiresOn, EXP)
  assertGreaterOrEqual(clock.now() - start, 65_000)
})

Deno.test('MsiAuthentication (imds) 410 retries stay within a total bound the user sets', async () => {
  await using srv = serveLoopback(() => gone())
  const clock = fakeClock()
  const start = clock.now()
  const auth = msi({
    env: sourceEnv(srv.origin).imds!,
    now: clock.now,
    sleep: clock.sleep,
    retry: { totalTimeoutMs: 20_000 },
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertLess(clock.now() - start, 20_000)
})

Deno.test('MsiAuthentication (app-service) does not retry 410 or 404', async () => {
  for (const status of [404, 410]) {
    await using srv = serveLoopback(() => new Response('{}', { status }))
    const clock = fakeClock()
    const auth = msi({
      env: sourceEnv(srv.origin)['app-service']!,
      now: clock.now,
      sleep: clock.sleep,
    })
    const e = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e, 'ERR_AUTHENTICATION')
    assertEquals(srv.requests.length, 1)
  }
})

Deno.test('MsiAuthentication (imds) retries 404 five times by default, then fails', async () => {
  await using srv = serveLoopback(() => new Response('Not found', { status: 404 }))
  const clock = fakeClock()
  const auth = msi({ env: sourceEnv(srv.origin).imds!, now: clock.now, sleep: clock.sleep })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 404)
  assertEquals(srv.requests.length, 6)
})

Deno.test('MsiAuthentication (imds) honours a user retry count for 404', async () => {
  await using srv = serveLoopback(() => new Response('Not found', { status: 404 }))
  const clock = fakeClock()
  const auth = msi({
    env: sourceEnv(srv.origin).imds!,
    now: clock.now,
    sleep: clock.sleep,
    retry: { maxRetries: 2 },
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(srv.requests.length, 3)
})

for (const source of SOURCES) {
  Deno.test(`MsiAuthentication (${source}) retries 500 then succeeds`, async () => {
    await using srv = serveLoopback((_r, i) =>
      i === 0 ? new Response('oops', { status: 500 }) : tokenResponse({ expires_on: EXP })
    )
    const clock = fakeClock()
    const auth = msi({ env: sourceEnv(srv.origin)[source]!, now: clock.now, sleep: clock.sleep })
    const t = await auth.getToken()
    assertEquals(t.token, 'mi-token')
    assertEquals(srv.requests.length, 2)
    assertEquals(clock.slept.length, 1)
  })

  Deno.test(`MsiAuthentication (${source}) honours Retry-After on 429`, async () => {
    await using srv = serveLoopback((_r, i) =>
      i === 0
        ? Response.json({ error: 'throttled' }, { status: 429, headers: { 'retry-after': '7' } })
        : tokenResponse({ expires_on: EXP })
    )
    const clock = fakeClock()
    const auth = msi({ env: sourceEnv(srv.origin)[source]!, now: clock.now, sleep: clock.sleep })
    await auth.getToken()
    assertEquals(clock.slept, [7000])
    assertEquals(srv.requests.length, 2)
  })

  Deno.test(`MsiAuthentication (${source}) fails at once on 400`, async () => {
    await using srv = serveLoopback(() =>
      Response.json(
        { error: 'invalid_request', error_description: 'Identity not found' },
        { status: 400 },
      )
    )
    const clock = fakeClock()
    const auth = msi({ env: sourceEnv(srv.origin)[source]!, now: clock.now, sleep: clock.sleep })
    const e = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e, 'ERR_AUTHENTICATION')
    assertEquals(e.status, 400)
    assertEquals(srv.requests.length, 1)
    assertEquals(clock.slept.length, 0)
  })
}

Deno.test('MsiAuthentication gives up on 429 whose Retry-After passes the total bound', async () => {
  await using srv = serveLoopback(() =>
    Response.json({ error: 'throttled' }, { status: 429, headers: { 'retry-after': '3600' } })
  )
  const clock = fakeClock()
  const auth = msi({
    env: sourceEnv(srv.origin)['app-service']!,
    now: clock.now,
    sleep: clock.sleep,
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 429)
  assertStringIncludes(e.message, 'share one credential')
  assertEquals(srv.requests.length, 1)
  assertEquals(clock.slept.length, 0)
})

Deno.test('MsiAuthentication 5xx exhausting retries says so', async () => {
  await using srv = serveLoopback(() => new Response('down', { status: 503 }))
  const clock = fakeClock()
  const auth = msi({ env: sourceEnv(srv.origin)['azure-ml']!, now: clock.now, sleep: clock.sleep })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertStringIncludes(e.message, 'kept failing after retries')
  assertEquals(srv.requests.length, 4)
})

Deno.test('MsiAuthentication caller abort ends the wait mid-retry', async () => {
  await using srv = serveLoopback(() => gone())
  const clock = fakeClock()
  const controller = new AbortController()
  let requestsAtAbort = -1
  const sleep = (ms: number, signal?: AbortSignal) => {
    if (clock.slept.length === 1 && requestsAtAbort < 0) {
      requestsAtAbort = srv.requests.length
      controller.abort()
    }
    return clock.sleep(ms, signal)
  }
  const auth = msi({ env: sourceEnv(srv.origin).imds!, now: clock.now, sleep })
  const e = await assertRejects(() => auth.getToken(undefined, { abortSignal: controller.signal }))
  assertCode(e, 'ERR_ABORTED')
  assertEquals(requestsAtAbort, 2)
  // The shared request keeps going for other callers; join it so that nothing leaks.
  const e2 = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e2, 'ERR_AUTHENTICATION')
  assertEquals(e2.status, 410)
  assert(srv.requests.length > requestsAtAbort)
})

Deno.test('MsiAuthentication caller abort does not stop other callers of the shared request', async () => {
  const clock = fakeClock()
  const start = clock.now()
  await using srv = serveLoopback(() =>
    clock.now() - start < 10_000 ? gone() : tokenResponse({ expires_on: EXP })
  )
  const controller = new AbortController()
  const sleep = (ms: number, signal?: AbortSignal) => {
    controller.abort()
    return clock.sleep(ms, signal)
  }
  const auth = msi({ env: sourceEnv(srv.origin).imds!, now: clock.now, sleep })
  const aborted = auth.getToken(undefined, { abortSignal: controller.signal })
  const patient = auth.getToken()
  const e = await assertRejects(() => aborted)
  assertCode(e, 'ERR_ABORTED')
  assertEquals((await patient).token, 'mi-token')
})
