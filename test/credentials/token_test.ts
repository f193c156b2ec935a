import { assert, assertEquals, assertRejects, assertThrows } from '@std/assert'
import {
  AccessToken,
  AmlAuthError,
  Audience,
  AzureChinaCloud,
  createTokenCache,
  TokenAuthentication,
} from '@aml-edge/auth'
import { fakeJwt } from '../_fixtures/loopback.ts'

Deno.test('TokenAuthentication calls back with the ARM resource id by default', async () => {
  const seen: string[] = []
  const auth = new TokenAuthentication((r) => {
    seen.push(r)
    return { token: 'arm', expiresOn: 4102444800 }
  }, { cache: createTokenCache() })
  assertEquals((await auth.getToken()).token, 'arm')
  assertEquals(seen, ['https://management.core.windows.net/'])
})

Deno.test('TokenAuthentication calls back with the Azure ML resource id for AZUREML', async () => {
  const seen: string[] = []
  const auth = new TokenAuthentication((r) => {
    seen.push(r)
    return new AccessToken('aml', 4102444800)
  }, { cache: createTokenCache() })
  assertEquals((await auth.getTokenForAudience(Audience.AZUREML)).token, 'aml')
  assertEquals((await auth.getAzureMLAuthenticationHeader()).Authorization, 'Bearer aml')
  assertEquals((await auth.getToken('AZUREML')).token, 'aml')
  assertEquals(seen, ['https://ml.azure.com'])
})

Deno.test('TokenAuthentication uses the sovereign cloud resource ids', async () => {
  const seen: string[] = []
  const auth = new TokenAuthentication((r) => {
    seen.push(r)
    return { token: 't', expiresOnTimestamp: 4102444800_000 }
  }, { cloud: AzureChinaCloud, cache: createTokenCache() })
  await auth.getToken()
  await auth.getTokenForAudience(Audience.AZUREML)
  assertEquals(seen, ['https://management.core.chinacloudapi.cn/', 'https://ml.azure.cn'])
  assertEquals(auth.getAmlResourceId(), 'https://ml.azure.cn')
})

Deno.test('TokenAuthentication caches the callback result until its refresh point', async () => {
  let calls = 0
  const auth = new TokenAuthentication(() => {
    calls++
    return fakeJwt({ exp: Math.floor(Date.now() / 1000) + 3600 })
  }, { cache: createTokenCache() })
  await auth.getAuthenticationHeader()
  await auth.getAuthenticationHeader()
  assertEquals(calls, 1)
})

Deno.test('TokenAuthentication refuses a callback result without expiry with ERR_TOKEN_INVALID', async () => {
  const auth = new TokenAuthentication(() => 'opaque-secret-token', { cache: createTokenCache() })
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_INVALID')
  assert(!e.message.includes('opaque-secret-token'))
  const bad = new TokenAuthentication(() => ({ nope: 1 }) as never, { cache: createTokenCache() })
  assertEquals((await assertRejects(() => bad.getToken(), AmlAuthError)).code, 'ERR_TOKEN_INVALID')
})

Deno.test('TokenAuthentication refuses other scopes with ERR_UNSUPPORTED_AUDIENCE', async () => {
  const auth = new TokenAuthentication(() => ({ token: 't', expiresOn: 4102444800 }), {
    cache: createTokenCache(),
  })
  const e = await assertRejects(
    () => auth.getToken('https://vault.azure.net/.default'),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_UNSUPPORTED_AUDIENCE')
  const multi = await assertRejects(
    () => auth.getToken(['https://ml.azure.com/.default', 'https://management.azure.com/.default']),
    AmlAuthError,
  )
  assertEquals(multi.code, 'ERR_UNSUPPORTED_AUDIENCE')
})

Deno.test('TokenAuthentication requires a callback', () => {
  assertThrows(
    () => new TokenAuthentication(null as never),
    TypeError,
    'getTokenForAudience cannot be null',
  )
})
