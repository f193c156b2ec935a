import {
  assert,
  assertEquals,
  assertExists,
  assertMatch,
  assertNotEquals,
  assertStringIncludes,
} from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import {
  ARM_SCOPE,
  assertEntraError,
  claimsOf,
  get,
  pkce,
  postForm,
  verifyToken,
} from './_helpers.ts'

const REDIRECT = 'http://localhost:53123/callback'
const SCOPE = `${ARM_SCOPE} openid profile offline_access`

Deno.test('Entra authorization code + PKCE, refresh tokens', async (t) => {
  await using emu = await startEmulator()
  const authorize = (params: Record<string, string>) =>
    fetch(emu.url(`/organizations/oauth2/v2.0/authorize?${new URLSearchParams(params)}`), {
      redirect: 'manual',
    })
  const tokenUrl = emu.url('/organizations/oauth2/v2.0/token')
  const codeFor = async (extra: Record<string, string> = {}) => {
    const { verifier, challenge } = await pkce()
    const res = await authorize({
      client_id: DEMO.publicClientId,
      response_type: 'code',
      redirect_uri: REDIRECT,
      scope: SCOPE,
      state: 'st-1',
      nonce: 'n-1',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...extra,
    })
    await res.body?.cancel()
    assertEquals(res.status, 302)
    const loc = new URL(res.headers.get('location')!)
    return { loc, code: loc.searchParams.get('code')!, verifier }
  }
  const redeem = (code: string, verifier: string, extra: Record<string, string> = {}) =>
    postForm(tokenUrl, {
      grant_type: 'authorization_code',
      client_id: DEMO.publicClientId,
      code,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
      scope: SCOPE,
      client_info: '1',
      ...extra,
    })

  let refreshToken = ''

  await t.step('authorize auto-approves and redirects with code and state', async () => {
    const { loc, code } = await codeFor()
    assertEquals(loc.origin + loc.pathname, REDIRECT)
    assertEquals(loc.searchParams.get('state'), 'st-1')
    assert(code.length > 40)
  })

  await t.step('the code + verifier buy access, refresh and ID tokens', async () => {
    const { code, verifier } = await codeFor()
    const res = await redeem(code, verifier)
    assertEquals(res.status, 200, JSON.stringify(res.body))
    assertEquals(res.body.token_type, 'Bearer')
    assertStringIncludes(
      String(res.body.scope),
      'https://management.core.windows.net//user_impersonation',
    )
    const at = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId, {
      audience: 'https://management.core.windows.net/',
    })
    assertEquals(at.oid, DEMO.user.objectId)
    assertEquals(at.scp, 'user_impersonation')
    assertEquals(at.upn, DEMO.user.username)
    assertEquals(at.idtyp, 'user')
    assertEquals(at.appid, DEMO.publicClientId)
    assertEquals(at.appidacr, '0')
    const id = await verifyToken(emu, String(res.body.id_token), DEMO.tenantId, {
      audience: DEMO.publicClientId,
      issuer: `${emu.origin}/${DEMO.tenantId}/v2.0`,
    })
    assertEquals(id.nonce, 'n-1')
    assertEquals(id.preferred_username, DEMO.user.username)
    assertEquals(id.name, DEMO.user.name)
    assertEquals(typeof res.body.refresh_token, 'string')
    assertMatch(String(res.body.refresh_token), /^[A-Za-z0-9_-]{100,}$/)
    const info = JSON.parse(
      atob(String(res.body.client_info).replace(/-/g, '+').replace(/_/g, '/')),
    )
    assertEquals(info, { uid: DEMO.user.objectId, utid: DEMO.tenantId })
    refreshToken = String(res.body.refresh_token)
  })

  await t.step('fragment and form_post response modes', async () => {
    const frag = await codeFor({ response_mode: 'fragment' })
    assertStringIncludes(frag.loc.hash, 'code=')
    const res = await authorize({
      client_id: DEMO.publicClientId,
      response_type: 'code',
      redirect_uri: REDIRECT,
      scope: SCOPE,
      response_mode: 'form_post',
    })
    const html = await res.text()
    assertEquals(res.status, 200)
    assertStringIncludes(html, 'name="code"')
  })

  await t.step('a wrong verifier: AADSTS501481; a missing one too', async () => {
    const { code } = await codeFor()
    assertEntraError(await redeem(code, 'x'.repeat(43)), 400, 'invalid_grant', 501481)
    const second = await codeFor()
    const { code_verifier: _, ...noVerifier } = {
      grant_type: 'authorization_code',
      client_id: DEMO.publicClientId,
      code: second.code,
      redirect_uri: REDIRECT,
      code_verifier: '',
    }
    assertEntraError(await postForm(tokenUrl, noVerifier), 400, 'invalid_grant', 501481)
  })

  await t.step('a reused code: AADSTS54005; an unknown code: AADSTS70008', async () => {
    const { code, verifier } = await codeFor()
    assertEquals((await redeem(code, verifier)).status, 200)
    assertEntraError(await redeem(code, verifier), 400, 'invalid_grant', 54005)
    assertEntraError(await redeem('bogus', verifier), 400, 'invalid_grant', 70008)
  })

  await t.step('an expired code: AADSTS70008', async () => {
    const { code, verifier } = await codeFor()
    emu.advanceClock(601)
    try {
      assertEntraError(await redeem(code, verifier), 400, 'invalid_grant', 70008)
    } finally {
      emu.advanceClock(-601)
    }
  })

  await t.step('a different redirect_uri at redemption: AADSTS50011', async () => {
    const { code, verifier } = await codeFor()
    assertEntraError(
      await redeem(code, verifier, { redirect_uri: 'http://localhost:1/other' }),
      400,
      'invalid_grant',
      50011,
    )
  })

  await t.step(
    'authorize with an unregistered redirect: an HTML AADSTS50011 page, no redirect',
    async () => {
      const res = await authorize({
        client_id: DEMO.publicClientId,
        response_type: 'code',
        redirect_uri: 'https://evil.example/cb',
        scope: SCOPE,
      })
      const html = await res.text()
      assertEquals(res.status, 400)
      assertStringIncludes(html, 'AADSTS50011')
    },
  )

  await t.step('authorize errors after the redirect is known are sent to it', async () => {
    const res = await authorize({
      client_id: DEMO.publicClientId,
      response_type: 'token',
      redirect_uri: REDIRECT,
      scope: SCOPE,
      state: 's',
    })
    await res.body?.cancel()
    const loc = new URL(res.headers.get('location')!)
    assertEquals(loc.searchParams.get('error'), 'unsupported_response_type')
    assertEquals(loc.searchParams.get('state'), 's')
    const unknownResource = await authorize({
      client_id: DEMO.publicClientId,
      response_type: 'code',
      redirect_uri: REDIRECT,
      scope: 'https://nope.example/.default',
    })
    await unknownResource.body?.cancel()
    assertEquals(
      new URL(unknownResource.headers.get('location')!).searchParams.get('error'),
      'invalid_resource',
    )
  })

  await t.step('a refresh token buys tokens for another resource and is rotated', async () => {
    const res = await postForm(tokenUrl, {
      grant_type: 'refresh_token',
      client_id: DEMO.publicClientId,
      refresh_token: refreshToken,
      scope: 'https://ml.azure.com/.default openid offline_access',
    })
    assertEquals(res.status, 200, JSON.stringify(res.body))
    assertEquals(claimsOf(String(res.body.access_token)).aud, 'https://ml.azure.com')
    assertNotEquals(res.body.refresh_token, refreshToken)
    assertExists(res.body.id_token)
    const again = await postForm(tokenUrl, {
      grant_type: 'refresh_token',
      client_id: DEMO.publicClientId,
      refresh_token: refreshToken,
      scope: ARM_SCOPE,
    })
    assertEquals(again.status, 200, 'old refresh tokens stay valid, as in Entra')
    assertEquals(again.body.refresh_token, undefined, 'no offline_access, no refresh token')
  })

  await t.step("a bad refresh token: AADSTS70000; another client's: too", async () => {
    assertEntraError(
      await postForm(tokenUrl, {
        grant_type: 'refresh_token',
        client_id: DEMO.publicClientId,
        refresh_token: 'x',
        scope: ARM_SCOPE,
      }),
      400,
      'invalid_grant',
      70000,
    )
    assertEntraError(
      await postForm(emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`), {
        grant_type: 'refresh_token',
        client_id: DEMO.clientId,
        client_secret: DEMO.clientSecret,
        refresh_token: refreshToken,
        scope: ARM_SCOPE,
      }),
      400,
      'invalid_grant',
      70000,
    )
  })

  await t.step('an expired refresh token: AADSTS700082', async () => {
    assert(emu.expireRefreshTokens() > 0)
    const res = await postForm(tokenUrl, {
      grant_type: 'refresh_token',
      client_id: DEMO.publicClientId,
      refresh_token: refreshToken,
      scope: ARM_SCOPE,
    })
    assertEntraError(res, 400, 'invalid_grant', 700082)
  })

  await t.step('v1 refresh_token grant', async () => {
    const { code, verifier } = await codeFor()
    const rt = String((await redeem(code, verifier)).body.refresh_token)
    const res = await postForm(emu.url('/common/oauth2/token'), {
      grant_type: 'refresh_token',
      client_id: DEMO.publicClientId,
      refresh_token: rt,
      resource: 'https://management.core.windows.net/',
    })
    assertEquals(res.status, 200, JSON.stringify(res.body))
    assertEquals(typeof res.body.expires_on, 'string')
    assertEquals(typeof res.body.refresh_token, 'string')
  })

  await t.step('the log redacts codes, verifiers and refresh tokens', () => {
    const text = JSON.stringify(emu.requests())
    assert(!text.includes(refreshToken))
    const entry = emu.requests({ route: 'entra.token' }).find((e) => e.form?.code)!
    assertEquals(entry.form?.code, '[redacted]')
    assertEquals(entry.form?.code_verifier, '[redacted]')
  })
})

Deno.test('Entra device code flow', async (t) => {
  await using emu = await startEmulator({
    config: { deviceCode: { intervalSeconds: 0, autoApproveAfterPolls: 1 } },
  })
  const tenant = DEMO.tenantId
  const start = async () => {
    const res = await postForm(emu.url(`/${tenant}/oauth2/v2.0/devicecode`), {
      client_id: DEMO.publicClientId,
      scope: SCOPE,
    })
    assertEquals(res.status, 200, JSON.stringify(res.body))
    return res.body
  }
  const poll = (deviceCode: string, grantType = 'urn:ietf:params:oauth:grant-type:device_code') =>
    postForm(emu.url(`/${tenant}/oauth2/v2.0/token`), {
      grant_type: grantType,
      client_id: DEMO.publicClientId,
      device_code: deviceCode,
    })

  await t.step('devicecode answers user_code, device_code, verification_uri, message', async () => {
    const body = await start()
    assertMatch(String(body.user_code), /^[A-Z0-9]{9}$/)
    assertEquals(body.verification_uri, emu.url('/devicelogin'))
    assertEquals(body.expires_in, 900)
    assertEquals(body.interval, 0)
    assertStringIncludes(String(body.message), String(body.user_code))
  })

  await t.step('authorization_pending (AADSTS70016), then tokens after N polls', async () => {
    const body = await start()
    assertEntraError(await poll(String(body.device_code)), 400, 'authorization_pending', 70016)
    const ok = await poll(String(body.device_code))
    assertEquals(ok.status, 200, JSON.stringify(ok.body))
    const at = await verifyToken(emu, String(ok.body.access_token), tenant)
    assertEquals(at.oid, DEMO.user.objectId)
    assertExists(ok.body.refresh_token)
    assertExists(ok.body.id_token)
    assertEntraError(await poll(String(body.device_code)), 400, 'bad_verification_code', 70000)
  })

  await t.step("explicit approval, and MSAL's short grant type alias", async () => {
    emu.updateSettings({ deviceCode: { autoApproveAfterPolls: null } })
    const body = await start()
    assertEntraError(await poll(String(body.device_code)), 400, 'authorization_pending', 70016)
    assertEntraError(await poll(String(body.device_code)), 400, 'authorization_pending', 70016)
    assert(emu.approveDeviceCode(String(body.user_code), { user: DEMO.user.username }))
    assertEquals((await poll(String(body.device_code), 'device_code')).status, 200)
  })

  await t.step('approval through the /devicelogin page', async () => {
    const body = await start()
    const page = await get(emu.url('/devicelogin'))
    assertStringIncludes(page.text, 'user_code')
    const res = await fetch(emu.url('/devicelogin'), {
      method: 'POST',
      body: new URLSearchParams({ user_code: String(body.user_code).toLowerCase() }),
    })
    assertStringIncludes(await res.text(), 'You have signed in')
    assertEquals((await poll(String(body.device_code))).status, 200)
  })

  await t.step('declined: authorization_declined', async () => {
    const body = await start()
    assert(emu.denyDeviceCode(String(body.user_code)))
    const res = await poll(String(body.device_code))
    assertEquals(res.body.error, 'authorization_declined')
    assertEquals(res.status, 400)
  })

  await t.step('expired: expired_token (AADSTS70020)', async () => {
    const body = await start()
    emu.advanceClock(901)
    try {
      assertEntraError(await poll(String(body.device_code)), 400, 'expired_token', 70020)
    } finally {
      emu.advanceClock(-901)
    }
  })

  await t.step('polling faster than interval with enforceInterval: slow_down', async () => {
    emu.updateSettings({ deviceCode: { intervalSeconds: 5, enforceInterval: true } })
    try {
      const body = await start()
      assertEquals(body.interval, 5)
      assertEntraError(await poll(String(body.device_code)), 400, 'authorization_pending', 70016)
      const fast = await poll(String(body.device_code))
      assertEquals(fast.body.error, 'slow_down')
      assertEquals(fast.status, 400)
    } finally {
      emu.updateSettings({ deviceCode: { intervalSeconds: 0, enforceInterval: false } })
    }
  })

  await t.step('unknown device code: bad_verification_code', async () => {
    const res = await poll('nope')
    assertEquals(res.body.error, 'bad_verification_code')
  })

  await t.step('devicecode errors: unknown client, missing scope', async () => {
    assertEntraError(
      await postForm(emu.url(`/${tenant}/oauth2/v2.0/devicecode`), {
        client_id: 'f0000000-0000-4000-8000-000000000000',
        scope: SCOPE,
      }),
      400,
      'unauthorized_client',
      700016,
    )
    assertEntraError(
      await postForm(emu.url(`/${tenant}/oauth2/v2.0/devicecode`), {
        client_id: DEMO.publicClientId,
      }),
      400,
      'invalid_request',
      900144,
    )
  })

  await t.step('the log redacts device codes', () => {
    const entries = emu.requests({ route: 'entra.token' })
    assert(entries.length > 0)
    for (const e of entries) if (e.form?.device_code) assertEquals(e.form.device_code, '[redacted]')
  })
})
