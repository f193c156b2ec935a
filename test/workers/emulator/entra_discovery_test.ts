import { assert, assertEquals } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { assertEntraError, get } from './_helpers.ts'

Deno.test('Entra discovery: OpenID configuration, instance discovery, JWKS', async (t) => {
  await using emu = await startEmulator()

  await t.step('v2 OpenID configuration of a tenant', async () => {
    const res = await get(emu.url(`/${DEMO.tenantDomain}/v2.0/.well-known/openid-configuration`))
    assertEquals(res.status, 200)
    const o = emu.origin
    assertEquals(res.body.issuer, `${o}/${DEMO.tenantId}/v2.0`)
    assertEquals(res.body.token_endpoint, `${o}/${DEMO.tenantId}/oauth2/v2.0/token`)
    assertEquals(res.body.authorization_endpoint, `${o}/${DEMO.tenantId}/oauth2/v2.0/authorize`)
    assertEquals(
      res.body.device_authorization_endpoint,
      `${o}/${DEMO.tenantId}/oauth2/v2.0/devicecode`,
    )
    assertEquals(res.body.jwks_uri, `${o}/${DEMO.tenantId}/discovery/v2.0/keys`)
    assertEquals(res.body.id_token_signing_alg_values_supported, ['RS256'])
  })

  await t.step("common keeps Entra's {tenantid} issuer template", async () => {
    const res = await get(emu.url('/common/v2.0/.well-known/openid-configuration'))
    assertEquals(res.body.issuer, `${emu.origin}/{tenantid}/v2.0`)
    assertEquals(res.body.token_endpoint, `${emu.origin}/common/oauth2/v2.0/token`)
  })

  await t.step('v1 OpenID configuration', async () => {
    const res = await get(emu.url(`/${DEMO.tenantId}/.well-known/openid-configuration`))
    assertEquals(res.body.issuer, `${emu.origin}/${DEMO.tenantId}/`)
    assertEquals(res.body.token_endpoint, `${emu.origin}/${DEMO.tenantId}/oauth2/token`)
  })

  await t.step('unknown tenant: 400 invalid_tenant AADSTS90002', async () => {
    const res = await get(emu.url('/nobody.onmicrosoft.com/v2.0/.well-known/openid-configuration'))
    assertEntraError(res, 400, 'invalid_tenant', 90002)
  })

  await t.step('instance discovery names this host and the tenant asked for', async () => {
    const auth = encodeURIComponent(`${emu.origin}/${DEMO.tenantId}/oauth2/v2.0/authorize`)
    const res = await get(
      emu.url(`/common/discovery/instance?api-version=1.1&authorization_endpoint=${auth}`),
    )
    assertEquals(res.status, 200)
    assertEquals(
      res.body.tenant_discovery_endpoint,
      `${emu.origin}/${DEMO.tenantId}/v2.0/.well-known/openid-configuration`,
    )
    const host = new URL(emu.origin).host
    assertEquals(res.body.metadata, [{
      preferred_network: host,
      preferred_cache: host,
      aliases: [host],
    }])
  })

  await t.step('JWKS: one RS256 key whose kid signs the tokens', async () => {
    const res = await get(emu.url('/common/discovery/v2.0/keys'))
    const keys = res.body.keys as Record<string, string>[]
    assertEquals(keys.length, 1)
    assertEquals(keys[0]!.kty, 'RSA')
    assertEquals(keys[0]!.use, 'sig')
    assertEquals(keys[0]!.alg, 'RS256')
    assert(keys[0]!.n!.length > 300)
    const v1 = await get(emu.url(`/${DEMO.tenantId}/discovery/keys`))
    assertEquals(v1.body, res.body)
    assertEquals(await emu.jwks(), res.body)
  })

  await t.step('an unknown path is a JSON 404 and is logged with route null', async () => {
    const res = await get(emu.url('/no/such/thing'))
    assertEquals(res.status, 404)
    assertEquals(res.body.error, 'not_found')
    assertEquals(emu.requests({ route: null }).at(-1)?.path, '/no/such/thing')
  })
})
