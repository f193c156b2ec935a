// MsiAuthentication against the project's identity emulator: every source, as the real
// platforms set their variables (`emu.env(source)`), asserted through the emulator's request log.
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertRejects,
  assertStringIncludes,
} from '@std/assert'
import { Audience, AuthenticationError } from '@aml-edge/auth'
import { _decodeJwt } from '../../src/jwt.ts'
import { MsiAuthentication } from '../../src/credentials/msi.ts'
import type {
  ManagedIdentityConfig,
  ManagedIdentitySource,
} from '../../src/credentials/_msi_sources.ts'
import {
  DEMO,
  type EmulatorEnvSource,
  type RouteName,
  startEmulator,
} from '../../workers/emulator/serve.ts'
import { fakeClock } from '../_fixtures/loopback.ts'
import { caCertPem, localhostCertPem, localhostKeyPem } from '../_fixtures/certs.ts'
import { ARM, assertCode, msi } from './_msi_helpers.ts'

const SOURCES: [EmulatorEnvSource, ManagedIdentitySource, RouteName][] = [
  ['imds', 'imds', 'mi.imds'],
  ['app-service', 'app-service', 'mi.app-service'],
  ['azureml', 'azure-ml', 'mi.azureml'],
  ['cloud-shell', 'cloud-shell', 'mi.cloud-shell'],
  ['arc', 'azure-arc', 'mi.arc'],
  ['service-fabric', 'service-fabric', 'mi.service-fabric'],
]

const EXPECTED: Record<
  ManagedIdentitySource,
  { method: string; query: Record<string, string>; headers: Record<string, string | undefined> }
> = {
  imds: {
    method: 'GET',
    query: { 'api-version': '2018-02-01', resource: ARM },
    headers: { metadata: 'true', secret: undefined, 'x-identity-header': undefined },
  },
  'app-service': {
    method: 'GET',
    query: { 'api-version': '2019-08-01', resource: ARM },
    headers: { 'x-identity-header': '[redacted]', metadata: undefined, secret: undefined },
  },
  'azure-ml': {
    method: 'GET',
    query: { 'api-version': '2017-09-01', resource: ARM, clientid: DEMO.systemIdentity.clientId },
    headers: { secret: '[redacted]', metadata: 'true' },
  },
  'cloud-shell': {
    method: 'POST',
    query: {},
    headers: {
      metadata: 'true',
      'content-type': 'application/x-www-form-urlencoded;charset=utf-8',
    },
  },
  'azure-arc': {
    method: 'GET',
    query: { 'api-version': '2020-06-01', resource: ARM },
    headers: { metadata: 'true' },
  },
  'service-fabric': {
    method: 'GET',
    query: { 'api-version': '2019-07-01-preview', resource: ARM },
    headers: { secret: '[redacted]', metadata: undefined },
  },
}

for (const [envName, source, route] of SOURCES) {
  Deno.test(`MsiAuthentication (${source}) gets a token from the emulator with the exact request`, async () => {
    await using emu = await startEmulator()
    const auth = msi({ env: emu.env(envName), arcKeyDirectory: emu.arcKeyDir })
    assertEquals(auth.source, source)
    const t = await auth.getToken()
    const claims = _decodeJwt(t.token)
    assertEquals(claims.aud, ARM)
    assertEquals(t.expiresOn, claims.exp)
    if (source === 'cloud-shell') assertEquals(claims.oid, DEMO.user.objectId)
    else assertEquals(claims.oid, DEMO.systemIdentity.objectId)

    const log = emu.requests({ route })
    const want = EXPECTED[source]
    // Arc: the challenge, then the same request with the key
    assertEquals(log.length, source === 'azure-arc' ? 2 : 1)
    for (const r of log) {
      assertEquals(r.method, want.method)
      assertEquals(r.query, want.query)
      for (const [h, v] of Object.entries(want.headers)) assertEquals(r.headers[h], v, h)
    }
    if (source === 'cloud-shell') assertEquals(log[0]!.form, { resource: ARM })
    if (source === 'azure-arc') {
      assertEquals(log[0]!.status, 401)
      assertEquals(log[0]!.headers.authorization, undefined)
      assertEquals(log[1]!.headers.authorization, '[redacted]')
      assertEquals(log[1]!.status, 200)
    }
    // cached
    await auth.getToken()
    assertEquals(emu.requests({ route }).length, log.length)
  })
}

const USER_ASSIGNED: [EmulatorEnvSource, ManagedIdentityConfig, string, string][] = [
  ['imds', { clientId: DEMO.userIdentity.clientId }, 'client_id', DEMO.userIdentity.clientId],
  ['imds', { objectId: DEMO.userIdentity.objectId }, 'object_id', DEMO.userIdentity.objectId],
  [
    'imds',
    { resourceId: DEMO.userIdentity.resourceId },
    'msi_res_id',
    DEMO.userIdentity.resourceId,
  ],
  [
    'app-service',
    { clientId: DEMO.userIdentity.clientId },
    'client_id',
    DEMO.userIdentity.clientId,
  ],
  [
    'app-service',
    { objectId: DEMO.userIdentity.objectId },
    'object_id',
    DEMO.userIdentity.objectId,
  ],
  [
    'app-service',
    { resourceId: DEMO.userIdentity.resourceId },
    'mi_res_id',
    DEMO.userIdentity.resourceId,
  ],
  [
    'service-fabric',
    { clientId: DEMO.userIdentity.clientId },
    'client_id',
    DEMO.userIdentity.clientId,
  ],
  [
    'service-fabric',
    { resourceId: DEMO.userIdentity.resourceId },
    'mi_res_id',
    DEMO.userIdentity.resourceId,
  ],
  ['azureml', { clientId: DEMO.userIdentity.clientId }, 'clientid', DEMO.userIdentity.clientId],
]

for (const [envName, identityConfig, param, value] of USER_ASSIGNED) {
  Deno.test(`MsiAuthentication (${envName}) gets a user-assigned token by ${param} from the emulator`, async () => {
    await using emu = await startEmulator()
    const auth = msi({
      env: emu.env(envName),
      identityConfig,
    })
    const t = await auth.getTokenForAudience(Audience.AZUREML)
    const claims = _decodeJwt(t.token)
    assertEquals(claims.oid, DEMO.userIdentity.objectId)
    assertEquals(claims.aud, 'https://ml.azure.com')
    const [r] = emu.requests()
    assertEquals(r!.query[param], value)
  })
}

for (const format of ['date', 'date12h', 'epoch'] as const) {
  Deno.test(`MsiAuthentication (azure-ml) reads the emulator's ${format} expires_on`, async () => {
    await using emu = await startEmulator({
      config: { managedIdentity: { azuremlExpiresOnFormat: format } },
    })
    const t = await msi({ env: emu.env('azureml') }).getToken()
    assertEquals(t.expiresOn, _decodeJwt(t.token).exp)
  })
}

Deno.test('MsiAuthentication (imds) unknown user-assigned identity: 400 at once, with advice', async () => {
  await using emu = await startEmulator()
  const auth = msi({
    env: emu.env('imds'),
    identityConfig: { clientId: '00000000-0000-4000-8000-000000000000' },
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
  assertEquals(e.status, 400)
  assertEquals(e.errorDescription, 'Identity not found')
  assertStringIncludes(e.message, 'Check identityConfig')
  assertEquals(emu.requests({ route: 'mi.imds' }).length, 1)
})

for (const envName of ['app-service', 'service-fabric'] as const) {
  Deno.test(`MsiAuthentication (${envName}) unknown user-assigned identity: 400 with advice`, async () => {
    await using emu = await startEmulator()
    const auth = msi({
      env: emu.env(envName),
      identityConfig: { objectId: '00000000-0000-4000-8000-000000000000' },
    })
    const e = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
    assertEquals(e.status, 400)
    assertStringIncludes(e.message, 'Check identityConfig')
  })
}

for (const envName of ['app-service', 'azureml', 'service-fabric'] as const) {
  Deno.test(`MsiAuthentication (${envName}) wrong secret: 401 without the secret`, async () => {
    await using emu = await startEmulator()
    const secret = 'the-wrong-secret-value-123'
    const auth = msi({ env: emu.env(envName, { secret }) })
    const e = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e, 'ERR_AUTHENTICATION', [secret, DEMO.msiSecret])
    assertEquals(e.status, 401)
    assertStringIncludes(e.message, 'restart the app')
  })
}

Deno.test("MsiAuthentication (azure-ml) refuses an unknown resource with Entra's code", async () => {
  await using emu = await startEmulator()
  const e = await assertRejects(
    () => msi({ env: emu.env('azureml') }).getToken('api://unknown-api/.default'),
    AuthenticationError,
  )
  assertCode(e, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
  assertEquals(e.errorCodes, [500011])
})

Deno.test("MsiAuthentication (imds) retries the emulator's 410s, then gets a token", async () => {
  await using emu = await startEmulator()
  emu.failNext({ route: 'mi.imds', status: 410, count: 4 })
  const clock = fakeClock()
  const auth = msi({
    env: emu.env('imds'),
    now: clock.now,
    sleep: clock.sleep,
    retry: { maxRetries: 1 },
  })
  const t = await auth.getToken()
  assert(t.token)
  const log = emu.requests({ route: 'mi.imds' })
  assertEquals(log.map((r) => r.status), [410, 410, 410, 410, 200])
})

Deno.test('MsiAuthentication (imds) gives up on endless 410s after 70 s', async () => {
  await using emu = await startEmulator()
  emu.failNext({ route: 'mi.imds', status: 410, count: 1000 })
  const clock = fakeClock()
  const start = clock.now()
  const auth = msi({ env: emu.env('imds'), now: clock.now, sleep: clock.sleep })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
  assertEquals(e.status, 410)
  assertGreaterOrEqual(clock.now() - start, 70_000)
  emu.clearFaults()
})

for (const [envName, route] of [['imds', 'mi.imds'], ['app-service', 'mi.app-service']] as const) {
  Deno.test(`MsiAuthentication (${envName}) waits the emulator's Retry-After on 429`, async () => {
    await using emu = await startEmulator()
    emu.failNext({ route, status: 429, retryAfter: 4 })
    const clock = fakeClock()
    const auth = msi({ env: emu.env(envName), now: clock.now, sleep: clock.sleep })
    await auth.getToken()
    assertEquals(clock.slept, [4000])
    assertEquals(emu.requests({ route }).map((r) => r.status), [429, 200])
  })

  Deno.test(`MsiAuthentication (${envName}) retries the emulator's 500 then succeeds`, async () => {
    await using emu = await startEmulator()
    emu.failNext({ route, status: 500 })
    const clock = fakeClock()
    const auth = msi({ env: emu.env(envName), now: clock.now, sleep: clock.sleep })
    await auth.getToken()
    assertEquals(emu.requests({ route }).map((r) => r.status), [500, 200])
  })

  Deno.test(`MsiAuthentication (${envName}) reports an emulated HTML page and garbage`, async () => {
    await using emu = await startEmulator()
    emu.failNext({ route, kind: 'html', status: 403 })
    emu.failNext({ route, kind: 'malformed-json' })
    const clock = fakeClock()
    const auth = msi({ env: emu.env(envName), now: clock.now, sleep: clock.sleep })
    const e1 = await assertRejects(() => auth.getToken(), AuthenticationError)
    assertCode(e1, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
    const e2 = await assertRejects(() => auth.getToken())
    assertCode(e2, 'ERR_RESPONSE_INVALID', [DEMO.msiSecret])
  })
}

Deno.test('MsiAuthentication caller abort ends the wait while the emulator answers 503', async () => {
  await using emu = await startEmulator()
  emu.failNext({ route: 'mi.app-service', status: 503, count: 10 })
  const clock = fakeClock()
  const controller = new AbortController()
  const sleep = (ms: number, signal?: AbortSignal) => {
    controller.abort()
    return clock.sleep(ms, signal)
  }
  const auth = msi({ env: emu.env('app-service'), now: clock.now, sleep })
  const e = await assertRejects(() => auth.getToken(undefined, { abortSignal: controller.signal }))
  assertCode(e, 'ERR_ABORTED', [DEMO.msiSecret])
  // join the shared request so that it ends before the emulator stops
  const e2 = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e2, 'ERR_AUTHENTICATION', [DEMO.msiSecret])
  emu.clearFaults()
})

Deno.test('MsiAuthentication: 1000 concurrent callers make one emulator request', async () => {
  await using emu = await startEmulator()
  const auth = msi({ env: emu.env('imds') })
  const tokens = await Promise.all(Array.from({ length: 1000 }, () => auth.getToken()))
  assert(tokens.every((t) => t === tokens[0]))
  assertEquals(emu.requests({ route: 'mi.imds' }).length, 1)
})

Deno.test("MsiAuthentication.isAvailable({ probe }) finds the emulator's IMDS", async () => {
  await using emu = await startEmulator()
  assertEquals(await MsiAuthentication.isAvailable(emu.env('imds'), { probe: true }), true)
  const [r] = emu.requests({ route: 'mi.imds' })
  assertEquals(r!.status, 400)
  assertEquals(r!.headers.metadata, undefined)
})

Deno.test('MsiAuthentication (service-fabric) over https with a fetch that trusts the cluster CA', async () => {
  await using emu = await startEmulator({ tls: { cert: localhostCertPem, key: localhostKeyPem } })
  assert(emu.origin.startsWith('https://'))
  using client = Deno.createHttpClient({ caCerts: [caCertPem] })
  const fetch = (input: string | URL | Request, init?: RequestInit) =>
    globalThis.fetch(input, { ...init, client })
  const t = await msi({ env: emu.env('service-fabric'), fetch }).getToken()
  assertEquals(_decodeJwt(t.token).oid, DEMO.systemIdentity.objectId)
  // without it, the cluster certificate is not trusted: a network error, no secret in it
  const clock = fakeClock()
  const e = await assertRejects(() =>
    msi({ env: emu.env('service-fabric'), now: clock.now, sleep: clock.sleep }).getToken()
  )
  assertCode(e, 'ERR_NETWORK', [DEMO.msiSecret])
})
