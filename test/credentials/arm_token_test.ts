import { assert, assertEquals, assertRejects, assertThrows } from '@std/assert'
import { AmlAuthError, ArmTokenAuthentication, Audience, createTokenCache } from '@aml-edge/auth'
import { fakeClock, fakeJwt } from '../_fixtures/loopback.ts'

const cache = () => createTokenCache()

Deno.test('ArmTokenAuthentication reads the expiry from the JWT exp claim', async () => {
  const jwt = fakeJwt({ exp: 4102444800, tid: 't' })
  const auth = new ArmTokenAuthentication(jwt, { cache: cache() })
  const t = await auth.getToken()
  assertEquals(t.token, jwt)
  assertEquals(t.expiresOn, 4102444800)
  assertEquals(t.expiresOnTimestamp, 4102444800_000)
  assertEquals(t.tokenType, 'Bearer')
})

Deno.test('ArmTokenAuthentication refuses a non-JWT without expiresOn at construction', () => {
  const e = assertThrows(() => new ArmTokenAuthentication('not-a-jwt-secretish'), TypeError)
  assert(e.message.includes('expiresOn'))
  assert(!e.message.includes('not-a-jwt-secretish'))
  assertThrows(() => new ArmTokenAuthentication(''), TypeError, 'armToken')
})

Deno.test('ArmTokenAuthentication.updateArmAccessToken() replaces the token', async () => {
  const auth = new ArmTokenAuthentication('x', { expiresOn: 4102444800, cache: cache() })
  assertEquals((await auth.getAuthenticationHeader()).Authorization, 'Bearer x')
  auth.updateArmAccessToken('y', 4102444800)
  assertEquals((await auth.getAuthenticationHeader()).Authorization, 'Bearer y')
})

Deno.test('ArmTokenAuthentication throws ERR_UNSUPPORTED_AUDIENCE for Azure ML', async () => {
  const auth = new ArmTokenAuthentication('x', { expiresOn: 4102444800, cache: cache() })
  const e = await assertRejects(() => auth.getTokenForAudience(Audience.AZUREML), AmlAuthError)
  assertEquals(e.code, 'ERR_UNSUPPORTED_AUDIENCE')
  await assertRejects(() => auth.getAzureMLAuthenticationHeader(), AmlAuthError)
  await assertRejects(() => auth.getToken('https://storage.azure.com/.default'), AmlAuthError)
  // Both spellings of the ARM scope are served.
  assertEquals((await auth.getToken('https://management.azure.com/.default')).token, 'x')
  assertEquals((await auth.getToken('https://management.core.windows.net//.default')).token, 'x')
})

Deno.test('ArmTokenAuthentication throws ERR_TOKEN_EXPIRED for an expired token', async () => {
  const clock = fakeClock(5_000_000_000_000)
  const auth = new ArmTokenAuthentication('x', {
    expiresOn: 4102444800,
    now: clock.now,
    cache: cache(),
  })
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_EXPIRED')
  assert(e.message.includes('updateArmAccessToken'))
  assert(!e.message.includes('x '))
})

Deno.test('ArmTokenAuthentication never shows the token in toString, JSON or inspect', () => {
  const secret = fakeJwt({ exp: 4102444800, marker: 'SECRET-MARKER' })
  const auth = new ArmTokenAuthentication(secret)
  for (const s of [String(auth), JSON.stringify(auth), Deno.inspect(auth)]) {
    assert(!s.includes(secret) && !s.includes('SECRET'), s)
  }
  assertEquals(JSON.parse(JSON.stringify(auth)).type, 'ArmTokenAuthentication')
})

Deno.test('ArmTokenAuthentication.updateArmAccessToken() does not grow the cache', async () => {
  const c = createTokenCache()
  const auth = new ArmTokenAuthentication('x', { expiresOn: 4102444800, cache: c })
  for (let i = 0; i < 5; i++) {
    auth.updateArmAccessToken(`t${i}`, 4102444800)
    await auth.getToken()
  }
  assertEquals(c.size, 1)
})
