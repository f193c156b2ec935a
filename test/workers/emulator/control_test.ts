import { assert, assertEquals, assertStringIncludes, assertThrows } from '@std/assert'
import {
  createEmulator,
  DEMO,
  emulatorEnv,
  ENV_SOURCES,
  startEmulator,
} from '../../../workers/emulator/serve.ts'
import { ARM_SCOPE, postForm } from './_helpers.ts'

async function call(
  url: string,
  method: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null, text }
}

Deno.test('control API over HTTP', async (t) => {
  await using emu = await startEmulator()
  const c = (p: string) => emu.url(`/__emulator${p}`)

  await t.step('GET /__emulator describes routes, env sources and demo values', async () => {
    const res = await call(c(''), 'GET')
    assertEquals(res.status, 200)
    assertEquals(res.body.demo.tenantId, DEMO.tenantId)
    assert(res.body.routes.includes('entra.token'))
    assertEquals(res.body.envSources, [...ENV_SOURCES])
  })

  await t.step('register a tenant, client and resource, then use them', async () => {
    const tenant = 'abcdefab-0000-4000-8000-000000000001'
    const res = await call(c('/register'), 'POST', {
      tenants: [{ id: tenant, domains: ['contoso-emu.onmicrosoft.com'] }],
      clients: [{
        clientId: 'abcdefab-0000-4000-8000-0000000000c1',
        tenantId: tenant,
        secrets: ['pw'],
      }],
      resources: [{ id: 'https://api.contoso.test', tokenVersion: 1 }],
    })
    assertEquals(res.status, 200)
    const tok = await postForm(emu.url('/contoso-emu.onmicrosoft.com/oauth2/v2.0/token'), {
      grant_type: 'client_credentials',
      client_id: 'abcdefab-0000-4000-8000-0000000000c1',
      client_secret: 'pw',
      scope: 'https://api.contoso.test/.default',
    })
    assertEquals(tok.status, 200, JSON.stringify(tok.body))
    const bad = await call(c('/register'), 'POST', { clients: [{ secrets: ['x'] }] })
    assertEquals(bad.status, 400)
    assertStringIncludes(bad.body.error_description, 'clients[].clientId')
    const notJson = await fetch(c('/register'), { method: 'POST', body: '{' })
    assertEquals(notJson.status, 400)
    await notJson.body?.cancel()
  })

  await t.step('GET /__emulator/config redacts secrets', async () => {
    const res = await call(c('/config'), 'GET')
    assertEquals(res.body.settings.managedIdentity.secret, '[redacted]')
    assert(!res.text.includes(DEMO.clientSecret))
    assertEquals(
      res.body.clients.find((x: { clientId: string }) => x.clientId === DEMO.clientId).secrets,
      1,
    )
  })

  await t.step('faults, latency and settings', async () => {
    const armed = await call(c('/faults'), 'POST', [{
      route: 'entra.token',
      status: 500,
      count: 3,
    }])
    assertEquals(armed.status, 201)
    assertEquals(armed.body.faults[0].remaining, 3)
    assertEquals((await call(c('/faults'), 'GET')).body.faults.length, 1)
    assertEquals((await call(c('/faults'), 'DELETE')).body.faults, [])
    assertEquals((await call(c('/faults'), 'POST', { route: 'bogus' })).status, 400)
    const lat = await call(c('/latency'), 'PUT', { 'mi.imds': 25 })
    assertEquals(lat.body.latency, { 'mi.imds': 25 })
    const s = await call(c('/settings'), 'PATCH', {
      tokenLifetimeSeconds: 7201,
      deviceCode: { intervalSeconds: 1 },
    })
    assertEquals(s.body.tokenLifetimeSeconds, 7201)
    assertEquals(s.body.deviceCode.intervalSeconds, 1)
    assertEquals(s.body.deviceCode.expiresInSeconds, 900)
    assertEquals((await call(c('/settings'), 'PATCH', { tokenLifetimeSeconds: -1 })).status, 400)
    assertEquals((await call(c('/settings'), 'GET')).body.tokenLifetimeSeconds, 7201)
  })

  await t.step('request log read and cleared; control calls are not logged', async () => {
    await postForm(emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`), {
      grant_type: 'client_credentials',
      client_id: DEMO.clientId,
      client_secret: DEMO.clientSecret,
      scope: ARM_SCOPE,
    })
    const log = await call(c('/requests?route=entra.token&limit=1'), 'GET')
    assertEquals(log.body.requests.length, 1)
    assertEquals(log.body.requests[0].form.client_secret, '[redacted]')
    assertEquals(log.body.requests[0].status, 200)
    assert(
      !(await call(c('/requests'), 'GET')).body.requests.some((e: { path: string }) =>
        e.path.startsWith('/__emulator')
      ),
    )
    await call(c('/requests'), 'DELETE')
    assertEquals((await call(c('/requests'), 'GET')).body.requests, [])
  })

  await t.step(
    'access tokens, device codes, clock, refresh-token expiry, arc keys, env',
    async () => {
      const at = await call(c('/access-tokens'), 'POST', {
        resource: 'https://ml.azure.com',
        lifetimeSeconds: 60,
      })
      assertEquals(at.status, 201)
      assert(at.body.expiresOn - Math.floor(Date.now() / 1000) <= 60)
      const dc = await postForm(emu.url('/organizations/oauth2/v2.0/devicecode'), {
        client_id: DEMO.publicClientId,
        scope: ARM_SCOPE,
      })
      const list = await call(c('/device-codes'), 'GET')
      assertEquals(list.body.deviceCodes.at(-1).userCode, dc.body.user_code)
      assertEquals(list.body.deviceCodes.at(-1).status, 'pending')
      assertEquals(
        (await call(c('/device-codes/approve'), 'POST', { userCode: dc.body.user_code })).status,
        200,
      )
      assertEquals(
        (await call(c('/device-codes/approve'), 'POST', { userCode: dc.body.user_code })).status,
        404,
      )
      assertEquals((await call(c('/device-codes/deny'), 'POST', { userCode: 'NOPE' })).status, 404)
      const before = emu.now()
      const clock = await call(c('/clock'), 'POST', { advanceSeconds: 3600 })
      assert(Date.parse(clock.body.now) - before >= 3_599_000)
      emu.advanceClock(-3600)
      assertEquals((await call(c('/refresh-tokens/expire'), 'POST')).status, 200)
      assertEquals((await call(c('/arc-key?path=/nope'), 'GET')).status, 404)
      const env = await call(c('/env/app-service'), 'GET')
      assertEquals(env.body, emu.env('app-service'))
      assertEquals((await call(c('/env/nope'), 'GET')).status, 400)
    },
  )

  await t.step('reset restores the start configuration', async () => {
    await call(c('/reset'), 'POST')
    assertEquals(emu.settings().tokenLifetimeSeconds, 3599)
    assertEquals(emu.settings().latency, {})
    const tok = await postForm(emu.url('/contoso-emu.onmicrosoft.com/oauth2/v2.0/token'), {
      grant_type: 'client_credentials',
      client_id: 'abcdefab-0000-4000-8000-0000000000c1',
      client_secret: 'pw',
      scope: ARM_SCOPE,
    })
    assertEquals(tok.body.error_codes, [90002])
  })
})

Deno.test('control token protects /__emulator/', async () => {
  await using emu = await startEmulator({ config: { controlToken: 'let-me-in' } })
  const denied = await call(emu.url('/__emulator/reset'), 'POST')
  assertEquals(denied.status, 401)
  const allowed = await call(emu.url('/__emulator/reset'), 'POST', undefined, {
    authorization: 'Bearer let-me-in',
  })
  assertEquals(allowed.status, 200)
  const cfg = await call(emu.url('/__emulator/config'), 'GET', undefined, {
    authorization: 'Bearer let-me-in',
  })
  assertEquals(cfg.body.settings.controlToken, '[redacted]')
})

Deno.test('emulatorEnv() gives each source the variables its platform sets', () => {
  const o = 'http://127.0.0.1:8400'
  assertEquals(emulatorEnv(o, 'imds'), { AZURE_POD_IDENTITY_AUTHORITY_HOST: o })
  assertEquals(emulatorEnv(`${o}/`, 'app-service'), {
    IDENTITY_ENDPOINT: `${o}/msi/app-service/token`,
    IDENTITY_HEADER: DEMO.msiSecret,
  })
  assertEquals(emulatorEnv(o, 'azureml', { secret: 's' }), {
    MSI_ENDPOINT: `${o}/msi/azureml/token`,
    MSI_SECRET: 's',
    DEFAULT_IDENTITY_CLIENT_ID: DEMO.systemIdentity.clientId,
  })
  assertEquals(emulatorEnv(o, 'cloud-shell'), { MSI_ENDPOINT: `${o}/msi/cloud-shell/token` })
  assertEquals(emulatorEnv(o, 'arc'), {
    IDENTITY_ENDPOINT: `${o}/msi/arc/metadata/identity/oauth2/token`,
    IMDS_ENDPOINT: `${o}/msi/arc`,
  })
  assertEquals(emulatorEnv(o, 'service-fabric', { thumbprint: 'AB' }), {
    IDENTITY_ENDPOINT: `${o}/msi/service-fabric/token`,
    IDENTITY_HEADER: DEMO.msiSecret,
    IDENTITY_SERVER_THUMBPRINT: 'AB',
  })
  assertEquals(emulatorEnv(o, 'service-principal').AZURE_CLIENT_SECRET, DEMO.clientSecret)
  assertEquals(emulatorEnv(o, 'service-principal').AZUREML_SERVICE_PRINCIPAL_ID, DEMO.clientId)
  assertThrows(() => emulatorEnv(o, 'nope' as 'imds'), RangeError)
})

Deno.test('createEmulator() serves in-process without a socket, and validates its config', async () => {
  const { fetch: handle, control } = createEmulator({
    demo: false,
    tenants: [{ id: 'a1a1a1a1-0000-4000-8000-000000000000' }],
  })
  const res = await handle(
    new Request(
      'http://emulator.test/a1a1a1a1-0000-4000-8000-000000000000/v2.0/.well-known/openid-configuration',
    ),
  )
  assertEquals(
    (await res.json()).issuer,
    'http://emulator.test/a1a1a1a1-0000-4000-8000-000000000000/v2.0',
  )
  const dflt = await handle(
    new Request(`http://emulator.test/${DEMO.tenantId}/v2.0/.well-known/openid-configuration`),
  )
  assertEquals(dflt.status, 400, 'demo: false registers no demo tenant')
  await dflt.body?.cancel()
  assertEquals(
    control.settings().managedIdentity.systemIdentity?.clientId,
    DEMO.systemIdentity.clientId,
  )
  assertThrows(
    () => createEmulator({ tokenLifetimeSeconds: 0 }),
    RangeError,
    'tokenLifetimeSeconds',
  )
  assertThrows(
    () => createEmulator({ clients: [{ clientId: 'x', certificates: ['nope'] }] }),
    TypeError,
    'certificates',
  )
  assertThrows(() => createEmulator({ faults: [{ route: 'x' as 'entra.token' }] }), RangeError)
})
