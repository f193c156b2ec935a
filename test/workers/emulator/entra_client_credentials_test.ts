import { assert, assertEquals, assertExists, assertStringIncludes } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { ARM_SCOPE, assertEntraError, postForm, verifyToken } from './_helpers.ts'

const cc = (extra: Record<string, string> = {}) => ({
  grant_type: 'client_credentials',
  client_id: DEMO.clientId,
  client_secret: DEMO.clientSecret,
  scope: ARM_SCOPE,
  ...extra,
})

Deno.test('Entra client_credentials: tokens and every error, over HTTP', async (t) => {
  await using emu = await startEmulator()
  const token = emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)

  await t.step('a client secret buys an RS256 ARM token verifiable through the JWKS', async () => {
    const res = await postForm(token, cc())
    assertEquals(res.status, 200)
    assertEquals(res.body.token_type, 'Bearer')
    assertEquals(res.body.expires_in, 3599)
    assertEquals(res.body.ext_expires_in, 3599)
    assertEquals(res.body.refresh_in, undefined)
    assertEquals(res.body.refresh_token, undefined)
    assertEquals(res.headers.get('cache-control'), 'no-store, no-cache')
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId, {
      audience: 'https://management.core.windows.net/',
      issuer: `${emu.origin}/${DEMO.tenantId}/`,
    })
    assertEquals(claims.tid, DEMO.tenantId)
    assertEquals(claims.oid, DEMO.clientObjectId)
    assertEquals(claims.sub, DEMO.clientObjectId)
    assertEquals(claims.appid, DEMO.clientId)
    assertEquals(claims.appidacr, '1')
    assertEquals(claims.ver, '1.0')
    assertEquals(claims.idtyp, 'app')
    assertEquals(claims.exp! - claims.iat!, 3599)
    assertEquals(claims.nbf, claims.iat)
  })

  await t.step('the tenant may be named by domain; Basic client auth works', async () => {
    const basic = btoa(`${DEMO.clientId}:${DEMO.clientSecret}`)
    const res = await postForm(
      emu.url(`/${DEMO.tenantDomain}/oauth2/v2.0/token`),
      { grant_type: 'client_credentials', scope: 'https://ml.azure.com/.default' },
      { authorization: `Basic ${basic}` },
    )
    assertEquals(res.status, 200)
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
    assertEquals(claims.aud, 'https://ml.azure.com')
  })

  await t.step('every known resource of the three clouds is accepted', async () => {
    for (
      const r of [
        'https://management.core.chinacloudapi.cn/',
        'https://management.core.usgovcloudapi.net/',
        'https://management.azure.com/',
        'https://ml.azure.cn',
        'https://ml.azure.us',
        'https://graph.microsoft.com',
      ]
    ) {
      const scope = `${r.endsWith('/') ? r : `${r}/`}.default`
      const res = await postForm(token, cc({ scope }))
      assertEquals(res.status, 200, `${r}: ${JSON.stringify(res.body)}`)
      const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
      assertEquals(claims.aud, scope.slice(0, -'/.default'.length))
    }
  })

  await t.step('a configured v2 resource gets a v2 token with azp and roles', async () => {
    emu.register({
      resources: ['api://my-api'],
      clients: [{
        clientId: 'a0000000-0000-4000-8000-000000000001',
        secrets: ['s3cret'],
        roles: ['Data.Read'],
      }],
    })
    const res = await postForm(token, {
      grant_type: 'client_credentials',
      client_id: 'a0000000-0000-4000-8000-000000000001',
      client_secret: 's3cret',
      scope: 'api://my-api/.default',
    })
    assertEquals(res.status, 200)
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId, {
      issuer: `${emu.origin}/${DEMO.tenantId}/v2.0`,
      audience: 'api://my-api',
    })
    assertEquals(claims.ver, '2.0')
    assertEquals(claims.azp, 'a0000000-0000-4000-8000-000000000001')
    assertEquals(claims.azpacr, '1')
    assertEquals(claims.roles, ['Data.Read'])
    assertEquals(claims.appid, undefined)
  })

  await t.step('a lifetime over 2 h adds refresh_in (half); per-client lifetime wins', async () => {
    emu.register({
      clients: [{
        clientId: 'b0000000-0000-4000-8000-000000000002',
        secrets: ['x'],
        tokenLifetimeSeconds: 120,
      }],
    })
    emu.updateSettings({ tokenLifetimeSeconds: 86400 })
    try {
      const long = await postForm(token, cc())
      assertEquals(long.body.expires_in, 86400)
      assertEquals(long.body.refresh_in, 43200)
      const short = await postForm(token, {
        grant_type: 'client_credentials',
        client_id: 'b0000000-0000-4000-8000-000000000002',
        client_secret: 'x',
        scope: ARM_SCOPE,
      })
      assertEquals(short.body.expires_in, 120)
      assertEquals(short.body.refresh_in, undefined)
    } finally {
      emu.updateSettings({ tokenLifetimeSeconds: 3599 })
    }
  })

  await t.step('the correlation id echoes client-request-id', async () => {
    const id = crypto.randomUUID()
    const res = await postForm(token, cc({ client_secret: 'wrong' }), { 'client-request-id': id })
    assertEquals(res.body.correlation_id, id)
    assertStringIncludes(String(res.body.error_description), `Correlation ID: ${id}`)
    assertEquals(res.headers.get('client-request-id'), id)
  })

  await t.step('unknown tenant: AADSTS90002, 400 invalid_request', async () => {
    const res = await postForm(
      emu.url('/11111111-2222-4333-8444-555555555555/oauth2/v2.0/token'),
      cc(),
    )
    assertEntraError(res, 400, 'invalid_request', 90002)
    assertStringIncludes(
      String(res.body.error_description),
      "Tenant '11111111-2222-4333-8444-555555555555' not found",
    )
  })

  await t.step('malformed tenant: AADSTS900023', async () => {
    const res = await postForm(emu.url('/not_a_tenant!/oauth2/v2.0/token'), cc())
    assertEntraError(res, 400, 'invalid_request', 900023)
  })

  await t.step('client_credentials at /common: AADSTS50059', async () => {
    const res = await postForm(emu.url('/common/oauth2/v2.0/token'), cc())
    assertEntraError(res, 400, 'invalid_request', 50059)
  })

  await t.step('unknown client: AADSTS700016, 400 unauthorized_client', async () => {
    const res = await postForm(token, cc({ client_id: 'c0000000-0000-4000-8000-00000000dead' }))
    assertEntraError(res, 400, 'unauthorized_client', 700016)
    assertStringIncludes(String(res.body.error_description), 'c0000000-0000-4000-8000-00000000dead')
  })

  await t.step('a single-tenant app is unknown in another tenant', async () => {
    emu.register({
      clients: [{ clientId: 'd0000000-0000-4000-8000-000000000004', secrets: ['x'] }],
    })
    const res = await postForm(emu.url(`/${DEMO.secondTenantId}/oauth2/v2.0/token`), {
      ...cc(),
      client_id: 'd0000000-0000-4000-8000-000000000004',
      client_secret: 'x',
    })
    assertEntraError(res, 400, 'unauthorized_client', 700016)
  })

  await t.step('bad secret: AADSTS7000215, 401 invalid_client, secret not echoed', async () => {
    const res = await postForm(token, cc({ client_secret: 'not-the-secret-value' }))
    assertEntraError(res, 401, 'invalid_client', 7000215)
    assert(!JSON.stringify(res.body).includes('not-the-secret-value'))
  })

  await t.step('no credential: AADSTS7000218', async () => {
    const { client_secret: _, ...form } = cc()
    const res = await postForm(token, form)
    assertEntraError(res, 401, 'invalid_client', 7000218)
  })

  await t.step(
    'a public client cannot use client_credentials; with a secret: AADSTS700025',
    async () => {
      const noSecret = await postForm(token, {
        grant_type: 'client_credentials',
        client_id: DEMO.publicClientId,
        scope: ARM_SCOPE,
      })
      assertEntraError(noSecret, 401, 'invalid_client', 7000218)
      const withSecret = await postForm(token, { ...cc(), client_id: DEMO.publicClientId })
      assertEntraError(withSecret, 401, 'invalid_client', 700025)
    },
  )

  await t.step('missing parameters: AADSTS900144 naming the parameter', async () => {
    for (const name of ['grant_type', 'client_id', 'scope']) {
      const form: Record<string, string> = cc()
      delete form[name]
      const res = await postForm(token, form)
      assertEntraError(res, 400, 'invalid_request', 900144)
      assertStringIncludes(String(res.body.error_description), `'${name}'`)
    }
  })

  await t.step('a JSON body is not a form: AADSTS900144', async () => {
    const res = await fetch(token, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(cc()),
    })
    const body = await res.json()
    assertEntraError({ status: res.status, body }, 400, 'invalid_request', 900144)
  })

  await t.step('unsupported grant type: AADSTS70003', async () => {
    const res = await postForm(token, cc({ grant_type: 'password' }))
    assertEntraError(res, 400, 'unsupported_grant_type', 70003)
  })

  await t.step('invalid scopes: 70011, 1002012, 28000', async () => {
    assertEntraError(
      await postForm(token, cc({ scope: 'https://graph.microsoft.com/' })),
      400,
      'invalid_scope',
      70011,
    )
    assertEntraError(await postForm(token, cc({ scope: '   ' })), 400, 'invalid_scope', 70011)
    assertEntraError(
      await postForm(token, cc({ scope: 'https://graph.microsoft.com/User.Read' })),
      400,
      'invalid_scope',
      1002012,
    )
    assertEntraError(
      await postForm(token, cc({ scope: `${ARM_SCOPE} https://ml.azure.com/.default` })),
      400,
      'invalid_scope',
      28000,
    )
  })

  await t.step('unknown resource: AADSTS500011, 400 invalid_resource', async () => {
    const res = await postForm(token, cc({ scope: 'https://unknown.example/.default' }))
    assertEntraError(res, 400, 'invalid_resource', 500011)
    assertStringIncludes(String(res.body.error_description), 'https://unknown.example')
  })

  await t.step('v1 endpoint: resource in, expires_on as a string out', async () => {
    const res = await postForm(emu.url(`/${DEMO.tenantId}/oauth2/token`), {
      grant_type: 'client_credentials',
      client_id: DEMO.clientId,
      client_secret: DEMO.clientSecret,
      resource: 'https://management.core.windows.net/',
    })
    assertEquals(res.status, 200)
    assertEquals(typeof res.body.expires_on, 'string')
    assertEquals(typeof res.body.expires_in, 'string')
    assertEquals(res.body.resource, 'https://management.core.windows.net/')
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
    assertEquals(String(claims.exp), res.body.expires_on)
    const missing = await postForm(emu.url(`/${DEMO.tenantId}/oauth2/token`), {
      grant_type: 'client_credentials',
      client_id: DEMO.clientId,
      client_secret: DEMO.clientSecret,
    })
    assertEntraError(missing, 400, 'invalid_request', 900144)
    const unknown = await postForm(emu.url(`/${DEMO.tenantId}/oauth2/token`), {
      grant_type: 'client_credentials',
      client_id: DEMO.clientId,
      client_secret: DEMO.clientSecret,
      resource: 'https://nope.example',
    })
    assertEntraError(unknown, 400, 'invalid_resource', 500011)
  })

  await t.step('the request log holds the form with secrets redacted', () => {
    const log = emu.requests({ route: 'entra.token' })
    assert(log.length > 5)
    for (const e of log) {
      if (e.form?.client_secret) assertEquals(e.form.client_secret, '[redacted]')
      if (e.headers.authorization) assertEquals(e.headers.authorization, '[redacted]')
    }
    assertExists(log.find((e) => e.status === 401))
    assert(!JSON.stringify(log).includes(DEMO.clientSecret))
  })
})
