import {
  assert,
  assertEquals,
  assertExists,
  assertNotStrictEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import {
  type AbstractAuthentication,
  AmlAuthError,
  AuthenticationError,
  AzureMLTokenAuthentication,
  AzureUSGovernment,
  createTokenCache,
  InteractiveLoginAuthentication,
  MsiAuthentication,
  servicePrincipalFromEnvironment,
  TokenAuthentication,
} from '@aml-edge/auth'
import { DEMO, startEmulator } from '../../workers/emulator/serve.ts'
import { serveLoopback } from '../_fixtures/loopback.ts'

function credential(origin: string, token = 'arm-token') {
  return new TokenAuthentication(() => ({ token, expiresOn: 4102444800 }), {
    cache: createTokenCache(),
    cloud: {
      name: 'Loopback',
      activeDirectory: origin,
      resourceManager: origin + '/',
      activeDirectoryResourceId: 'https://management.core.windows.net/',
      amlResourceId: 'https://ml.azure.com',
    },
  })
}

Deno.test('getToken() returns a @azure/core-auth AccessToken', async () => {
  const auth = credential('http://127.0.0.1:9')
  const t = await auth.getToken(['https://management.core.windows.net//.default'])
  assertEquals(typeof t.token, 'string')
  assertEquals(typeof t.expiresOnTimestamp, 'number')
  assertEquals(t.expiresOnTimestamp, t.expiresOn * 1000)
  assertEquals(t.tokenType, 'Bearer')
})

Deno.test('getAuthenticationHeader() returns a new object on every call', async () => {
  const auth = credential('http://127.0.0.1:9')
  const a = await auth.getAuthenticationHeader()
  const b = await auth.getAuthenticationHeader()
  assertEquals(a, { Authorization: 'Bearer arm-token' })
  assertNotStrictEquals(a, b)
  a.Authorization = 'mutated'
  assertEquals((await auth.getAuthenticationHeader()).Authorization, 'Bearer arm-token')
})

Deno.test('listSubscriptions() follows nextLink and sends the ARM token', async () => {
  await using srv = serveLoopback((req) => {
    const page = req.url.searchParams.get('page')
    if (!page) {
      return Response.json({
        value: [{ subscriptionId: 's1', displayName: 'One', tenantId: 't1' }],
        nextLink: `${srv.origin}/subscriptions?api-version=2022-12-01&page=2`,
      })
    }
    return Response.json({ value: [{ subscriptionId: 's2', displayName: 'Two', tenantId: 't1' }] })
  })
  const subs = await credential(srv.origin).listSubscriptions()
  assertEquals(subs, [
    { subscriptionId: 's1', displayName: 'One', tenantId: 't1' },
    { subscriptionId: 's2', displayName: 'Two', tenantId: 't1' },
  ])
  assertEquals(srv.requests.length, 2)
  assertEquals(srv.requests[0]!.url.pathname, '/subscriptions')
  assertEquals(srv.requests[0]!.url.searchParams.get('api-version'), '2022-12-01')
  assertEquals(srv.requests[0]!.headers.get('authorization'), 'Bearer arm-token')
  assertEquals(srv.requests[0]!.method, 'GET')
})

Deno.test('listSubscriptions() refuses a nextLink to another origin', async () => {
  await using srv = serveLoopback(() =>
    Response.json({ value: [], nextLink: 'https://evil.example/subscriptions?page=2' })
  )
  const e = await assertRejects(() => credential(srv.origin).listSubscriptions(), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertStringIncludes(e.message, 'a nextLink to another origin')
  assertEquals(srv.requests.length, 1)
})

Deno.test('listSubscriptions() stops after 1000 pages that keep linking on', async () => {
  await using srv = serveLoopback((req) =>
    Response.json({ value: [], nextLink: `${new URL(req.url).origin}/subscriptions?page=n` })
  )
  const e = await assertRejects(() => credential(srv.origin).listSubscriptions(), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertStringIncludes(e.message, 'over 1000 pages')
  assertEquals(srv.requests.length, 1000)
})

Deno.test('listSubscriptions() turns an ARM refusal into AuthenticationError without the token', async () => {
  await using srv = serveLoopback(() =>
    Response.json({
      error: { code: 'InvalidAuthenticationToken', message: 'The access token is invalid.' },
    }, {
      status: 401,
    })
  )
  const e = await assertRejects(
    () => credential(srv.origin, 'SECRET-ARM').listSubscriptions(),
    AuthenticationError,
  )
  assertEquals(e.status, 401)
  assertEquals(e.error, 'InvalidAuthenticationToken')
  assert(!JSON.stringify(e).includes('SECRET-ARM') && !e.message.includes('SECRET-ARM'))
})

Deno.test('fetch() adds the bearer token for the chosen audience', async () => {
  await using srv = serveLoopback((req) => new Response(req.headers.get('authorization')))
  const auth = new TokenAuthentication(
    (r) => ({ token: r.includes('ml.azure') ? 'aml' : 'arm', expiresOn: 4102444800 }),
    { cache: createTokenCache() },
  )
  assertEquals(await (await auth.fetch(srv.origin + '/x')).text(), 'Bearer arm')
  const res = await auth.fetch(new URL(srv.origin + '/y'), {
    method: 'POST',
    body: 'b',
    audience: 'AZUREML',
  })
  assertEquals(await res.text(), 'Bearer aml')
  assertEquals(srv.requests[1]!.method, 'POST')
  assertEquals(srv.requests[1]!.body, 'b')
})

Deno.test('constructor validates common options', () => {
  const cb = () => 'x'
  assertThrows(
    () => new TokenAuthentication(cb, { cloud: 'Mars' as never }),
    TypeError,
    'AzureCloud',
  )
  assertThrows(() => new TokenAuthentication(cb, { timeoutMs: -1 }), RangeError, 'timeoutMs')
  assertThrows(
    () => new TokenAuthentication(cb, { retry: { maxRetries: 1.5 } }),
    RangeError,
    'retry.maxRetries',
  )
  assertThrows(
    () => new TokenAuthentication(cb, { cache: {} as never }),
    TypeError,
    'createTokenCache',
  )
  assertThrows(
    () => new TokenAuthentication(cb, { retry: { baseDelayMs: -1 } }),
    RangeError,
    'retry.baseDelayMs',
  )
  assertThrows(
    () => new TokenAuthentication(cb, { retry: { maxDelayMs: Number.NaN } }),
    RangeError,
    'retry.maxDelayMs',
  )
  assertThrows(
    () => new TokenAuthentication(cb, { retry: { totalTimeoutMs: 0 } }),
    RangeError,
    'retry.totalTimeoutMs',
  )
  assertThrows(() => new TokenAuthentication(cb, { retry: 3 as never }), TypeError, 'retry')
  assertThrows(() => new TokenAuthentication(cb, { env: 'x' as never }), TypeError, 'env')
  assertThrows(() => new TokenAuthentication(cb, { now: 5 as never }), TypeError, 'now')
  assertThrows(() => new TokenAuthentication(cb, { sleep: {} as never }), TypeError, 'sleep')
  // A zero back-off is a valid choice (tests, tight loops).
  new TokenAuthentication(cb, { retry: { baseDelayMs: 0, maxDelayMs: 0 } })
  assertThrows(
    () =>
      new TokenAuthentication(cb, {
        cloud: { ...AzureUSGovernment, activeDirectory: 'http://login.example' },
      }),
    TypeError,
    'https',
  )
})

Deno.test('AZUREML_CURRENT_CLOUD picks the cloud when none is given', () => {
  const auth = new TokenAuthentication(() => 'x', {
    env: { AZUREML_CURRENT_CLOUD: 'AzureUSGovernment' },
  })
  assertEquals(auth.cloud.name, 'AzureUSGovernment')
  assertEquals(auth.getAmlResourceId(), 'https://ml.azure.us')
  assertEquals(new TokenAuthentication(() => 'x', { env: {} }).cloud.name, 'AzureCloud')
})

/** Every view a logger or a debugger might take of an object, without its custom views. */
function rawViews(o: object): string[] {
  return [
    Object.keys(o).join(','),
    JSON.stringify({ ...o }),
    JSON.stringify(Object.values(o)),
    Deno.inspect(o, { customInspect: false, showHidden: true, depth: 10 } as Deno.InspectOptions),
  ]
}

Deno.test('credentials keep the environment, and so its secrets, off their own properties', async () => {
  await using emu = await startEmulator()
  const RUN_PASS = 'RUN-TOKEN-PASS-SECRET-42'
  const cases: [AbstractAuthentication, string][] = [
    [
      new MsiAuthentication({ env: emu.env('app-service'), cache: createTokenCache() }),
      DEMO.msiSecret,
    ],
    [
      servicePrincipalFromEnvironment({
        AZURE_TENANT_ID: DEMO.tenantId,
        AZURE_CLIENT_ID: DEMO.clientId,
        AZURE_CLIENT_SECRET: DEMO.clientSecret,
        AZURE_AUTHORITY_HOST: emu.origin,
      }, { cache: createTokenCache() }),
      DEMO.clientSecret,
    ],
    [
      new InteractiveLoginAuthentication({
        env: {
          AZUREML_SERVICE_PRINCIPAL_ID: DEMO.clientId,
          AZUREML_SERVICE_PRINCIPAL_PASSWORD: DEMO.clientSecret,
          AZUREML_SERVICE_PRINCIPAL_TENANT_ID: DEMO.tenantId,
        },
        authorityHost: emu.origin,
        cache: createTokenCache(),
      }),
      DEMO.clientSecret,
    ],
    [
      new AzureMLTokenAuthentication({
        azuremlAccessToken: 'opaque-run-token',
        expiryTime: 4102444800,
        env: { AZUREML_RUN_TOKEN_PASS: RUN_PASS, AZUREML_RUN_TOKEN_RAND: RUN_PASS },
        tokenFiles: false,
        cache: createTokenCache(),
      }),
      RUN_PASS,
    ],
  ]
  for (const [auth, secret] of cases) {
    assert(!Object.keys(auth).includes('_env'), `${auth}: _env is an own property`)
    for (const view of rawViews(auth)) {
      assert(!view.includes(secret), `${auth} shows a secret variable: ${view.slice(0, 200)}`)
    }
  }
  // The credentials still read their variables: the header secret and the client secret work.
  assertExists((await cases[0]![0].getToken()).token)
  assertExists((await cases[1]![0].getToken()).token)
  assertExists((await cases[2]![0].getToken()).token)
  assertEquals(emu.requests({ route: 'mi.app-service' }).map((r) => r.status), [200])
})
