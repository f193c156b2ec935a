import { assert, assertEquals, assertMatch, assertStringIncludes } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { get, postForm, verifyToken } from './_helpers.ts'

const ARM = 'https://management.azure.com/'

Deno.test('managed identity: every source with its own contract', async (t) => {
  await using emu = await startEmulator()
  const md = { Metadata: 'true' }

  await t.step('IMDS: system identity, strings for every time field', async () => {
    const res = await get(
      emu.url(`/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${ARM}`),
      md,
    )
    assertEquals(res.status, 200, res.text)
    for (const k of ['expires_in', 'expires_on', 'ext_expires_in', 'not_before']) {
      assertEquals(typeof res.body[k], 'string', k)
    }
    assertEquals(res.body.expires_in, '86399')
    assertEquals(res.body.resource, ARM)
    assertEquals(res.body.token_type, 'Bearer')
    assertEquals(res.body.client_id, DEMO.systemIdentity.clientId)
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId, {
      audience: ARM,
    })
    assertEquals(claims.oid, DEMO.systemIdentity.objectId)
    assertEquals(claims.appid, DEMO.systemIdentity.clientId)
    assertEquals(claims.xms_mirid, DEMO.systemIdentity.resourceId)
    assertEquals(String(claims.exp), res.body.expires_on)
  })

  await t.step('IMDS: user-assigned by client_id, object_id and msi_res_id', async () => {
    for (
      const [k, v] of [
        ['client_id', DEMO.userIdentity.clientId],
        ['object_id', DEMO.userIdentity.objectId],
        ['msi_res_id', DEMO.userIdentity.resourceId],
      ]
    ) {
      const res = await get(
        emu.url(
          `/metadata/identity/oauth2/token?api-version=2019-08-01&resource=${ARM}&${k}=${
            encodeURIComponent(v!)
          }`,
        ),
        md,
      )
      assertEquals(res.status, 200, `${k}: ${res.text}`)
      const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
      assertEquals(claims.oid, DEMO.userIdentity.objectId)
    }
  })

  await t.step(
    'IMDS errors: no Metadata header, no api-version, no resource, unknown identity, unknown resource',
    async () => {
      const base = emu.url('/metadata/identity/oauth2/token')
      const probe = await get(base)
      assertEquals(probe.status, 400)
      assertEquals(probe.body.error, 'invalid_request')
      assertStringIncludes(String(probe.body.error_description), 'metadata header')
      const noVersion = await get(`${base}?resource=${ARM}`, md)
      assertEquals(noVersion.status, 400)
      assertStringIncludes(String(noVersion.body.error_description), 'api-version')
      const old = await get(`${base}?api-version=2017-01-01&resource=${ARM}`, md)
      assertEquals(old.status, 400)
      const noResource = await get(`${base}?api-version=2018-02-01`, md)
      assertStringIncludes(String(noResource.body.error_description), 'resource')
      const unknown = await get(
        `${base}?api-version=2018-02-01&resource=${ARM}&client_id=00000000-0000-4000-8000-000000000000`,
        md,
      )
      assertEquals(unknown.status, 400)
      assertEquals(unknown.body.error_description, 'Identity not found')
      const two = await get(
        `${base}?api-version=2018-02-01&resource=${ARM}&client_id=a&object_id=b`,
        md,
      )
      assertEquals(two.status, 400)
      const badResource = await get(
        `${base}?api-version=2018-02-01&resource=https://nope.example`,
        md,
      )
      assertEquals(badResource.status, 400)
      assertEquals(badResource.body.error, 'invalid_resource')
      assertMatch(String(badResource.body.error_description), /^AADSTS500011:/)
    },
  )

  await t.step(
    'IMDS without a system identity: one user identity is used, several must be named',
    async () => {
      emu.updateSettings({ managedIdentity: { systemIdentity: null } })
      try {
        const url = emu.url(
          `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${ARM}`,
        )
        const one = await get(url, md)
        assertEquals(one.body.client_id, DEMO.userIdentity.clientId)
        emu.register({ identities: [{ clientId: 'a1', objectId: 'b1', resourceId: '/x/y/z' }] })
        const many = await get(url, md)
        assertEquals(many.status, 400)
        assertStringIncludes(
          String(many.body.error_description),
          'Multiple user assigned identities',
        )
      } finally {
        emu.reset()
      }
    },
  )

  await t.step('App Service 2019: X-IDENTITY-HEADER, expires_on epoch string', async () => {
    const env = emu.env('app-service')
    const url = `${env.IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=${ARM}`
    const res = await get(url, { 'X-IDENTITY-HEADER': env.IDENTITY_HEADER! })
    assertEquals(res.status, 200, res.text)
    assertMatch(String(res.body.expires_on), /^\d{10}$/)
    assertEquals(res.body.client_id, DEMO.systemIdentity.clientId)
    const user = await get(`${url}&mi_res_id=${encodeURIComponent(DEMO.userIdentity.resourceId)}`, {
      'X-IDENTITY-HEADER': env.IDENTITY_HEADER!,
    })
    assertEquals(user.body.client_id, DEMO.userIdentity.clientId)
    const missing = await get(url)
    assertEquals(missing.status, 400)
    assertEquals(missing.body.statusCode, 400)
    const wrong = await get(url, { 'X-IDENTITY-HEADER': 'nope' })
    assertEquals(wrong.status, 401)
    const unknown = await get(`${url}&client_id=00000000-0000-4000-8000-000000000000`, {
      'X-IDENTITY-HEADER': env.IDENTITY_HEADER!,
    })
    assertEquals(unknown.status, 400)
    assertEquals(unknown.body.message, 'Unable to load the proper Managed Identity.')
    const version = await get(`${env.IDENTITY_ENDPOINT}?api-version=2017-09-01&resource=${ARM}`, {
      'X-IDENTITY-HEADER': env.IDENTITY_HEADER!,
    })
    assertEquals(version.status, 400)
  })

  await t.step(
    'Azure ML / 2017: secret header, clientid, date-string expires_on (three formats)',
    async () => {
      const env = emu.env('azureml')
      const url = `${env.MSI_ENDPOINT}?api-version=2017-09-01&resource=${ARM}`
      const res = await get(url, { secret: env.MSI_SECRET! })
      assertEquals(res.status, 200, res.text)
      assertMatch(String(res.body.expires_on), /^\d\d\/\d\d\/\d{4} \d\d:\d\d:\d\d \+00:00$/)
      const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
      const parsed = Date.parse(String(res.body.expires_on).replace(' +00:00', 'Z'))
      assertEquals(parsed / 1000, claims.exp)
      emu.updateSettings({ managedIdentity: { azuremlExpiresOnFormat: 'date12h' } })
      const d12 = await get(url, { secret: env.MSI_SECRET! })
      assertMatch(
        String(d12.body.expires_on),
        /^\d{1,2}\/\d{1,2}\/\d{4} \d{1,2}:\d\d:\d\d (AM|PM) \+00:00$/,
      )
      emu.updateSettings({ managedIdentity: { azuremlExpiresOnFormat: 'epoch' } })
      const epoch = await get(`${url}&clientid=${DEMO.userIdentity.clientId}`, {
        secret: env.MSI_SECRET!,
      })
      assertEquals(typeof epoch.body.expires_on, 'number')
      assertEquals(epoch.body.client_id, DEMO.userIdentity.clientId)
      emu.updateSettings({ managedIdentity: { azuremlExpiresOnFormat: 'date' } })
      assertEquals((await get(url)).status, 401)
      assertEquals((await get(url, { secret: 'nope' })).status, 401)
      assertEquals((await get(`${url}&clientid=nobody`, { secret: env.MSI_SECRET! })).status, 400)
      assertEquals(env.DEFAULT_IDENTITY_CLIENT_ID, DEMO.systemIdentity.clientId)
    },
  )

  await t.step("Cloud Shell: POST form, Metadata header, the signed-in user's token", async () => {
    const env = emu.env('cloud-shell')
    const res = await postForm(env.MSI_ENDPOINT!, { resource: ARM }, md)
    assertEquals(res.status, 200, JSON.stringify(res.body))
    assertEquals(typeof res.body.expires_on, 'string')
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
    assertEquals(claims.oid, DEMO.user.objectId)
    assertEquals(claims.scp, 'user_impersonation')
    assertEquals((await postForm(env.MSI_ENDPOINT!, { resource: ARM })).status, 400)
    assertEquals((await postForm(env.MSI_ENDPOINT!, {}, md)).status, 400)
    assertEquals(
      (await postForm(env.MSI_ENDPOINT!, { resource: ARM, client_id: 'x' }, md)).status,
      400,
    )
  })

  await t.step('Azure Arc: 401 challenge with a key file, then Basic <key>', async () => {
    const env = emu.env('arc')
    assertEquals(env.IMDS_ENDPOINT, emu.url('/msi/arc'))
    const url = `${env.IDENTITY_ENDPOINT}?api-version=2020-06-01&resource=${ARM}`
    const challenge = await get(url, md)
    assertEquals(challenge.status, 401)
    const header = challenge.headers.get('www-authenticate')!
    assertMatch(header, /^Basic realm=/)
    const path = header.slice('Basic realm='.length)
    assert(path.startsWith(emu.arcKeyDir), path)
    assert(path.endsWith('.key'))
    const key = await Deno.readTextFile(path)
    assertEquals(key, emu.arcKey(path))
    const res = await get(url, { ...md, Authorization: `Basic ${key}` })
    assertEquals(res.status, 200, res.text)
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
    assertEquals(claims.oid, DEMO.systemIdentity.objectId)
    const wrong = await get(url, { ...md, Authorization: 'Basic not-the-key' })
    assertEquals(wrong.status, 401)
    assertEquals(wrong.headers.get('www-authenticate'), null)
    const user = await get(`${url}&client_id=${DEMO.userIdentity.clientId}`, md)
    assertEquals(user.status, 400)
    assertEquals((await get(url)).status, 400)
    assertEquals(
      (await get(`${env.IDENTITY_ENDPOINT}?api-version=2019-01-01&resource=${ARM}`, md)).status,
      400,
    )
  })

  await t.step('Service Fabric: secret header, numeric expires_on, its error shape', async () => {
    const env = emu.env('service-fabric')
    assertEquals(env.IDENTITY_SERVER_THUMBPRINT, DEMO.serviceFabricThumbprint)
    const url = `${env.IDENTITY_ENDPOINT}?api-version=2019-07-01-preview&resource=${ARM}`
    const res = await get(url, { secret: env.IDENTITY_HEADER! })
    assertEquals(res.status, 200, res.text)
    assertEquals(typeof res.body.expires_on, 'number')
    assertEquals(res.body.token_type, 'Bearer')
    const user = await get(`${url}&client_id=${DEMO.userIdentity.clientId}`, {
      secret: env.IDENTITY_HEADER!,
    })
    assertEquals(
      (await verifyToken(emu, String(user.body.access_token), DEMO.tenantId)).oid,
      DEMO.userIdentity.objectId,
    )
    const missing = await get(url)
    assertEquals(missing.status, 400)
    assertEquals((missing.body.error as Record<string, string>).code, 'SecretHeaderNotFound')
    const wrong = await get(url, { secret: 'x' })
    assertEquals(wrong.status, 401)
    const unknown = await get(`${url}&client_id=nobody`, { secret: env.IDENTITY_HEADER! })
    assertEquals((unknown.body.error as Record<string, string>).code, 'ManagedIdentityNotFound')
  })

  await t.step('secret headers are redacted in the log, presence still visible', () => {
    const entries = emu.requests()
    assert(entries.some((e) => e.headers['x-identity-header'] === '[redacted]'))
    assert(entries.some((e) => e.headers.secret === '[redacted]'))
    assert(!JSON.stringify(entries).includes(DEMO.msiSecret))
  })
  await t.step('per-identity and global lifetimes', async () => {
    emu.register({
      identities: [{
        clientId: 'short-lived',
        objectId: 'o-short',
        resourceId: '/short',
        tokenLifetimeSeconds: 300,
      }],
    })
    const base = emu.url(`/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${ARM}`)
    assertEquals((await get(`${base}&client_id=short-lived`, md)).body.expires_in, '300')
    emu.updateSettings({ managedIdentity: { tokenLifetimeSeconds: 600 } })
    assertEquals((await get(base, md)).body.expires_in, '600')
    emu.reset()
  })
})
