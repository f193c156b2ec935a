import {
  assert,
  assertEquals,
  assertExists,
  assertInstanceOf,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import {
  AmlAuthError,
  Audience,
  AuthenticationError,
  createTokenCache,
  CredentialUnavailableError,
  type FetchLike,
  memoryTokenStore,
  type TokenStore,
} from '@aml-edge/auth'
import {
  AZURE_CLI_CLIENT_ID,
  type DeviceCodeInfo,
  InteractiveLoginAuthentication,
  type InteractiveLoginAuthenticationOptions,
} from '../../src/credentials/interactive.ts'
import { DEMO, type EmulatorConfig, startEmulator } from '../../workers/emulator/serve.ts'
import { fakeClock, fakeJwt, serveLoopback } from '../_fixtures/loopback.ts'

const ARM = 'https://management.core.windows.net//.default'
const AML = 'https://ml.azure.com/.default'
const GRAPH = 'https://graph.microsoft.com/.default'
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

/** One request the credential sent, with the answer (read from a clone). */
interface Seen {
  url: URL
  form: URLSearchParams
  status: number
  body: Record<string, unknown> | undefined
}

/** A fetch that forwards to the real one and records every exchange, secrets included. */
function recorder() {
  const seen: Seen[] = []
  const fetch: FetchLike = async (input, init) => {
    const req = new Request(input, init)
    const form = new URLSearchParams(await req.clone().text())
    const res = await globalThis.fetch(req)
    let body: Record<string, unknown> | undefined
    try {
      body = await res.clone().json()
    } catch {
      body = undefined
    }
    seen.push({ url: new URL(req.url), form, status: res.status, body })
    return res
  }
  const grants = (type: string) => seen.filter((s) => s.form.get('grant_type') === type)
  const endpoint = (name: string) => seen.filter((s) => s.url.pathname.endsWith('/' + name))
  return { seen, fetch, grants, endpoint }
}

async function emulator(config: EmulatorConfig = {}) {
  return await startEmulator({ config })
}

type Emu = Awaited<ReturnType<typeof emulator>>

function setup(emu: Emu, extra: InteractiveLoginAuthenticationOptions = {}) {
  const clock = fakeClock(Date.now())
  const rec = recorder()
  const prompts: DeviceCodeInfo[] = []
  const auth = new InteractiveLoginAuthentication({
    env: {},
    authorityHost: emu.origin,
    cache: createTokenCache(),
    now: clock.now,
    sleep: clock.sleep,
    fetch: rec.fetch,
    onDeviceCode: (info) => {
      prompts.push(info)
    },
    ...extra,
  })
  return { auth, clock, rec, prompts }
}

/** Every secret the exchanges carried: refresh tokens, device codes, codes, verifiers, tokens. */
function secretsOf(seen: Seen[]): string[] {
  const out: string[] = []
  for (const s of seen) {
    for (const k of ['refresh_token', 'device_code', 'code', 'code_verifier']) {
      const v = s.form.get(k)
      if (v) out.push(v)
    }
    for (const k of ['refresh_token', 'device_code', 'access_token', 'id_token']) {
      const v = s.body?.[k]
      if (typeof v === 'string') out.push(v)
    }
  }
  return out
}

function assertNoSecret(value: unknown, secrets: string[]) {
  const e = value as Error
  const texts = [String(e), JSON.stringify(e), Deno.inspect(e)]
  if (e instanceof Error) texts.push(e.message, String(e.cause ?? ''))
  for (const t of texts) {
    for (const s of secrets) assert(!t.includes(s), `secret leaked into: ${t}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Device code

Deno.test('InteractiveLoginAuthentication signs in with the device code flow (emulator auto-approve)', async () => {
  await using emu = await emulator()
  const { auth, clock, rec, prompts } = setup(emu)
  const t = await auth.getToken()
  assertEquals(prompts.length, 1)
  const p = prompts[0]!
  assertEquals(p.verificationUri, `${emu.origin}/devicelogin`)
  assertStringIncludes(p.message, p.userCode)
  assertInstanceOf(p.expiresOn, Date)
  const started = clock.now() - clock.slept.reduce((a, b) => a + b, 0)
  assertEquals(p.expiresOn.getTime(), started + 900_000)
  const dc = rec.endpoint('devicecode')
  assertEquals(dc.length, 1)
  assertEquals(dc[0]!.url.pathname, '/organizations/oauth2/v2.0/devicecode')
  assertEquals(dc[0]!.form.get('client_id'), AZURE_CLI_CLIENT_ID)
  assertEquals(dc[0]!.form.get('scope'), `${ARM} offline_access openid profile`)
  const polls = rec.grants(DEVICE_GRANT)
  assertEquals(polls.length, 2) // pending once, then approved
  assertEquals(polls[0]!.body?.error, 'authorization_pending')
  assertEquals(polls[1]!.form.get('device_code'), dc[0]!.body?.device_code)
  assertEquals(polls[1]!.form.get('client_id'), AZURE_CLI_CLIENT_ID)
  assertEquals(clock.slept, [5000, 5000])
  assertEquals(t.token, polls[1]!.body?.access_token)
  const account = await auth.getAccount()
  assertEquals(account, {
    homeAccountId: `${DEMO.user.objectId}.${DEMO.tenantId}`,
    objectId: DEMO.user.objectId,
    tenantId: DEMO.tenantId,
    username: DEMO.user.username,
  })
  // Cached: no new request.
  await auth.getAuthenticationHeader()
  assertEquals(rec.seen.length, 3)
})

Deno.test('InteractiveLoginAuthentication keeps polling through authorization_pending', async () => {
  await using emu = await emulator({ deviceCode: { autoApproveAfterPolls: null } })
  const clock = fakeClock(Date.now())
  let code = ''
  const sleep = (ms: number, signal?: AbortSignal) => {
    if (clock.slept.length === 3) assert(emu.approveDeviceCode(code))
    return clock.sleep(ms, signal)
  }
  const { auth, rec } = setup(emu, {
    now: clock.now,
    sleep,
    onDeviceCode: (i) => {
      code = i.userCode
    },
  })
  const t = await auth.getTokenForAudience(Audience.AZUREML)
  const polls = rec.grants(DEVICE_GRANT)
  assertEquals(polls.map((p) => p.body?.error), [
    'authorization_pending',
    'authorization_pending',
    'authorization_pending',
    undefined,
  ])
  assertEquals(t.token, polls[3]!.body?.access_token)
  assertEquals(
    rec.endpoint('devicecode')[0]!.form.get('scope'),
    `${AML} offline_access openid profile`,
  )
})

Deno.test('InteractiveLoginAuthentication adds 5 s to the interval on slow_down and goes on', async () => {
  await using emu = await emulator()
  emu.failNext({
    route: 'entra.token',
    status: 400,
    body: { error: 'slow_down', error_description: 'AADSTS70000: slow down' },
  })
  const { auth, clock, rec } = setup(emu)
  await auth.getToken()
  assertEquals(rec.grants(DEVICE_GRANT).map((p) => p.body?.error), [
    'slow_down',
    'authorization_pending',
    undefined,
  ])
  assertEquals(clock.slept, [5000, 10000, 10000])
})

Deno.test('InteractiveLoginAuthentication ends with an AuthenticationError on expired_token', async () => {
  await using emu = await emulator({ deviceCode: { autoApproveAfterPolls: null } })
  const { auth, rec } = setup(emu, { onDeviceCode: () => emu.advanceClock(1000) })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.code, 'ERR_AUTHENTICATION')
  assertEquals(e.error, 'expired_token')
  assertEquals(e.status, 400)
  assertStringIncludes(e.message, 'start the sign-in again')
  assertEquals(rec.grants(DEVICE_GRANT).length, 1)
  assertNoSecret(e, secretsOf(rec.seen))
  assertEquals(await auth.getAccount(), undefined)
})

Deno.test('InteractiveLoginAuthentication ends with an AuthenticationError when the user declines', async () => {
  await using emu = await emulator({ deviceCode: { autoApproveAfterPolls: null } })
  const { auth, rec } = setup(emu, { onDeviceCode: (i) => void emu.denyDeviceCode(i.userCode) })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.error, 'authorization_declined')
  assertStringIncludes(e.message, 'declined')
  assertNoSecret(e, secretsOf(rec.seen))
})

Deno.test('InteractiveLoginAuthentication stops polling at expires_in with ERR_TIMEOUT', async () => {
  await using emu = await emulator({
    deviceCode: { autoApproveAfterPolls: null, expiresInSeconds: 12 },
  })
  const { auth, clock, rec } = setup(emu)
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TIMEOUT')
  assertEquals(clock.slept, [5000, 5000])
  assertEquals(rec.grants(DEVICE_GRANT).length, 2)
  assertNoSecret(e, secretsOf(rec.seen))
})

Deno.test('InteractiveLoginAuthentication: abortSignal ends the sign-in nobody else waits for', async () => {
  await using emu = await emulator({ deviceCode: { autoApproveAfterPolls: null } })
  const clock = fakeClock(Date.now())
  const controller = new AbortController()
  const sleep = (ms: number, signal?: AbortSignal) => {
    if (clock.slept.length === 2) controller.abort()
    return clock.sleep(ms, signal)
  }
  const { auth, rec } = setup(emu, { now: clock.now, sleep })
  const e = await assertRejects(
    () => auth.getToken(undefined, { abortSignal: controller.signal }),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_ABORTED')
  await new Promise((r) => setTimeout(r, 20))
  assertEquals(rec.grants(DEVICE_GRANT).length, 2)
  assertNoSecret(e, secretsOf(rec.seen))
})

Deno.test('InteractiveLoginAuthentication: one caller aborting does not end a sign-in others share', async () => {
  await using emu = await emulator({ deviceCode: { autoApproveAfterPolls: 3 } })
  const { auth, prompts, rec } = setup(emu)
  const controller = new AbortController()
  const aborted = auth.getToken(undefined, { abortSignal: controller.signal })
  const kept = auth.getTokenForAudience(Audience.AZUREML)
  controller.abort()
  const e = await assertRejects(() => aborted, AmlAuthError)
  assertEquals(e.code, 'ERR_ABORTED')
  const t = await kept
  assertExists(t.token)
  assertEquals(prompts.length, 1)
  assertEquals(rec.endpoint('devicecode').length, 1)
})

Deno.test('InteractiveLoginAuthentication: concurrent callers share one sign-in', async () => {
  await using emu = await emulator()
  const { auth, prompts, rec } = setup(emu)
  const [a, b, c] = await Promise.all([
    auth.getToken(),
    auth.getTokenForAudience(Audience.AZUREML),
    auth.getAuthenticationHeader(),
  ])
  assertEquals(prompts.length, 1)
  assertEquals(rec.endpoint('devicecode').length, 1)
  assertEquals(c.Authorization, 'Bearer ' + a.token)
  assertNotEquals(a.token, b.token)
  // ARM came with the sign-in; Azure ML from one refresh grant.
  assertEquals(rec.grants('refresh_token').length, 1)
  assertEquals(
    rec.grants('refresh_token')[0]!.form.get('scope'),
    `${AML} offline_access openid profile`,
  )
})

Deno.test('InteractiveLoginAuthentication reports a refused device code request with advice', async () => {
  await using emu = await emulator()
  const { auth, prompts } = setup(emu, { tenantId: 'nosuch.example' })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.status, 400)
  assertExists(e.errorCodes?.[0])
  assertStringIncludes(e.message, 'tenantId')
  assertEquals(prompts.length, 0)
})

Deno.test('InteractiveLoginAuthentication retries a 503 from the device code endpoint', async () => {
  await using emu = await emulator()
  emu.failNext({ route: 'entra.devicecode', status: 503 })
  const { auth, rec } = setup(emu)
  await auth.getToken()
  assertEquals(rec.endpoint('devicecode').map((r) => r.status), [503, 200])
})

Deno.test('InteractiveLoginAuthentication refuses a device code answer without device_code', async () => {
  await using emu = await emulator()
  emu.failNext({ route: 'entra.devicecode', status: 200, body: { user_code: 'X' } })
  const { auth, prompts } = setup(emu)
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertStringIncludes(e.message, 'device_code')
  assertEquals(prompts.length, 0)
})

// ---------------------------------------------------------------------------------------------
// Refresh tokens

Deno.test('InteractiveLoginAuthentication serves every audience from the refresh token, using each rotated one', async () => {
  await using emu = await emulator()
  const { auth, rec, prompts } = setup(emu)
  const arm = await auth.getToken()
  const aml = await auth.getTokenForAudience(Audience.AZUREML)
  const graph = await auth.getToken(GRAPH)
  assertEquals(prompts.length, 1)
  const signIn = rec.grants(DEVICE_GRANT).at(-1)!
  const refreshes = rec.grants('refresh_token')
  assertEquals(refreshes.length, 2)
  // The first refresh uses the sign-in's refresh token, the second the one the first returned.
  assertEquals(refreshes[0]!.form.get('refresh_token'), signIn.body?.refresh_token)
  assertEquals(refreshes[1]!.form.get('refresh_token'), refreshes[0]!.body?.refresh_token)
  assertNotEquals(refreshes[0]!.body?.refresh_token, signIn.body?.refresh_token)
  assertEquals(refreshes[0]!.form.get('client_id'), AZURE_CLI_CLIENT_ID)
  assertEquals(refreshes[0]!.url.pathname, '/organizations/oauth2/v2.0/token')
  assertEquals(aml.token, refreshes[0]!.body?.access_token)
  assertEquals(graph.token, refreshes[1]!.body?.access_token)
  assertNotEquals(arm.token, aml.token)
  // The credential never shows the refresh token.
  assertNoSecret(auth, secretsOf(rec.seen))
})

Deno.test('InteractiveLoginAuthentication signs in again when the refresh token has expired', async () => {
  await using emu = await emulator()
  const { auth, rec, prompts } = setup(emu)
  await auth.getToken()
  emu.expireRefreshTokens()
  const aml = await auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(prompts.length, 2)
  const refreshes = rec.grants('refresh_token')
  assertEquals(refreshes.length, 1)
  assertEquals(refreshes[0]!.body?.error, 'invalid_grant')
  assertEquals(aml.token, rec.grants(DEVICE_GRANT).at(-1)!.body?.access_token)
})

Deno.test('InteractiveLoginAuthentication signs in again, past the store, when a resource needs MFA', async () => {
  await using emu = await emulator()
  const { auth, rec, prompts } = setup(emu, {
    tokenStore: memoryTokenStore(),
    tokenStoreKey: crypto.getRandomValues(new Uint8Array(32)),
  })
  await auth.getToken()
  emu.failNext({
    route: 'entra.token',
    status: 400,
    body: {
      error: 'interaction_required',
      error_description: 'AADSTS50076: you must use multi-factor authentication',
      error_codes: [50076],
    },
  })
  const aml = await auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(prompts.length, 2)
  assertEquals(
    rec.endpoint('devicecode').at(-1)!.form.get('scope'),
    `${AML} offline_access openid profile`,
  )
  assertEquals(aml.token, rec.grants(DEVICE_GRANT).at(-1)!.body?.access_token)
})

Deno.test('InteractiveLoginAuthentication without automatic sign-in reports an expired refresh token', async () => {
  await using emu = await emulator()
  const { auth, rec } = setup(emu, { disableAutomaticAuthentication: true })
  await auth.authenticate()
  emu.expireRefreshTokens()
  const e = await assertRejects(
    () => auth.getTokenForAudience(Audience.AZUREML),
    AuthenticationError,
  )
  assertEquals(e.error, 'invalid_grant')
  assertEquals(e.errorCodes, [700082])
  assertStringIncludes(e.message, 'Sign in again')
  assertNoSecret(e, secretsOf(rec.seen))
  const again = await assertRejects(() => auth.getTokenForAudience(Audience.AZUREML), AmlAuthError)
  assertEquals(again.code, 'ERR_CREDENTIAL_UNAVAILABLE')
})

Deno.test('InteractiveLoginAuthentication with disableAutomaticAuthentication never prompts from getToken', async () => {
  await using emu = await emulator()
  const { auth, rec, prompts } = setup(emu, { disableAutomaticAuthentication: true })
  const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
  assertStringIncludes(e.message, 'authenticate()')
  assertEquals(rec.seen.length, 0)
  const account = await auth.authenticate({ scopes: AML })
  assertEquals(account.username, DEMO.user.username)
  assertEquals(prompts.length, 1)
  await auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(rec.grants('refresh_token').length, 0) // the sign-in's own token
  // Already signed in: authenticate() does not prompt again.
  await auth.authenticate()
  assertEquals(prompts.length, 1)
})

Deno.test('InteractiveLoginAuthentication.signOut() forgets the user and the cached tokens', async () => {
  await using emu = await emulator()
  const store = memoryTokenStore()
  const { auth } = setup(emu, {
    disableAutomaticAuthentication: true,
    tokenStore: store,
    tokenStoreKey: crypto.getRandomValues(new Uint8Array(32)),
  })
  await auth.authenticate()
  await auth.getToken()
  assertEquals(store.size, 1)
  await auth.signOut()
  assertEquals(store.size, 0)
  assertEquals(await auth.getAccount(), undefined)
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_CREDENTIAL_UNAVAILABLE')
})

// ---------------------------------------------------------------------------------------------
// Token store

function recordingStore(): TokenStore & { values: Map<string, string> } {
  const inner = memoryTokenStore()
  const values = new Map<string, string>()
  return {
    values,
    get: (k) => inner.get(k),
    set: (k, v, o) => {
      values.set(k, v)
      return inner.set(k, v, o)
    },
    delete: (k) => {
      values.delete(k)
      return inner.delete(k)
    },
  }
}

Deno.test('InteractiveLoginAuthentication: a second instance with the same store and key signs in silently', async () => {
  await using emu = await emulator()
  const store = recordingStore()
  const key = crypto.getRandomValues(new Uint8Array(32))
  const a = setup(emu, { tokenStore: store, tokenStoreKey: key })
  await a.auth.getToken()
  assertEquals(a.prompts.length, 1)
  const rt = a.rec.grants(DEVICE_GRANT).at(-1)!.body?.refresh_token as string
  // The store holds ciphertext only, under a hashed name.
  assertEquals(store.values.size, 1)
  const [name, value] = [...store.values][0]!
  assertMatch(name, /^[0-9a-f]{64}$/)
  assertMatch(value, /^v1\./)
  for (const s of [rt, btoa(rt), DEMO.user.username, AZURE_CLI_CLIENT_ID]) {
    assert(!value.includes(s) && !name.includes(s), 'store holds a value in clear')
  }

  const b = setup(emu, { tokenStore: store, tokenStoreKey: key })
  const aml = await b.auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(b.prompts.length, 0)
  assertEquals(b.rec.endpoint('devicecode').length, 0)
  assertEquals(b.rec.grants('refresh_token')[0]!.form.get('refresh_token'), rt)
  assertEquals(aml.token, b.rec.grants('refresh_token')[0]!.body?.access_token)
  assertEquals((await b.auth.getAccount())?.username, DEMO.user.username)

  // b's rotated refresh token is what a third instance uses.
  const c = setup(emu, { tokenStore: store, tokenStoreKey: key })
  await c.auth.getToken(GRAPH)
  assertEquals(
    c.rec.grants('refresh_token')[0]!.form.get('refresh_token'),
    b.rec.grants('refresh_token')[0]!.body?.refresh_token,
  )
})

Deno.test('InteractiveLoginAuthentication: another key or store name does not see the sign-in', async () => {
  await using emu = await emulator()
  const store = memoryTokenStore()
  const key = crypto.getRandomValues(new Uint8Array(32))
  const a = setup(emu, {
    tokenStore: store,
    tokenStoreKey: key,
    disableAutomaticAuthentication: true,
  })
  await a.auth.authenticate()
  const otherKey = setup(emu, {
    tokenStore: store,
    tokenStoreKey: crypto.getRandomValues(new Uint8Array(32)),
    disableAutomaticAuthentication: true,
  })
  assertEquals(await otherKey.auth.getAccount(), undefined)
  await assertRejects(() => otherKey.auth.getToken(), CredentialUnavailableError)
  const otherName = setup(emu, {
    tokenStore: store,
    tokenStoreKey: key,
    tokenStoreName: 'someone-else',
    disableAutomaticAuthentication: true,
  })
  assertEquals(await otherName.auth.getAccount(), undefined)
})

Deno.test('InteractiveLoginAuthentication: a failing store is ERR_STORE, and the sign-in still works here', async () => {
  await using emu = await emulator()
  let failing = false
  const inner = memoryTokenStore()
  const broken: TokenStore = {
    get: (k) => failing ? Promise.reject(new Error('kv down')) : inner.get(k),
    set: () => Promise.reject(new Error('kv down')),
    delete: (k) => inner.delete(k),
  }
  const { auth, rec } = setup(emu, {
    tokenStore: broken,
    tokenStoreKey: crypto.getRandomValues(new Uint8Array(16)),
  })
  const e = await assertRejects(() => auth.authenticate(), AmlAuthError)
  assertEquals(e.code, 'ERR_STORE')
  assertNoSecret(e, secretsOf(rec.seen))
  failing = true
  const e2 = await assertRejects(() => auth.getTokenForAudience(Audience.AZUREML), AmlAuthError)
  assertEquals(e2.code, 'ERR_STORE')
  failing = false
  const t = await auth.getTokenForAudience(Audience.AZUREML)
  assertExists(t.token)
})

// ---------------------------------------------------------------------------------------------
// Authorization code + PKCE

async function authorize(url: URL): Promise<string> {
  const res = await fetch(url, { redirect: 'manual' })
  await res.body?.cancel()
  assertEquals(res.status, 302)
  return res.headers.get('location')!
}

Deno.test('InteractiveLoginAuthentication completes the authorization code flow with PKCE', async () => {
  await using emu = await emulator()
  const { auth, rec, prompts } = setup(emu, { tenantId: DEMO.tenantId })
  const redirectUri = 'http://localhost:8400/callback'
  const { url, state } = await auth.beginAuthorization({
    redirectUri,
    loginHint: DEMO.user.username,
    prompt: 'select_account',
  })
  assertEquals(url.origin + url.pathname, `${emu.origin}/${DEMO.tenantId}/oauth2/v2.0/authorize`)
  const q = url.searchParams
  assertEquals(q.get('client_id'), AZURE_CLI_CLIENT_ID)
  assertEquals(q.get('response_type'), 'code')
  assertEquals(q.get('redirect_uri'), redirectUri)
  assertEquals(q.get('scope'), `${ARM} offline_access openid profile`)
  assertEquals(q.get('code_challenge_method'), 'S256')
  assertMatch(q.get('code_challenge')!, /^[A-Za-z0-9_-]{43}$/)
  assertEquals(q.get('login_hint'), DEMO.user.username)
  assertEquals(q.get('prompt'), 'select_account')
  assertExists(q.get('state'))
  assert(!state.includes(q.get('code_challenge')!))

  const location = await authorize(url)
  assert(location.startsWith(redirectUri + '?'))
  const account = await auth.completeAuthorization(location, state)
  assertEquals(account.username, DEMO.user.username)
  assertEquals(account.tenantId, DEMO.tenantId)

  const exchange = rec.grants('authorization_code')
  assertEquals(exchange.length, 1)
  const f = exchange[0]!.form
  assertEquals(f.get('code'), new URL(location).searchParams.get('code'))
  assertEquals(f.get('redirect_uri'), redirectUri)
  assertEquals(f.get('client_id'), AZURE_CLI_CLIENT_ID)
  assertEquals(f.get('scope'), `${ARM} offline_access openid profile`)
  // The emulator checked S256(code_verifier) against the challenge.
  const challenge = btoa(
    String.fromCharCode(
      ...new Uint8Array(
        await crypto.subtle.digest('SHA-256', new TextEncoder().encode(f.get('code_verifier')!)),
      ),
    ),
  ).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  assertEquals(challenge, q.get('code_challenge'))

  // ARM comes with the sign-in, Azure ML silently from the refresh token; no device code.
  const arm = await auth.getToken()
  assertEquals(arm.token, exchange[0]!.body?.access_token)
  await auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(rec.grants('refresh_token').length, 1)
  assertEquals(
    rec.grants('refresh_token')[0]!.form.get('refresh_token'),
    exchange[0]!.body?.refresh_token,
  )
  assertEquals(rec.grants('refresh_token')[0]!.url.pathname, `/${DEMO.tenantId}/oauth2/v2.0/token`)
  assertEquals(prompts.length, 0)
})

Deno.test('InteractiveLoginAuthentication completes an authorization it began from the callback URL alone', async () => {
  await using emu = await emulator()
  const { auth } = setup(emu)
  const first = await auth.beginAuthorization({ redirectUri: 'http://localhost:8400/cb' })
  await auth.beginAuthorization({ redirectUri: 'http://localhost:8400/cb' })
  const location = await authorize(first.url)
  const account = await auth.completeAuthorization(location)
  assertEquals(account.username, DEMO.user.username)
  // Used once: the same callback again matches nothing.
  const e = await assertRejects(() => auth.completeAuthorization(location), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  const other = setup(emu).auth
  const e2 = await assertRejects(() => other.completeAuthorization(location), AmlAuthError)
  assertEquals(e2.code, 'ERR_RESPONSE_INVALID')
})

Deno.test('InteractiveLoginAuthentication refuses a callback whose state does not match', async () => {
  await using emu = await emulator()
  const { auth, rec } = setup(emu)
  const first = await auth.beginAuthorization({ redirectUri: 'http://localhost:8400/cb' })
  const second = await auth.beginAuthorization({ redirectUri: 'http://localhost:8400/cb' })
  const location = await authorize(first.url)
  const e = await assertRejects(
    () => auth.completeAuthorization(location, second.state),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertStringIncludes(e.message, 'state')
  const noState = new URL(location)
  noState.searchParams.delete('state')
  const e2 = await assertRejects(
    () => auth.completeAuthorization(noState, first.state),
    AmlAuthError,
  )
  assertEquals(e2.code, 'ERR_RESPONSE_INVALID')
  assertEquals(rec.seen.length, 0)
  const code = new URL(location).searchParams.get('code')!
  assertNoSecret(e, [code])
  await assertRejects(() => auth.completeAuthorization(location, 'not-a-state'), TypeError)
})

Deno.test('InteractiveLoginAuthentication turns an error on the callback URL into an AuthenticationError', async () => {
  await using emu = await emulator()
  const { auth, rec } = setup(emu)
  const { url, state } = await auth.beginAuthorization({
    redirectUri: 'http://localhost:8400/cb',
    scopes: ['https://unknown.example/.default'],
  })
  const location = await authorize(url)
  assertExists(new URL(location).searchParams.get('error'))
  const e = await assertRejects(
    () => auth.completeAuthorization(location, state),
    AuthenticationError,
  )
  assertEquals(e.code, 'ERR_AUTHENTICATION')
  assertEquals(e.error, new URL(location).searchParams.get('error'))
  assertExists(e.errorDescription)
  assertEquals(e.errorCodes?.length, 1)
  assertEquals(rec.seen.length, 0)
  // No HTTP status carried it, so none is invented; the message says what to do.
  assertStringIncludes(e.message, `Entra ID refused the authorization (${e.error})`)
  assert(!e.message.includes('status 0'), e.message)
  assertStringIncludes(e.message, 'check the scope')
})

Deno.test('InteractiveLoginAuthentication: a code redeemed twice is refused without leaking it', async () => {
  await using emu = await emulator()
  const { auth, rec } = setup(emu)
  const { url, state } = await auth.beginAuthorization({ redirectUri: 'http://127.0.0.1:9/cb' })
  const location = await authorize(url)
  await auth.completeAuthorization(location, state)
  const e = await assertRejects(
    () => auth.completeAuthorization(location, state),
    AuthenticationError,
  )
  assertEquals(e.error, 'invalid_grant')
  assertNoSecret(e, secretsOf(rec.seen))
})

Deno.test('InteractiveLoginAuthentication.beginAuthorization() validates its options', async () => {
  const auth = new InteractiveLoginAuthentication({ env: {}, force: true })
  await assertRejects(
    () => auth.beginAuthorization({ redirectUri: 'http://example.com/cb' }),
    TypeError,
  )
  await assertRejects(() => auth.beginAuthorization({ redirectUri: 'not a url' }), TypeError)
  await assertRejects(
    () =>
      auth.beginAuthorization({ redirectUri: 'https://app.example/cb', prompt: 'x' as 'login' }),
    TypeError,
  )
  const { url } = await auth.beginAuthorization({ redirectUri: 'https://app.example/cb' })
  assertEquals(url.origin, 'https://login.microsoftonline.com')
})

// ---------------------------------------------------------------------------------------------
// Tenants

Deno.test('InteractiveLoginAuthentication refuses a sign-in whose tid differs from tenantId', async () => {
  const tenant = '11111111-2222-4333-8444-555555555555'
  const other = '99999999-8888-4777-8666-555555555555'
  const claims = { tid: other, oid: 'o', exp: Math.floor(Date.now() / 1000) + 3600 }
  await using srv = serveLoopback((req) => {
    if (req.url.pathname.endsWith('/devicecode')) {
      return Response.json({
        device_code: 'DEVICE-CODE-SECRET-123',
        user_code: 'ABC',
        verification_uri: 'https://example/devicelogin',
        expires_in: 900,
        interval: 5,
      })
    }
    return Response.json({
      access_token: fakeJwt(claims),
      refresh_token: 'REFRESH-TOKEN-SECRET-456',
      id_token: fakeJwt(claims),
      expires_in: 3600,
    })
  })
  const clock = fakeClock(Date.now())
  const auth = new InteractiveLoginAuthentication({
    env: {},
    tenantId: tenant,
    authorityHost: srv.origin,
    cache: createTokenCache(),
    now: clock.now,
    sleep: clock.sleep,
    onDeviceCode: () => {},
  })
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TENANT_NOT_ALLOWED')
  assertStringIncludes(e.message, 'tenantId')
  assertNoSecret(e, ['DEVICE-CODE-SECRET-123', 'REFRESH-TOKEN-SECRET-456', fakeJwt(claims)])
  assertEquals(await auth.getAccount(), undefined)
  assertEquals(srv.requests[0]!.url.pathname, `/${tenant}/oauth2/v2.0/devicecode`)
})

Deno.test('InteractiveLoginAuthentication refuses an ambient managed identity of another tenant', async () => {
  await using emu = await emulator()
  const auth = new InteractiveLoginAuthentication({
    env: emu.env('app-service'),
    tenantId: DEMO.secondTenantId,
    cache: createTokenCache(),
  })
  assertEquals(auth.ambient, 'msi')
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TENANT_NOT_ALLOWED')
  const same = new InteractiveLoginAuthentication({
    env: emu.env('app-service'),
    tenantId: DEMO.tenantId,
    cache: createTokenCache(),
  })
  assertExists((await same.getToken()).token)
})

Deno.test('InteractiveLoginAuthentication answers a cached ambient token without new promises', async () => {
  // The tenant check on ambient managed-identity tokens must not cost a closure and a promise on
  // every cache hit: a hit hands back the very same promise.
  await using emu = await emulator()
  const auth = new InteractiveLoginAuthentication({
    env: emu.env('app-service'),
    tenantId: DEMO.tenantId,
    cache: createTokenCache(),
  })
  const first = await auth.getToken()
  const a = auth.getToken()
  assertStrictEquals(auth.getToken(), a)
  assertStrictEquals((await a).token, first.token)
  await auth.getTokenForAudience(Audience.AZUREML)
  const aml = auth.getTokenForAudience(Audience.AZUREML)
  assertStrictEquals(auth.getTokenForAudience(Audience.AZUREML), aml)
  assertStrictEquals(auth.getToken(), a)
  assertEquals(emu.requests({ route: 'mi.app-service' }).length, 2)
})

Deno.test('InteractiveLoginAuthentication checks a per-call tenant against tenantId', async () => {
  await using emu = await emulator()
  const { auth, rec } = setup(emu, {
    tenantId: DEMO.tenantId,
    additionallyAllowedTenants: [DEMO.secondTenantId],
  })
  const e = await assertRejects(
    () => auth.getToken(undefined, { tenantId: 'fabrikam.example' }),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_TENANT_NOT_ALLOWED')
  assertEquals(rec.seen.length, 0)
  await auth.getToken()
  const t = await auth.getToken(AML, { tenantId: DEMO.secondTenantId })
  assertExists(t.token)
  const refresh = rec.grants('refresh_token')
  assertEquals(refresh.at(-1)!.url.pathname, `/${DEMO.secondTenantId}/oauth2/v2.0/token`)
})

// ---------------------------------------------------------------------------------------------
// Ambient detection

const NO_NETWORK: FetchLike = () => {
  throw new Error('no network expected')
}

const MSI_ENV = { MSI_ENDPOINT: 'http://127.0.0.1:1/msi/token', MSI_SECRET: 's' }
const IDENTITY_ENV = { IDENTITY_ENDPOINT: 'http://127.0.0.1:1/token', IDENTITY_HEADER: 'h' }
const SP_ENV = {
  AZUREML_SERVICE_PRINCIPAL_ID: '0d5e6f7a-8b9c-4d0e-a1f2-b3c4d5e6f7a8',
  AZUREML_SERVICE_PRINCIPAL_PASSWORD: 'SP-PASSWORD-SECRET-789',
  AZUREML_SERVICE_PRINCIPAL_TENANT_ID: '8d3e0f4a-7c1b-4e2d-9a6f-0e5b1c2d3a4f',
}
const RUN_ENV = {
  AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH: 'True',
  AZUREML_RUN_TOKEN: 'RUN-TOKEN-SECRET-000',
  AZUREML_RUN_TOKEN_EXPIRY: '4102444800',
  AZUREML_ARM_SUBSCRIPTION: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
  AZUREML_ARM_RESOURCEGROUP: 'rg',
  AZUREML_ARM_WORKSPACE_NAME: 'ws',
  AZUREML_ARM_PROJECT_NAME: 'exp',
  AZUREML_RUN_ID: 'interactive-ambient-run',
  AZUREML_SERVICE_ENDPOINT: 'https://westus2.api.azureml.ms',
}

function ambientOf(env: Record<string, string>, extra: InteractiveLoginAuthenticationOptions = {}) {
  return new InteractiveLoginAuthentication({
    env,
    fetch: NO_NETWORK,
    cache: createTokenCache(),
    ...extra,
  }).ambient
}

Deno.test('InteractiveLoginAuthentication detects ambient identities in SPEC 4 order, without I/O', () => {
  assertEquals(ambientOf({ ...MSI_ENV, ...SP_ENV, ...RUN_ENV }), 'msi')
  assertEquals(ambientOf({ ...IDENTITY_ENV, ...SP_ENV }), 'msi')
  assertEquals(ambientOf({ ...SP_ENV, ...RUN_ENV }), 'service-principal')
  assertEquals(ambientOf(RUN_ENV), 'azureml-run')
  assertEquals(ambientOf({ ...RUN_ENV, AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH: 'TRUE' }), 'azureml-run')
  assertEquals(ambientOf({ ...RUN_ENV, AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH: 'false' }), undefined)
  assertEquals(ambientOf({ ...RUN_ENV, AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH: '' }), undefined)
  // A service principal needs a tenant: the variable or the tenantId option.
  const { AZUREML_SERVICE_PRINCIPAL_TENANT_ID: _, ...noTenant } = SP_ENV
  assertEquals(ambientOf(noTenant), undefined)
  assertEquals(ambientOf(noTenant, { tenantId: 'contoso.onmicrosoft.com' }), 'service-principal')
  const { AZUREML_SERVICE_PRINCIPAL_PASSWORD: __, ...noSecret } = SP_ENV
  assertEquals(ambientOf({ ...noSecret, ...RUN_ENV }), 'azureml-run')
  // An incomplete run environment is skipped, as the Python SDK does.
  const { AZUREML_RUN_ID: ___, ...noRun } = RUN_ENV
  assertEquals(ambientOf(noRun), undefined)
  assertEquals(ambientOf({}), undefined)
  // force skips ambient detection.
  assertEquals(ambientOf({ ...MSI_ENV, ...SP_ENV, ...RUN_ENV }, { force: true }), undefined)
})

Deno.test('InteractiveLoginAuthentication shows the ambient source but no secret', async () => {
  const auth = new InteractiveLoginAuthentication({
    env: { ...SP_ENV, ...RUN_ENV },
    fetch: NO_NETWORK,
    cache: createTokenCache(),
  })
  assertEquals(JSON.parse(JSON.stringify(auth)).ambient, 'service-principal')
  assertStringIncludes(String(auth), 'ambient=service-principal')
  assertNoSecret(auth, [SP_ENV.AZUREML_SERVICE_PRINCIPAL_PASSWORD, RUN_ENV.AZUREML_RUN_TOKEN])
  const e = await assertRejects(
    () => auth.beginAuthorization({ redirectUri: 'http://localhost/cb' }),
    CredentialUnavailableError,
  )
  assertStringIncludes(e.message, 'force: true')
  await assertRejects(() => auth.authenticate(), CredentialUnavailableError)
  assertEquals(await auth.getAccount(), undefined)
})

Deno.test('InteractiveLoginAuthentication delegates to an ambient service principal', async () => {
  await using emu = await emulator()
  const rec = recorder()
  const auth = new InteractiveLoginAuthentication({
    env: {
      AZUREML_SERVICE_PRINCIPAL_ID: DEMO.clientId,
      AZUREML_SERVICE_PRINCIPAL_PASSWORD: DEMO.clientSecret,
      AZUREML_SERVICE_PRINCIPAL_TENANT_ID: DEMO.tenantId,
    },
    authorityHost: emu.origin,
    fetch: rec.fetch,
    cache: createTokenCache(),
  })
  assertEquals(auth.ambient, 'service-principal')
  const t = await auth.getTokenForAudience(Audience.AZUREML)
  const grants = rec.grants('client_credentials')
  assertEquals(grants.length, 1)
  assertEquals(grants[0]!.form.get('scope'), AML)
  assertEquals(t.token, grants[0]!.body?.access_token)
})

Deno.test('InteractiveLoginAuthentication delegates to an ambient managed identity', async () => {
  await using emu = await emulator()
  const auth = new InteractiveLoginAuthentication({
    env: emu.env('app-service'),
    cache: createTokenCache(),
  })
  assertEquals(auth.ambient, 'msi')
  const header = await auth.getAuthenticationHeader()
  assertMatch(header.Authorization, /^Bearer ey/)
  assertEquals(emu.requests({ route: 'mi.app-service' }).length, 1)
  assertEquals(emu.requests({ route: 'entra.devicecode' }).length, 0)
})

Deno.test('InteractiveLoginAuthentication delegates to an ambient Azure ML run token', async () => {
  await using emu = await emulator()
  const env = await emu.runEnv({ ...DEMO.workspace, runId: 'interactive-delegation-run' })
  const auth = new InteractiveLoginAuthentication({
    env: { ...env, AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH: 'true' },
    cache: createTokenCache(),
  })
  assertEquals(auth.ambient, 'azureml-run')
  const header = await auth.getAuthenticationHeader()
  assertEquals(header.Authorization, 'Bearer ' + env.AZUREML_RUN_TOKEN)
  const e = await assertRejects(() => auth.getTokenForAudience(Audience.ARM), AmlAuthError)
  assertNoSecret(e, [env.AZUREML_RUN_TOKEN!])
})

// ---------------------------------------------------------------------------------------------
// Options and defaults

Deno.test('InteractiveLoginAuthentication validates its options', () => {
  assertThrows(() => new InteractiveLoginAuthentication({ tenantId: 'bad tenant!' }), TypeError)
  assertThrows(() => new InteractiveLoginAuthentication({ clientId: '' }), TypeError)
  assertThrows(() => new InteractiveLoginAuthentication({ clientId: 'a b' }), TypeError)
  assertThrows(
    () => new InteractiveLoginAuthentication({ authorityHost: 'http://login.example' }),
    TypeError,
  )
  assertThrows(
    () => new InteractiveLoginAuthentication({ tokenStore: memoryTokenStore() }),
    TypeError,
    'tokenStoreKey',
  )
  assertThrows(
    () => new InteractiveLoginAuthentication({ tokenStoreKey: new Uint8Array(32) }),
    TypeError,
  )
  assertThrows(
    () =>
      new InteractiveLoginAuthentication({
        tokenStore: memoryTokenStore(),
        tokenStoreKey: new Uint8Array(10),
      }),
    RangeError,
  )
  assertThrows(
    () =>
      new InteractiveLoginAuthentication({
        tokenStore: {} as TokenStore,
        tokenStoreKey: new Uint8Array(16),
      }),
    TypeError,
  )
  assertThrows(
    () => new InteractiveLoginAuthentication({ onDeviceCode: 'x' as unknown as () => void }),
    TypeError,
  )
  assertThrows(
    () => new InteractiveLoginAuthentication({ additionallyAllowedTenants: ['no way'] }),
    TypeError,
  )
  const auth = new InteractiveLoginAuthentication({ env: {} })
  assertEquals(auth.clientId, AZURE_CLI_CLIENT_ID)
  assertEquals(auth.tenantId, undefined)
  assertEquals(auth.ambient, undefined)
})

Deno.test('InteractiveLoginAuthentication prints the device-code message to stderr by default', async () => {
  await using emu = await emulator()
  const printed: unknown[] = []
  // deno-lint-ignore no-console -- the test replaces the default prompt printer's sink
  const original = console.error
  // deno-lint-ignore no-console -- as above
  console.error = (...args: unknown[]) => void printed.push(...args)
  try {
    const clock = fakeClock(Date.now())
    const auth = new InteractiveLoginAuthentication({
      env: {},
      authorityHost: emu.origin,
      cache: createTokenCache(),
      now: clock.now,
      sleep: clock.sleep,
    })
    await auth.getToken()
  } finally {
    // deno-lint-ignore no-console -- restores the sink
    console.error = original
  }
  assertEquals(printed.length, 1)
  assertMatch(String(printed[0]), /devicelogin and enter the code [A-Z0-9]+ to authenticate/)
})
