import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertNotStrictEquals,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import { Audience } from '../../src/access_token.ts'
import { AmlAuthError, AuthenticationError, CredentialUnavailableError } from '../../src/errors.ts'
import type { FetchLike } from '../../src/http.ts'
import { createTokenCache } from '../../src/token_cache.ts'
import { _deriveRunTokenKey, _fernetDecrypt, _fernetEncrypt } from '../../src/_fernet.ts'
import {
  _expirySeconds,
  _parseIsoWithZone,
  _resetRunTokenRegistry,
  AzureMLTokenAuthentication,
  type AzureMLTokenCreateOptions,
} from '../../src/credentials/azureml_token.ts'
import {
  _naturalCompare,
  _readSharedToken,
  _sharingFromEnv,
  _tokenFileName,
} from '../../src/credentials/_run_token_files.ts'
import { fakeClock, fakeJwt, serveLoopback } from '../_fixtures/loopback.ts'
import { DEMO, type RunningEmulator, startEmulator } from '../../workers/emulator/serve.ts'

const WS = DEMO.workspace
const NAME_PATH =
  `/history/v1.0/subscriptions/${WS.subscriptionId}/resourceGroups/${WS.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${WS.workspaceName}/experiments/${WS.experimentName}/runs/${WS.runId}/token`
const ID_PATH =
  `/history/v1.0/subscriptions/${WS.subscriptionId}/resourceGroups/${WS.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${WS.workspaceName}/experimentids/${WS.experimentId}/runs/${WS.runId}/token`

/** A fetch that records what it sends (URL and the bearer it carries) before sending it. */
function recorder(): {
  fetch: FetchLike
  seen: { url: URL; auth: string | null }[]
  onSeen: ((count: number) => void) | undefined
} {
  const rec = {
    seen: [] as { url: URL; auth: string | null }[],
    onSeen: undefined as ((count: number) => void) | undefined,
    fetch: (input: string | URL | Request, init?: RequestInit) => {
      const req = new Request(input, init)
      rec.seen.push({ url: new URL(req.url), auth: req.headers.get('authorization') })
      rec.onSeen?.(rec.seen.length)
      return fetch(req)
    },
  }
  return rec
}

/** Asserts that no secret appears in any rendering of a value. */
function assertNoSecret(value: unknown, secrets: readonly string[]): void {
  const views = [String(value), JSON.stringify(value), Deno.inspect(value, { depth: 10 })]
  if (value instanceof Error) {
    views.push(value.message, Deno.inspect(value.cause, { depth: 10 }))
    views.push(JSON.stringify(value.cause ?? null))
  }
  for (const view of views) {
    for (const s of secrets) assert(!view.includes(s), 'a secret leaked into ' + view.slice(0, 80))
  }
}

interface Setup {
  emu: RunningEmulator
  clock: ReturnType<typeof fakeClock>
  rec: ReturnType<typeof recorder>
  token: string
  expiresOn: number
  [Symbol.asyncDispose](): Promise<void>
}

/** An emulator on a fake clock shared with the credential, and a run token of `life` seconds. */
async function setup(life: number): Promise<Setup> {
  _resetRunTokenRegistry()
  const clock = fakeClock()
  const emu = await startEmulator({ now: clock.now })
  const minted = await emu.mintRunToken({ ...WS }, { lifetimeSeconds: life })
  return {
    emu,
    clock,
    rec: recorder(),
    token: minted.token,
    expiresOn: minted.expiresOn,
    [Symbol.asyncDispose]: async () => {
      _resetRunTokenRegistry()
      await emu.stop()
    },
  }
}

function createOptions(s: Setup, extra: Partial<AzureMLTokenCreateOptions> = {}) {
  return {
    azuremlAccessToken: s.token,
    host: s.emu.origin,
    subscriptionId: WS.subscriptionId,
    resourceGroupName: WS.resourceGroupName,
    workspaceName: WS.workspaceName,
    experimentName: WS.experimentName,
    runId: WS.runId,
    now: s.clock.now,
    sleep: s.clock.sleep,
    fetch: s.rec.fetch,
    env: {},
    cache: createTokenCache(),
    ...extra,
  } satisfies AzureMLTokenCreateOptions
}

const FAR = 4102444800 // 2100-01-01

function scope(runId: string, extra: Record<string, string> = {}): AzureMLTokenCreateOptions {
  return {
    azuremlAccessToken: 'opaque-' + runId,
    expiryTime: FAR,
    host: 'https://westus2.api.azureml.ms',
    subscriptionId: 'sub',
    resourceGroupName: 'rg',
    workspaceName: 'ws',
    experimentName: 'exp',
    runId,
    env: {},
    cache: createTokenCache(),
    ...extra,
  }
}

// ---------------------------------------------------------------------------------------------
// Registry

Deno.test('create() returns one instance per run scope; the second token is ignored', async () => {
  _resetRunTokenRegistry()
  try {
    const a = AzureMLTokenAuthentication.create(scope('run-1'))
    const b = AzureMLTokenAuthentication.create({ ...scope('run-1'), azuremlAccessToken: 'other' })
    assertStrictEquals(a, b)
    assertEquals((await b.getAuthenticationHeader()).Authorization, 'Bearer opaque-run-1')
    const c = AzureMLTokenAuthentication.create(scope('run-2'))
    assertNotStrictEquals(a, c)
    assertEquals((await c.getAuthenticationHeader()).Authorization, 'Bearer opaque-run-2')
    // The experiment id, when given, identifies the experiment: the name is then irrelevant.
    const d = AzureMLTokenAuthentication.create(scope('run-3', { experimentId: 'e-1' }))
    const e = AzureMLTokenAuthentication.create(
      scope('run-3', { experimentId: 'e-1', experimentName: 'renamed' }),
    )
    assertStrictEquals(d, e)
    const f = AzureMLTokenAuthentication.create(scope('run-3'))
    assertNotStrictEquals(d, f)
    // The constructor builds a standalone instance that create() does not return.
    const g = new AzureMLTokenAuthentication(scope('run-1'))
    assertNotStrictEquals(g, a)
    _resetRunTokenRegistry()
    assertNotStrictEquals(AzureMLTokenAuthentication.create(scope('run-1')), a)
  } finally {
    _resetRunTokenRegistry()
  }
})

Deno.test('create() validates its options without I/O, naming the option', () => {
  _resetRunTokenRegistry()
  const secret = 'opaque-secret-run-token'
  const base = { ...scope('v'), azuremlAccessToken: secret }
  const cases: [Record<string, unknown>, string][] = [
    [{ host: undefined }, 'host'],
    [{ host: 'http://westus2.api.azureml.ms' }, 'host'],
    [{ host: 'not a url' }, 'host'],
    [{ subscriptionId: undefined }, 'subscriptionId'],
    [{ resourceGroupName: '' }, 'resourceGroupName'],
    [{ workspaceName: 42 }, 'workspaceName'],
    [{ experimentName: undefined }, 'experimentName'],
    [{ runId: ' ' }, 'runId'],
    [{ runId: '..' }, 'runId'],
    [{ azuremlAccessToken: '' }, 'azuremlAccessToken'],
    [{ expiryTime: undefined }, 'azuremlAccessToken'], // not a JWT and no expiry
    [{ expiryTime: '2030-01-01T00:00:00' }, 'time zone'],
    [{ expiryTime: 'tomorrow' }, 'expiryTime'],
    [{ expiryTime: new Date('x') }, 'expiryTime'],
    [{ refreshRoute: 'no-slash/{runId}' }, 'refreshRoute'],
    [{ refreshRoute: '/x/{tenant}' }, 'refreshRoute'],
    [{ refreshRoute: '/x?run={runId}' }, 'refreshRoute'],
    [{ refreshRoute: '/x/{experimentId}' }, 'experimentId'],
  ]
  for (const [patch, named] of cases) {
    const e = assertThrows(
      () => AzureMLTokenAuthentication.create({ ...base, ...patch } as AzureMLTokenCreateOptions),
      TypeError,
    )
    assertStringIncludes(e.message, named)
    assert(!e.message.includes(secret))
  }
  const ms = assertThrows(
    () => AzureMLTokenAuthentication.create({ ...base, expiryTime: Date.now() }),
    RangeError,
  )
  assertStringIncludes(ms.message, 'milliseconds')
  // Loopback hosts may use http (emulators, the broker worker in development).
  AzureMLTokenAuthentication.create({ ...base, host: 'http://127.0.0.1:8080' })
  // With an experiment id the name may be omitted.
  const { experimentName: _, ...noName } = base
  AzureMLTokenAuthentication.create({ ...noName, experimentId: 'e' } as AzureMLTokenCreateOptions)
  _resetRunTokenRegistry()
})

Deno.test('expiryTime accepts a Date, epoch seconds and ISO 8601 with a zone; the default is the JWT exp', () => {
  assertEquals(_expirySeconds(new Date('2030-01-01T00:00:00Z'), 'x'), 1893456000)
  assertEquals(_expirySeconds(1893456000, 'x'), 1893456000)
  assertEquals(_expirySeconds('1893456000', 'x'), 1893456000)
  assertEquals(_expirySeconds('2030-01-01T00:00:00Z', 'x'), 1893456000)
  assertEquals(_expirySeconds('2030-01-01T02:00:00+02:00', 'x'), 1893456000)
  assertEquals(_expirySeconds('2030-01-01 00:00:00.123456+00:00', 'x'), 1893456000)
  assertEquals(_expirySeconds('2029-12-31T19:00:00.1234567-0500', 'x'), 1893456000)
  assertThrows(() => _expirySeconds('2030-02-30T00:00:00Z', 'x'), TypeError)
  assertThrows(() => _expirySeconds('2030-01-01', 'x'), TypeError)
  assertEquals(_parseIsoWithZone('2030-01-01T00:00:00'), 'no-zone')
  assertEquals(_parseIsoWithZone('2030-01-01T24:00:00Z'), undefined)
  const jwt = fakeJwt({ exp: 1893456000 })
  const auth = new AzureMLTokenAuthentication({ azuremlAccessToken: jwt, env: {} })
  assertEquals(auth.expiryTime.toISOString(), '2030-01-01T00:00:00.000Z')
})

// ---------------------------------------------------------------------------------------------
// Refresh against the emulator's run-history route

Deno.test('getToken() refreshes once for 100 concurrent callers when under 95 s remain (by name)', async () => {
  await using s = await setup(200)
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  const first = await auth.getToken()
  assertEquals(first.token, s.token)
  assertEquals(first.expiresOn, s.expiresOn)
  s.clock.advance(100_000) // 100 s left: still fresh
  assertEquals((await auth.getAuthenticationHeader()).Authorization, 'Bearer ' + s.token)
  assertEquals(s.rec.seen.length, 0)

  s.clock.advance(10_000) // 90 s left: refresh in the background, callers keep the valid token
  const got = await Promise.all(Array.from({ length: 100 }, () => auth.getToken()))
  assert(got.every((t) => t.token === s.token))
  assertEquals(s.rec.seen.length, 1)
  const refreshed = await auth.refresh() // joins the refresh in flight
  assertEquals(s.rec.seen.length, 1)
  const sent = s.rec.seen[0]!
  assertEquals(sent.url.pathname, NAME_PATH)
  assertEquals(sent.auth, 'Bearer ' + s.token)

  assertNotStrictEquals(refreshed.token, s.token)
  assertEquals(refreshed.expiresOn, Math.floor(s.clock.now() / 1000) + 200)
  assertEquals((await auth.getToken()).token, refreshed.token)
  assertEquals(auth.expiryTime.getTime(), refreshed.expiresOn * 1000)
  assertEquals((await auth.getAuthenticationHeader()).Authorization, 'Bearer ' + refreshed.token)
  assertEquals(s.emu.requests({ route: 'run-history.token' })[0]?.status, 200)
  assertEquals(s.rec.seen.length, 1)
})

Deno.test('getToken() past expiry - 30 s makes 100 callers wait for one refresh (by experiment id)', async () => {
  await using s = await setup(200)
  const auth = AzureMLTokenAuthentication.create(
    createOptions(s, { experimentId: WS.experimentId }),
  )
  await auth.getToken()
  s.clock.advance(180_000) // 20 s left
  const got = await Promise.all(Array.from({ length: 100 }, () => auth.getToken()))
  assertEquals(s.rec.seen.length, 1)
  assertEquals(s.rec.seen[0]!.url.pathname, ID_PATH)
  assertEquals(s.rec.seen[0]!.auth, 'Bearer ' + s.token)
  const fresh = got[0]!.token
  assertNotStrictEquals(fresh, s.token)
  assert(got.every((t) => t.token === fresh))
  assertEquals(got[0]!.expiresOn, Math.floor(s.clock.now() / 1000) + 200)
})

Deno.test('a token inside the 95 s window at creation is refreshed on first use', async () => {
  await using s = await setup(60)
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  const t = await auth.getToken()
  assertNotStrictEquals(t.token, s.token)
  assertEquals(s.rec.seen.length, 1)
})

Deno.test('refreshRoute: a custom template under a host with a path, segments URL-encoded', async () => {
  _resetRunTokenRegistry()
  const clock = fakeClock()
  const expiry = new Date(clock.now() + 3_600_000).toISOString()
  await using server = serveLoopback(() =>
    Response.json({ token: 'brokered', expiryTimeUtc: expiry })
  )
  const auth = AzureMLTokenAuthentication.create({
    ...scope('run/1 ü', { experimentName: 'exp?#' }),
    azuremlAccessToken: 'opaque-old',
    expiryTime: clock.now() / 1000 + 60,
    host: server.origin + '/broker/',
    refreshRoute:
      '/v1/{subscriptionId}/{resourceGroupName}/{workspaceName}/{experimentName}/{runId}',
    now: clock.now,
  })
  const t = await auth.getToken()
  assertEquals(t.token, 'brokered')
  assertEquals(t.expiresOn, Math.floor(Date.parse(expiry) / 1000))
  const req = server.requests[0]!
  assertEquals(req.method, 'GET')
  assertEquals(req.url.pathname, '/broker/v1/sub/rg/ws/exp%3F%23/run%2F1%20%C3%BC')
  assertEquals(req.url.search, '')
  assertEquals(req.headers.get('authorization'), 'Bearer opaque-old')
  _resetRunTokenRegistry()
})

Deno.test('a failed refresh (401) keeps the valid token, backs off, then expires with a typed error', async () => {
  await using s = await setup(200) // expires at T + 200 s
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  await auth.getToken()
  s.emu.failNext({ route: 'run-history.token', status: 401, count: 100 })

  s.clock.advance(110_000) // T + 110: 90 s left, a background refresh starts and fails
  assertEquals((await auth.getToken()).token, s.token)
  const direct = await assertRejects(() => auth.refresh(), AuthenticationError) // joins it
  assertEquals(direct.code, 'ERR_AUTHENTICATION')
  assertEquals(direct.status, 401)
  assertEquals(s.rec.seen.length, 1)

  s.clock.advance(5_000) // T + 115: within the 10 s back-off, no request
  assertEquals((await auth.getToken()).token, s.token)
  assertEquals(s.rec.seen.length, 1)

  s.clock.advance(60_000) // T + 175: 25 s left, callers wait for a refresh; it fails, token kept
  assertEquals((await auth.getToken()).token, s.token)
  assertEquals(s.rec.seen.length, 2)
  s.clock.advance(5_000) // T + 180: back-off again
  assertEquals((await auth.getToken()).token, s.token)
  assertEquals(s.rec.seen.length, 2)

  s.clock.advance(21_000) // T + 201: expired; one last attempt is refused
  const e = await assertRejects(() => auth.getAuthenticationHeader(), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_EXPIRED')
  assertStringIncludes(e.message, 'last refresh failed')
  assertStringIncludes(e.message, '401')
  assertInstanceOf(e.cause, AuthenticationError)
  assertEquals(s.rec.seen.length, 3)
  const again = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(again.code, 'ERR_TOKEN_EXPIRED')
  assertEquals(s.rec.seen.length, 3)
  assertNoSecret(e, [s.token])
  assertNoSecret(direct, [s.token])
  assertNoSecret(auth, [s.token])
})

Deno.test('a service error while the token is valid recovers on the next attempt', async () => {
  await using s = await setup(200)
  const auth = AzureMLTokenAuthentication.create(createOptions(s, { retry: { maxRetries: 0 } }))
  s.emu.failNext({ route: 'run-history.token', status: 503 })
  s.clock.advance(180_000) // 20 s left
  assertEquals((await auth.getToken()).token, s.token) // failed, still valid
  s.clock.advance(16_000) // back-off over and past the hard point: callers wait
  const t = await auth.getToken()
  assertNotStrictEquals(t.token, s.token)
  assertEquals(s.rec.seen.length, 2)
})

Deno.test('an expired run token is refused by the service and never returned', async () => {
  await using s = await setup(100)
  s.clock.advance(101_000)
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_EXPIRED')
  assertEquals(s.rec.seen.length, 1)
  assertEquals((e.cause as AuthenticationError).status, 401)
  assertNoSecret(e, [s.token])
})

Deno.test('a claims challenge forces a refresh', async () => {
  await using s = await setup(3600)
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  await auth.getToken()
  const t = await auth.getToken(undefined, { claims: '{}' })
  assertNotStrictEquals(t.token, s.token)
  assertEquals((await auth.getToken()).token, t.token)
  assertEquals(s.rec.seen.length, 1)
})

Deno.test('refresh() reports malformed service answers as ERR_RESPONSE_INVALID', async () => {
  _resetRunTokenRegistry()
  const clock = fakeClock()
  const future = new Date(clock.now() + 3_600_000).toISOString()
  const bodies: [string, string][] = [
    [JSON.stringify({ expiryTimeUtc: future }), 'token'],
    [JSON.stringify({ token: 'new' }), 'expiryTimeUtc'],
    [JSON.stringify({ token: 'new', expiryTimeUtc: future.replace('Z', '') }), 'time zone'],
    [JSON.stringify({ token: 'new', expiryTimeUtc: 1893456000 }), 'expiryTimeUtc'],
    [JSON.stringify({ token: 'new', expiryTimeUtc: new Date(clock.now()).toISOString() }), 'past'],
    ['<html>hi</html>', 'HTML'],
    ['', 'empty'],
  ]
  let body = ''
  await using server = serveLoopback(() => new Response(body, { status: 200 }))
  for (const [b, expected] of bodies) {
    body = b
    const auth = new AzureMLTokenAuthentication({
      ...scope('bad'),
      azuremlAccessToken: 'opaque-current-token',
      host: server.origin,
      now: clock.now,
    })
    const e = await assertRejects(() => auth.refresh(), AmlAuthError)
    assertEquals(e.code, 'ERR_RESPONSE_INVALID', b)
    assertStringIncludes(e.message, expected)
    assertNoSecret(e, ['opaque-current-token'])
    // Still valid, so use continues with the current token.
    assertEquals((await auth.getToken()).token, 'opaque-current-token')
  }
})

Deno.test('a refusal that echoes the bearer token is scrubbed', async () => {
  const secret = 'opaque-echoed-run-token'
  await using server = serveLoopback(() =>
    Response.json({ error: { code: 'Denied', message: `token ${secret} is revoked` } }, {
      status: 403,
    })
  )
  const auth = new AzureMLTokenAuthentication({
    ...scope('echo'),
    azuremlAccessToken: secret,
    host: server.origin,
  })
  const e = await assertRejects(() => auth.refresh(), AuthenticationError)
  assertEquals(e.status, 403)
  assertStringIncludes(e.message, 'revoked')
  assertNoSecret(e, [secret])
})

Deno.test('an instance missing a scope element is never refreshed and then expires', async () => {
  const clock = fakeClock()
  let calls = 0
  const { runId: _, ...noRun } = scope('never')
  const auth = new AzureMLTokenAuthentication({
    ...noRun,
    azuremlAccessToken: 'opaque-unrefreshable',
    expiryTime: clock.now() / 1000 + 60,
    fetch: () => {
      calls++
      return Promise.reject(new Error('no I/O expected'))
    },
    now: clock.now,
  })
  assertEquals(auth.refreshable, false)
  assertEquals((await auth.getToken()).token, 'opaque-unrefreshable')
  clock.advance(59_000)
  assertEquals((await auth.getToken()).token, 'opaque-unrefreshable')
  await new Promise((r) => setTimeout(r, 0)) // let the cache's background check settle
  clock.advance(1_000)
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_EXPIRED')
  assertStringIncludes(e.message, 'runId')
  assertNoSecret(e, ['opaque-unrefreshable'])
  const r = await assertRejects(() => auth.refresh(), CredentialUnavailableError)
  assertStringIncludes(r.message, 'runId')
  assertThrows(() => auth.startAutoRefresh(), CredentialUnavailableError)
  const { host: _h, ...noHostOptions } = scope('nohost')
  const noHost = new AzureMLTokenAuthentication(noHostOptions)
  assertEquals(noHost.refreshable, false)
  assertEquals(calls, 0)
})

// ---------------------------------------------------------------------------------------------
// Audiences

Deno.test('ARM and Azure ML client audiences are not supported for run tokens', async () => {
  _resetRunTokenRegistry()
  const auth = AzureMLTokenAuthentication.create(scope('aud'))
  const refusals = [
    () => auth.getToken('https://management.core.windows.net//.default'),
    () => auth.getToken(['https://ml.azure.com/.default']),
    () => auth.getToken('https://storage.azure.com/.default'),
    () => auth.getTokenForAudience(Audience.ARM),
    () => auth.getTokenForAudience(Audience.AZUREML),
    () => auth.getAzureMLAuthenticationHeader(),
    () => auth.listSubscriptions(),
    () => auth.fetch('https://management.azure.com/subscriptions', { audience: Audience.ARM }),
    () => auth.fetch('https://example.com/', { scopes: 'https://example.com/.default' }),
  ]
  for (const call of refusals) {
    const e = await assertRejects(call, AmlAuthError)
    assertEquals(e.code, 'ERR_UNSUPPORTED_AUDIENCE')
    assertStringIncludes(e.message, 'not supported for run tokens')
    assertNoSecret(e, ['opaque-aud'])
  }
  assertEquals((await auth.getToken([])).token, 'opaque-aud')
  assertEquals((await auth.getToken('')).token, 'opaque-aud')
  _resetRunTokenRegistry()
})

Deno.test('fetch() signs with the run token', async () => {
  await using server = serveLoopback(() => new Response('ok'))
  const auth = new AzureMLTokenAuthentication(scope('fetch'))
  const res = await auth.fetch(server.origin + '/history/v1.0/x')
  assertEquals(await res.text(), 'ok')
  assertEquals(server.requests[0]!.headers.get('authorization'), 'Bearer opaque-fetch')
})

Deno.test('toString, JSON and inspect show the run scope but never the token', async () => {
  const secret = fakeJwt({ exp: FAR, secret: 'do-not-print' })
  const { expiryTime: _, ...noExpiry } = scope('show')
  const auth = new AzureMLTokenAuthentication({
    ...noExpiry,
    azuremlAccessToken: secret,
    userEmail: 'ada@example.com',
  })
  const t = await auth.getToken()
  for (const v of [auth, t]) assertNoSecret(v, [secret, secret.split('.')[1]!])
  assertStringIncludes(String(auth), 'runId=show')
  assertEquals(auth.toJSON().refreshable, true)
  assertEquals(auth.userEmail, 'ada@example.com')
  assert(!Object.values(auth).includes(secret))
})

// ---------------------------------------------------------------------------------------------
// fromEnvironment

function runEnv(
  extra: Record<string, string | undefined> = {},
): Record<string, string | undefined> {
  return {
    AZUREML_RUN_TOKEN: 'opaque-env-token',
    AZUREML_RUN_TOKEN_EXPIRY: String(FAR),
    AZUREML_ARM_SUBSCRIPTION: 'sub',
    AZUREML_ARM_RESOURCEGROUP: 'rg',
    AZUREML_ARM_WORKSPACE_NAME: 'ws',
    AZUREML_ARM_PROJECT_NAME: 'exp',
    AZUREML_RUN_ID: 'env-run',
    AZUREML_SERVICE_ENDPOINT: 'https://westus2.api.azureml.ms',
    ...extra,
  }
}

Deno.test('fromEnvironment() names each missing variable', () => {
  _resetRunTokenRegistry()
  for (
    const name of [
      'AZUREML_RUN_TOKEN',
      'AZUREML_ARM_SUBSCRIPTION',
      'AZUREML_ARM_RESOURCEGROUP',
      'AZUREML_ARM_WORKSPACE_NAME',
      'AZUREML_ARM_PROJECT_NAME',
      'AZUREML_RUN_ID',
      'AZUREML_SERVICE_ENDPOINT',
    ]
  ) {
    for (const value of [undefined, '', '  ']) {
      const e = assertThrows(
        () => AzureMLTokenAuthentication.fromEnvironment(runEnv({ [name]: value })),
        CredentialUnavailableError,
      )
      assertEquals(e.code, 'ERR_CREDENTIAL_UNAVAILABLE')
      assertStringIncludes(e.message, name)
      assertNoSecret(e, ['opaque-env-token'])
    }
  }
  const all = assertThrows(
    () => AzureMLTokenAuthentication.fromEnvironment({}),
    CredentialUnavailableError,
  )
  assertStringIncludes(all.message, 'AZUREML_RUN_ID')
  assertStringIncludes(all.message, 'AZUREML_SERVICE_ENDPOINT')
  // The expiry may be left out for a JWT, not for an opaque token.
  const noExpiry = assertThrows(
    () =>
      AzureMLTokenAuthentication.fromEnvironment(runEnv({ AZUREML_RUN_TOKEN_EXPIRY: undefined })),
    CredentialUnavailableError,
  )
  assertStringIncludes(noExpiry.message, 'AZUREML_RUN_TOKEN_EXPIRY')
  const jwt = fakeJwt({ exp: 1893456000 })
  const fromJwt = AzureMLTokenAuthentication.fromEnvironment(
    runEnv({ AZUREML_RUN_TOKEN: jwt, AZUREML_RUN_TOKEN_EXPIRY: undefined }),
  )
  assertEquals(fromJwt.expiryTime.toISOString(), '2030-01-01T00:00:00.000Z')
  _resetRunTokenRegistry()
})

Deno.test('fromEnvironment() reads epoch and zoned ISO expiries and refuses guessing a zone', () => {
  const cases: [string, number][] = [
    ['1893456000', 1893456000],
    [' 1893456000 ', 1893456000],
    ['2030-01-01T00:00:00Z', 1893456000],
    ['2030-01-01T01:00:00+01:00', 1893456000],
    ['2030-01-01 00:00:00.500000+00:00', 1893456000],
  ]
  for (const [value, expected] of cases) {
    _resetRunTokenRegistry()
    const auth = AzureMLTokenAuthentication.fromEnvironment(
      runEnv({ AZUREML_RUN_TOKEN_EXPIRY: value }),
    )
    assertEquals(auth.expiryTime.getTime(), expected * 1000, value)
  }
  for (const value of ['2030-01-01T00:00:00', '2030-01-01 00:00:00', 'soon', '1893456000000']) {
    _resetRunTokenRegistry()
    const e = assertThrows(() =>
      AzureMLTokenAuthentication.fromEnvironment(runEnv({ AZUREML_RUN_TOKEN_EXPIRY: value }))
    )
    assert(e instanceof TypeError || e instanceof RangeError)
    assertStringIncludes(e.message, 'AZUREML_RUN_TOKEN_EXPIRY')
  }
  const host = assertThrows(
    () =>
      AzureMLTokenAuthentication.fromEnvironment(
        runEnv({ AZUREML_SERVICE_ENDPOINT: 'http://westus2.api.azureml.ms' }),
      ),
    TypeError,
  )
  assertStringIncludes(host.message, 'AZUREML_SERVICE_ENDPOINT')
  _resetRunTokenRegistry()
})

Deno.test('fromEnvironment() registers the run, optional experiment id included', () => {
  _resetRunTokenRegistry()
  const a = AzureMLTokenAuthentication.fromEnvironment(runEnv({ AZUREML_EXPERIMENT_ID: 'eid' }))
  assertEquals(a.experimentId, 'eid')
  assertEquals(a.host, 'https://westus2.api.azureml.ms')
  const b = AzureMLTokenAuthentication.create({ ...scope('env-run'), experimentId: 'eid' })
  assertStrictEquals(a, b)
  // The `env` option is used when no env argument is given.
  _resetRunTokenRegistry()
  const c = AzureMLTokenAuthentication.fromEnvironment(undefined, { env: runEnv() })
  assertEquals(c.runId, 'env-run')
  _resetRunTokenRegistry()
})

Deno.test('fromEnvironment() with the emulator run environment refreshes end to end', async () => {
  await using s = await setup(60)
  const env = await s.emu.runEnv(undefined, { lifetimeSeconds: 60 })
  const auth = AzureMLTokenAuthentication.fromEnvironment(env, {
    now: s.clock.now,
    fetch: s.rec.fetch,
    cache: createTokenCache(),
  })
  const t = await auth.getToken()
  assertNotStrictEquals(t.token, env.AZUREML_RUN_TOKEN)
  assertEquals(s.rec.seen[0]!.url.pathname, ID_PATH)
  assertEquals(s.rec.seen[0]!.auth, 'Bearer ' + env.AZUREML_RUN_TOKEN)
})

// ---------------------------------------------------------------------------------------------
// Auto refresh

Deno.test('startAutoRefresh() refreshes on its timer and reports failures to onError', async () => {
  await using s = await setup(200)
  const auth = AzureMLTokenAuthentication.create(createOptions(s))
  await auth.getToken()
  s.clock.advance(110_000) // 90 s left
  s.emu.failNext({ route: 'run-history.token', status: 401 })
  const failed = Promise.withResolvers<AmlAuthError>()
  const second = Promise.withResolvers<void>()
  s.rec.onSeen = (n) => n === 2 && second.resolve()
  const handle = auth.startAutoRefresh({ intervalMs: 5, onError: failed.resolve })
  let refreshed
  try {
    const e = await failed.promise // the first tick's refresh was refused
    assertEquals(e.code, 'ERR_AUTHENTICATION')
    assertNoSecret(e, [s.token])
    s.clock.advance(11_000) // past the back-off: a later tick tries again
    await second.promise
    refreshed = await auth.refresh() // joins the tick's refresh in flight
  } finally {
    handle.stop()
  }
  assertNotStrictEquals(refreshed.token, s.token)
  assertEquals((await auth.getToken()).token, refreshed.token)
  assertEquals(s.rec.seen.length, 2)
  assertEquals(s.rec.seen[1]!.url.pathname, NAME_PATH)
  assertEquals(s.rec.seen[1]!.auth, 'Bearer ' + s.token)
})

Deno.test('startAutoRefresh() does not keep the process alive', async () => {
  const mod = new URL('../../src/credentials/azureml_token.ts', import.meta.url).href
  const code = `
    import { AzureMLTokenAuthentication } from ${JSON.stringify(mod)}
    const auth = AzureMLTokenAuthentication.create({
      azuremlAccessToken: 'opaque', expiryTime: ${FAR}, host: 'https://westus2.api.azureml.ms',
      subscriptionId: 's', resourceGroupName: 'r', workspaceName: 'w', experimentName: 'e',
      runId: 'r1', env: {},
    })
    auth.startAutoRefresh({ intervalMs: 60_000 })
    console.log('started')
  `
  const child = new Deno.Command(Deno.execPath(), {
    args: ['eval', '--quiet', code],
    stdout: 'piped',
    stderr: 'piped',
  }).spawn()
  // Safety net only: if the timer kept the process alive, kill it so the test fails, not hangs.
  const guard = setTimeout(() => child.kill(), 60_000)
  const out = await child.output()
  clearTimeout(guard)
  assertEquals(new TextDecoder().decode(out.stderr), '')
  assertEquals(out.code, 0)
  assertEquals(out.signal, null)
  assertStringIncludes(new TextDecoder().decode(out.stdout), 'started')
})

// ---------------------------------------------------------------------------------------------
// Shared token files

const PASS = 'pass-value-xyz'
const RAND = 'rand-value-123'
// Written by Python's Fernet under the key derived from PASS/RAND; decrypts to a JWT with exp FAR.
const PYTHON_FILE_TOKEN =
  'gAAAAABrCtWwnBVSutbB81mY3gYYoMufLIl5EnbRMp4GABhkDwJzUtoE7WWyYkjKW1GffxxT27_QbNBxN6ZReGjiwcDkXvQJshST8BqYsvKkk5QNgbg8nkX5WMA1GZ8JForO6QsQ98fLubdaqGC61ITjbCen57PPuw=='
const PYTHON_FILE_PLAIN = 'eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln'

function sharingEnv(temp: string, extra: Record<string, string | undefined> = {}) {
  return runEnv({
    AZUREML_RUN_TOKEN_PASS: PASS,
    AZUREML_RUN_TOKEN_RAND: RAND,
    AZ_BATCHAI_JOB_TEMP: temp,
    ...extra,
  })
}

Deno.test('names sort naturally, newest first, and new names follow the Python format', () => {
  const names = ['9_1_token.txt', '10_1_token.txt', '63842123456.5_77_token.txt', '2_token.txt']
  names.sort((a, b) => _naturalCompare(b, a))
  assertEquals(names, [
    '63842123456.5_77_token.txt',
    '10_1_token.txt',
    '9_1_token.txt',
    '2_token.txt',
  ])
  assertEquals(_naturalCompare('a10', 'a9'), 1)
  assertEquals(_naturalCompare('a', 'a'), 0)
  // 2023-11-14T22:13:20Z is 63835596800 s after 0001-01-01.
  assertMatchName(_tokenFileName(1_700_000_000_000), /^63835596800\.0_\d+_token\.txt$/)
  assertMatchName(_tokenFileName(1_700_000_000_250), /^63835596800\.25_\d+_token\.txt$/)
})

function assertMatchName(name: string, re: RegExp) {
  assert(re.test(name), name)
}

Deno.test('a token file written by Python is read (sharing on, same run)', async () => {
  _resetRunTokenRegistry()
  const temp = await Deno.makeTempDir()
  try {
    await Deno.mkdir(`${temp}/run_token`)
    await Deno.writeTextFile(`${temp}/run_token/63835596800.5_42_token.txt`, PYTHON_FILE_TOKEN)
    const auth = AzureMLTokenAuthentication.fromEnvironment(
      sharingEnv(temp, { AZUREML_RUN_TOKEN_EXPIRY: '1893456000' }),
      { cache: createTokenCache() },
    )
    assertEquals((await auth.getToken()).token, PYTHON_FILE_PLAIN)
    assertEquals(auth.expiryTime.getTime(), FAR * 1000)
  } finally {
    _resetRunTokenRegistry()
    await Deno.remove(temp, { recursive: true })
  }
})

Deno.test('the newest readable file wins; corrupt, foreign and older files are ignored', async () => {
  _resetRunTokenRegistry()
  const temp = await Deno.makeTempDir()
  const dir = `${temp}/run_token`
  try {
    await Deno.mkdir(dir)
    const key = await _deriveRunTokenKey(PASS, RAND)
    const newer = fakeJwt({ exp: FAR, n: 'newer' })
    const older = fakeJwt({ exp: FAR - 10, n: 'older' })
    await Deno.writeTextFile(`${dir}/9_1_token.txt`, await _fernetEncrypt(key, older))
    await Deno.writeTextFile(`${dir}/10_1_token.txt`, await _fernetEncrypt(key, newer))
    await Deno.writeTextFile(`${dir}/11_1_token.txt`, 'corrupt') // newest, but unreadable
    await Deno.writeTextFile(`${dir}/12_1_other.txt`, await _fernetEncrypt(key, older)) // no token.txt
    const foreign = await _deriveRunTokenKey('other', RAND)
    await Deno.writeTextFile(`${dir}/13_1_token.txt`, await _fernetEncrypt(foreign, older))
    const sharing = _sharingFromEnv(sharingEnv(temp))!
    assertEquals((await _readSharedToken(sharing))?.token, newer)

    // Through the credential: a file token is adopted only when it outlives the env token
    // (here both expire at FAR, so the env token stays) ...
    const auth = AzureMLTokenAuthentication.fromEnvironment(sharingEnv(temp), {
      cache: createTokenCache(),
    })
    assertEquals((await auth.getToken()).token, 'opaque-env-token')
    // ... and is used when the env token expires first.
    _resetRunTokenRegistry()
    const soon = AzureMLTokenAuthentication.fromEnvironment(
      sharingEnv(temp, { AZUREML_RUN_TOKEN_EXPIRY: String(FAR - 100) }),
      { cache: createTokenCache() },
    )
    assertEquals((await soon.getToken()).token, newer)

    // All files corrupt: the env token is used.
    for (const n of ['9_1_token.txt', '10_1_token.txt']) {
      await Deno.writeTextFile(`${dir}/${n}`, 'x')
    }
    _resetRunTokenRegistry()
    const fallback = AzureMLTokenAuthentication.fromEnvironment(
      sharingEnv(temp, { AZUREML_RUN_TOKEN_EXPIRY: String(FAR - 100) }),
      { cache: createTokenCache() },
    )
    assertEquals((await fallback.getToken()).token, 'opaque-env-token')
  } finally {
    _resetRunTokenRegistry()
    await Deno.remove(temp, { recursive: true })
  }
})

Deno.test('sharing is off without its variables, when disabled, or for another run', async () => {
  const key = await _deriveRunTokenKey(PASS, RAND)
  const sealed = await _fernetEncrypt(key, fakeJwt({ exp: FAR }))
  const files = {
    readDir: () => Promise.resolve(['1_1_token.txt']),
    readFile: () => Promise.resolve(sealed),
    writeFile: () => Promise.reject(new Error('no writes expected')),
  }
  const off: Record<string, string | undefined>[] = [
    { AZUREML_RUN_TOKEN_PASS: undefined },
    { AZUREML_RUN_TOKEN_RAND: '' },
    { AZ_BATCHAI_JOB_TEMP: undefined },
    { AZUREML_DISABLE_REFRESHED_TOKEN_SHARING: 'true' },
    { AZUREML_RUN_ID: 'another-run' },
  ]
  for (const patch of off) {
    _resetRunTokenRegistry()
    const env = sharingEnv('/job', { AZUREML_RUN_TOKEN_EXPIRY: String(FAR - 100), ...patch })
    const auth = AzureMLTokenAuthentication.create({
      ...scope('env-run'),
      azuremlAccessToken: 'opaque-env-token',
      expiryTime: FAR - 100,
      env,
      tokenFiles: files,
    })
    assertEquals((await auth.getToken()).token, 'opaque-env-token', JSON.stringify(patch))
  }
  // On, through injected functions only.
  _resetRunTokenRegistry()
  const on = AzureMLTokenAuthentication.fromEnvironment(
    sharingEnv('/job/', { AZUREML_RUN_TOKEN_EXPIRY: String(FAR - 100) }),
    { tokenFiles: files, cache: createTokenCache() },
  )
  assertGreater((await on.getToken()).expiresOn, FAR - 100)
  // tokenFiles: false turns it off.
  _resetRunTokenRegistry()
  const never = AzureMLTokenAuthentication.fromEnvironment(
    sharingEnv('/job', { AZUREML_RUN_TOKEN_EXPIRY: String(FAR - 100) }),
    { tokenFiles: false, cache: createTokenCache() },
  )
  assertEquals((await never.getToken()).token, 'opaque-env-token')
  _resetRunTokenRegistry()
})

Deno.test('a refreshed token is written, encrypted, for sibling processes', async () => {
  await using s = await setup(200)
  const temp = await Deno.makeTempDir()
  try {
    const env: Record<string, string> = {
      ...(await s.emu.runEnv(undefined, { lifetimeSeconds: 200 })),
      AZUREML_RUN_TOKEN_PASS: PASS,
      AZUREML_RUN_TOKEN_RAND: RAND,
      AZ_BATCHAI_JOB_TEMP: temp,
    }
    s.clock.advance(110_000) // 90 s left
    const options = { now: s.clock.now, fetch: s.rec.fetch }
    const auth = AzureMLTokenAuthentication.fromEnvironment(env, {
      ...options,
      cache: createTokenCache(),
    })
    const t = await auth.getToken() // refreshed, then written
    assertNotStrictEquals(t.token, env.AZUREML_RUN_TOKEN)
    assertEquals(s.rec.seen.length, 1)
    const names = [...Deno.readDirSync(`${temp}/run_token`)].map((e) => e.name)
    assertEquals(names.length, 1)
    assert(/^\d+\.\d+_\d+_token\.txt$/.test(names[0]!), names[0])
    const path = `${temp}/run_token/${names[0]}`
    const text = await Deno.readTextFile(path)
    assert(!text.includes(t.token.slice(0, 20)))
    const key = await _deriveRunTokenKey(PASS, RAND)
    assertEquals(new TextDecoder().decode(await _fernetDecrypt(key, text)), t.token)
    assertEquals(Deno.statSync(path).mode! & 0o777, 0o600)

    // A sibling process starting from the same (now stale) environment picks it up: no request.
    _resetRunTokenRegistry()
    const sibling = AzureMLTokenAuthentication.fromEnvironment(env, {
      ...options,
      cache: createTokenCache(),
    })
    assertEquals((await sibling.getToken()).token, t.token)
    assertEquals(s.rec.seen.length, 1)
  } finally {
    await Deno.remove(temp, { recursive: true })
  }
})
