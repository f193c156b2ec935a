import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import {
  AmlAuthError,
  Audience,
  AuthenticationError,
  createTokenCache,
  CredentialUnavailableError,
} from '@aml-edge/auth'
import { MsiAuthentication } from '../../src/credentials/msi.ts'
import type {
  ManagedIdentityConfig,
  ManagedIdentitySource,
} from '../../src/credentials/_msi_sources.ts'
import { fakeClock, serveLoopback } from '../_fixtures/loopback.ts'
import {
  ARM,
  ARM_SCOPE,
  assertCode,
  assertNoSecret,
  CLIENT_ID,
  EXP,
  msi,
  OBJECT_ID,
  query,
  RESOURCE_ID,
  SECRETS,
  sourceEnv,
  tokenResponse,
} from './_msi_helpers.ts'

// ---- detection ------------------------------------------------------------------------------

const DETECTION: [string, Record<string, string>, ManagedIdentitySource][] = [
  ['nothing set', {}, 'imds'],
  ['pod identity host', { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://127.0.0.1:1' }, 'imds'],
  ['MSI_ENDPOINT only', { MSI_ENDPOINT: 'http://localhost:50342/oauth2/token' }, 'cloud-shell'],
  [
    'MSI_ENDPOINT + MSI_SECRET',
    { MSI_ENDPOINT: 'http://127.0.0.1:46808/MSI/auth', MSI_SECRET: 's' },
    'azure-ml',
  ],
  [
    'IDENTITY_ENDPOINT + IMDS_ENDPOINT',
    { IDENTITY_ENDPOINT: 'http://localhost:40342/x', IMDS_ENDPOINT: 'http://localhost:40342' },
    'azure-arc',
  ],
  [
    'IDENTITY_ENDPOINT + IDENTITY_HEADER',
    { IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token', IDENTITY_HEADER: 'h' },
    'app-service',
  ],
  [
    'IDENTITY_ENDPOINT + IDENTITY_HEADER + IDENTITY_SERVER_THUMBPRINT',
    {
      IDENTITY_ENDPOINT: 'https://10.0.0.4:2377/metadata/identity/oauth2/token',
      IDENTITY_HEADER: 'h',
      IDENTITY_SERVER_THUMBPRINT: 'AB',
    },
    'service-fabric',
  ],
  // overlapping variables: the first source in SPEC 3 order wins
  [
    'every variable at once',
    {
      IDENTITY_ENDPOINT: 'https://10.0.0.4:2377/t',
      IDENTITY_HEADER: 'h',
      IDENTITY_SERVER_THUMBPRINT: 'AB',
      IMDS_ENDPOINT: 'http://localhost:40342',
      MSI_ENDPOINT: 'http://localhost:1/x',
      MSI_SECRET: 's',
      AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://127.0.0.1:1',
    },
    'service-fabric',
  ],
  [
    'App Service 2019 and 2017 variables (Linux App Service sets both)',
    {
      IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token',
      IDENTITY_HEADER: 'h',
      MSI_ENDPOINT: 'http://localhost:4141/msi/token',
      MSI_SECRET: 's',
    },
    'app-service',
  ],
  [
    'App Service variables plus IMDS_ENDPOINT',
    {
      IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token',
      IDENTITY_HEADER: 'h',
      IMDS_ENDPOINT: 'http://localhost:40342',
    },
    'app-service',
  ],
  [
    'Arc variables plus MSI_ENDPOINT + MSI_SECRET',
    {
      IDENTITY_ENDPOINT: 'http://localhost:40342/x',
      IMDS_ENDPOINT: 'http://localhost:40342',
      MSI_ENDPOINT: 'http://localhost:1/x',
      MSI_SECRET: 's',
    },
    'azure-arc',
  ],
  [
    'IDENTITY_ENDPOINT alone is not a source',
    { IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token', MSI_ENDPOINT: 'http://localhost:1/x' },
    'cloud-shell',
  ],
  [
    'empty values count as unset',
    {
      IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token',
      IDENTITY_HEADER: '',
      MSI_ENDPOINT: ' ',
    },
    'imds',
  ],
]

for (const [name, env, expected] of DETECTION) {
  Deno.test(`MsiAuthentication detects ${expected} from env: ${name}`, () => {
    assertEquals(msi({ env }).source, expected)
  })
}

Deno.test('MsiAuthentication source option overrides detection', () => {
  const env = { MSI_ENDPOINT: 'http://localhost:1/x', MSI_SECRET: 's' }
  assertEquals(msi({ env, source: 'imds' }).source, 'imds')
  assertEquals(msi({ env, source: 'cloud-shell' }).source, 'cloud-shell')
})

Deno.test('MsiAuthentication constructor does no I/O', () => {
  let calls = 0
  const fetch = () => {
    calls++
    return Promise.resolve(new Response('{}'))
  }
  msi({ fetch, env: sourceEnv('http://127.0.0.1:9')['app-service']! })
  msi({ fetch })
  assertEquals(calls, 0)
})

// ---- options ----------------------------------------------------------------------------------

Deno.test('MsiAuthentication rejects bad options with TypeError naming the option', () => {
  const cases: [unknown, string][] = [
    [{ source: 'vm' }, 'source must be one of'],
    [{ identityConfig: { clientId: CLIENT_ID, objectId: OBJECT_ID } }, 'with one of'],
    [{ identityConfig: { clientId: CLIENT_ID, resourceId: RESOURCE_ID } }, 'with one of'],
    [{ identityConfig: 'abc' }, 'identityConfig must be an object'],
    [{ identityConfig: { client_id: CLIENT_ID } }, 'use clientId'],
    [{ identityConfig: { msi_res_id: RESOURCE_ID } }, 'use resourceId'],
    [{ identityConfig: { clientId: '' } }, 'identityConfig.clientId must be a GUID'],
    [{ identityConfig: { clientId: 'not-a-guid' } }, 'identityConfig.clientId must be a GUID'],
    [{ identityConfig: { objectId: 42 } }, 'identityConfig.objectId'],
    [{ identityConfig: { resourceId: CLIENT_ID } }, 'identityConfig.resourceId must be an ARM'],
    [{ readFile: 'x' }, 'readFile must be a function'],
    [{ arcKeyDirectory: '' }, 'arcKeyDirectory'],
  ]
  for (const [options, text] of cases) {
    const e = assertThrows(
      () => new MsiAuthentication({ cache: createTokenCache(), env: {}, ...(options as object) }),
      TypeError,
    )
    assertStringIncludes(e.message, text)
  }
})

Deno.test('MsiAuthentication refuses user-assigned ids a source does not support, at construction', () => {
  const env = sourceEnv('http://127.0.0.1:9')
  const refused: [ManagedIdentitySource, ManagedIdentityConfig, string][] = [
    ['cloud-shell', { clientId: CLIENT_ID }, 'Cloud Shell'],
    ['azure-arc', { clientId: CLIENT_ID }, 'Azure Arc'],
    ['azure-ml', { objectId: OBJECT_ID }, 'use clientId'],
    ['azure-ml', { resourceId: RESOURCE_ID }, 'use clientId'],
  ]
  for (const [source, identityConfig, text] of refused) {
    // detected from env
    const e = assertThrows(() => msi({ env: env[source]!, identityConfig }), TypeError)
    assertStringIncludes(e.message, 'identityConfig.')
    assertStringIncludes(e.message, text)
    // named explicitly
    assertThrows(() => msi({ source, identityConfig }), TypeError)
  }
  // supported ones construct
  msi({ env: env['azure-ml']!, identityConfig: { clientId: CLIENT_ID } })
  msi({ env: env['service-fabric']!, identityConfig: { resourceId: RESOURCE_ID } })
  msi({ identityConfig: { objectId: OBJECT_ID } })
  msi({ identityConfig: {} as { clientId: string } })
})

Deno.test('MsiAuthentication shows no secret in toString, JSON or inspect', () => {
  const env = { ...sourceEnv('http://127.0.0.1:9')['app-service']!, MSI_SECRET: SECRETS.msi }
  const auth = msi({ env, identityConfig: { clientId: CLIENT_ID } })
  for (const text of [String(auth), JSON.stringify(auth), Deno.inspect(auth)]) {
    assert(!text.includes(SECRETS.header) && !text.includes(SECRETS.msi), text)
    assertStringIncludes(text, 'app-service')
    assertStringIncludes(text, CLIENT_ID)
  }
  assertEquals(auth.toJSON().source, 'app-service')
})

// ---- exact requests per source ------------------------------------------------------------------

interface Expected {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string | null>
  body?: Record<string, string>
}

function expectations(): Record<ManagedIdentitySource, Expected> {
  return {
    'service-fabric': {
      method: 'GET',
      path: '/sf/token',
      query: { 'api-version': '2019-07-01-preview', resource: ARM },
      headers: { secret: SECRETS.header, 'x-identity-header': null, metadata: null },
    },
    'app-service': {
      method: 'GET',
      path: '/msi/token',
      query: { 'api-version': '2019-08-01', resource: ARM },
      headers: { 'x-identity-header': SECRETS.header, secret: null, metadata: null },
    },
    'azure-ml': {
      method: 'GET',
      path: '/MSI/auth',
      query: { 'api-version': '2017-09-01', resource: ARM },
      headers: { secret: SECRETS.msi, metadata: 'true' },
    },
    'cloud-shell': {
      method: 'POST',
      path: '/oauth2/token',
      query: {},
      headers: {
        metadata: 'true',
        'content-type': 'application/x-www-form-urlencoded;charset=utf-8',
      },
      body: { resource: ARM },
    },
    'azure-arc': {
      method: 'GET',
      path: '/metadata/identity/oauth2/token',
      query: { 'api-version': '2020-06-01', resource: ARM },
      headers: { metadata: 'true', authorization: null },
    },
    imds: {
      method: 'GET',
      path: '/metadata/identity/oauth2/token',
      query: { 'api-version': '2018-02-01', resource: ARM },
      headers: { metadata: 'true', secret: null },
    },
  }
}

for (const source of Object.keys(expectations()) as ManagedIdentitySource[]) {
  if (source === 'azure-arc') continue // two-step flow: msi_arc_test.ts
  Deno.test(`MsiAuthentication (${source}) sends the exact request of SPEC 3`, async () => {
    await using srv = serveLoopback(() => tokenResponse({ expires_on: String(EXP) }))
    const auth = msi({ env: sourceEnv(srv.origin)[source]! })
    assertEquals(auth.source, source)
    const t = await auth.getToken()
    assertEquals(t.token, 'mi-token')
    assertEquals(t.expiresOn, EXP)
    assertEquals(srv.requests.length, 1)
    const r = srv.requests[0]!
    const want = expectations()[source]
    assertEquals(r.method, want.method)
    assertEquals(r.url.pathname, want.path)
    assertEquals(query(r), want.query)
    for (const [h, v] of Object.entries(want.headers)) assertEquals(r.headers.get(h), v, h)
    if (want.body) assertEquals(Object.fromEntries(r.form), want.body)
    else assertEquals(r.body, '')
  })
}

const USER_ASSIGNED: [ManagedIdentitySource, ManagedIdentityConfig, Record<string, string>][] = [
  ['imds', { clientId: CLIENT_ID }, { client_id: CLIENT_ID }],
  ['imds', { objectId: OBJECT_ID }, { object_id: OBJECT_ID }],
  ['imds', { resourceId: RESOURCE_ID }, { msi_res_id: RESOURCE_ID }],
  ['app-service', { clientId: CLIENT_ID }, { client_id: CLIENT_ID }],
  ['app-service', { objectId: OBJECT_ID }, { object_id: OBJECT_ID }],
  ['app-service', { resourceId: RESOURCE_ID }, { mi_res_id: RESOURCE_ID }],
  ['service-fabric', { clientId: CLIENT_ID }, { client_id: CLIENT_ID }],
  ['service-fabric', { objectId: OBJECT_ID }, { object_id: OBJECT_ID }],
  ['service-fabric', { resourceId: RESOURCE_ID }, { mi_res_id: RESOURCE_ID }],
  ['azure-ml', { clientId: CLIENT_ID }, { clientid: CLIENT_ID }],
]

for (const [source, identityConfig, param] of USER_ASSIGNED) {
  const [[name, value]] = Object.entries(param) as [[string, string]]
  Deno.test(`MsiAuthentication (${source}) sends a user-assigned id as ${name}`, async () => {
    await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
    const auth = msi({ env: sourceEnv(srv.origin)[source]!, identityConfig })
    await auth.getTokenForAudience(Audience.AZUREML)
    const q = query(srv.requests[0]!)
    assertEquals(q[name], value)
    assertEquals(q.resource, 'https://ml.azure.com')
    // exactly one id parameter
    const ids = ['client_id', 'object_id', 'msi_res_id', 'mi_res_id', 'clientid']
    assertEquals(Object.keys(q).filter((k) => ids.includes(k)), [name])
  })
}

Deno.test('MsiAuthentication (azure-ml) sends DEFAULT_IDENTITY_CLIENT_ID for the default identity', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const env = { ...sourceEnv(srv.origin)['azure-ml']!, DEFAULT_IDENTITY_CLIENT_ID: OBJECT_ID }
  await msi({ env }).getToken()
  assertEquals(query(srv.requests[0]!).clientid, OBJECT_ID)
  // an explicit clientId wins
  await msi({ env, identityConfig: { clientId: CLIENT_ID } }).getToken()
  assertEquals(query(srv.requests[1]!).clientid, CLIENT_ID)
})

Deno.test('MsiAuthentication does not take AZURE_CLIENT_ID as the identity', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const env = { ...sourceEnv(srv.origin).imds!, AZURE_CLIENT_ID: CLIENT_ID }
  await msi({ env }).getToken()
  assertEquals(query(srv.requests[0]!).client_id, undefined)
})

Deno.test('MsiAuthentication keeps the query an endpoint already has', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const env = { IDENTITY_ENDPOINT: `${srv.origin}/msi/token?stamp=1`, IDENTITY_HEADER: 'h' }
  await msi({ env }).getToken()
  assertEquals(query(srv.requests[0]!), { stamp: '1', 'api-version': '2019-08-01', resource: ARM })
})

Deno.test('MsiAuthentication maps scopes to resources and audiences to the cloud', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const china = msi({ env: sourceEnv(srv.origin).imds!, cloud: 'AzureChinaCloud' })
  await china.getToken()
  await china.getTokenForAudience(Audience.AZUREML)
  await china.getToken('https://vault.azure.net/.default')
  await china.getToken(['api://my-api'])
  assertEquals(srv.requests.map((r) => r.url.searchParams.get('resource')), [
    'https://management.core.chinacloudapi.cn/',
    'https://ml.azure.cn',
    'https://vault.azure.net',
    'api://my-api',
  ])
})

Deno.test('MsiAuthentication refuses several scopes in one call', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const auth = msi({ env: sourceEnv(srv.origin).imds! })
  const e = await assertRejects(() => auth.getToken([ARM_SCOPE, 'https://ml.azure.com/.default']))
  assertCode(e, 'ERR_UNSUPPORTED_AUDIENCE')
  assertStringIncludes(e.message, 'one scope')
  assertEquals(srv.requests.length, 0)
})

// ---- cache ------------------------------------------------------------------------------------

Deno.test('MsiAuthentication shares one request among 1000 concurrent callers', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const auth = msi({ env: sourceEnv(srv.origin)['app-service']! })
  const tokens = await Promise.all(Array.from({ length: 1000 }, () => auth.getToken()))
  assertEquals(srv.requests.length, 1)
  assert(tokens.every((t) => t === tokens[0]))
  await auth.getToken()
  assertEquals(srv.requests.length, 1)
})

Deno.test('MsiAuthentication instances for the same identity share cached tokens', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const cache = createTokenCache()
  const env = sourceEnv(srv.origin).imds!
  await new MsiAuthentication({ env, cache }).getToken()
  await new MsiAuthentication({ env, cache }).getToken()
  assertEquals(srv.requests.length, 1)
  // another identity does not get that token
  await new MsiAuthentication({ env, cache, identityConfig: { clientId: CLIENT_ID } }).getToken()
  assertEquals(srv.requests.length, 2)
})

// ---- expiry formats -----------------------------------------------------------------------------

const START = 1_900_000_000_000
const FORMATS: [string, Record<string, unknown>, number][] = [
  ['epoch seconds (number)', { expires_on: EXP }, EXP],
  ['epoch seconds (string)', { expires_on: String(EXP) }, EXP],
  ['epoch milliseconds', { expires_on: EXP * 1000 }, EXP],
  ['MM/dd/yyyy HH:mm:ss +00:00', { expires_on: '03/17/2030 08:15:30 +00:00' }, EXP],
  ['M/d/yyyy h:mm:ss AM +00:00', { expires_on: '3/17/2030 8:15:30 AM +00:00' }, EXP],
  ['M/d/yyyy h:mm:ss PM +02:00', { expires_on: '3/17/2030 10:15:30 AM +02:00' }, EXP],
  [
    'the documented 00:00:00 PM sample',
    { expires_on: '09/14/2017 00:00:00 PM +00:00' },
    Date.UTC(2017, 8, 14, 12) / 1000,
  ],
  ['ISO 8601 Z', { expires_on: '2030-03-17T08:15:30Z' }, EXP],
  ['ISO 8601 offset, 7-digit fraction', { expires_on: '2030-03-17T10:15:30.1234567+02:00' }, EXP],
  ['expires_in only (string)', { expires_in: '3600' }, START / 1000 + 3600],
  ['expires_in only (number)', { expires_in: 86399 }, START / 1000 + 86399],
  ['empty expires_on, expires_in', { expires_on: '', expires_in: 60 }, START / 1000 + 60],
  ['IMDS shape', { expires_on: String(EXP), expires_in: '86399', ext_expires_in: '86399' }, EXP],
]

for (const [source, shape] of [['imds', 'IMDS'], ['azure-ml', 'Azure ML']] as const) {
  for (const [name, fields, expected] of FORMATS) {
    Deno.test(`MsiAuthentication (${shape}) reads expiry as ${name}`, async () => {
      await using srv = serveLoopback(() => tokenResponse(fields))
      const clock = fakeClock(START)
      const auth = msi({ env: sourceEnv(srv.origin)[source]!, now: clock.now })
      const t = await auth.getToken()
      assertEquals(t.expiresOn, expected)
    })
  }
}

for (
  const [name, fields] of [
    ['neither expires_on nor expires_in', {}],
    ['an unreadable expires_on', { expires_on: 'tomorrow' }],
    ['a date without a zone', { expires_on: '2030-03-17T08:15:30' }],
    ['an impossible date', { expires_on: '13/45/2030 08:15:30 +00:00' }],
  ] as const
) {
  Deno.test(`MsiAuthentication fails with ERR_RESPONSE_INVALID for ${name}`, async () => {
    await using srv = serveLoopback(() => tokenResponse(fields))
    const auth = msi({ env: sourceEnv(srv.origin)['app-service']! })
    const e = await assertRejects(() => auth.getToken(), AmlAuthError)
    assertCode(e, 'ERR_RESPONSE_INVALID')
    assertStringIncludes(e.message, 'App Service')
  })
}

// ---- error mapping ------------------------------------------------------------------------------

Deno.test('MsiAuthentication (imds) 400 "Identity not found" fails at once with advice', async () => {
  await using srv = serveLoopback(() =>
    Response.json(
      { error: 'invalid_request', error_description: 'Identity not found' },
      { status: 400 },
    )
  )
  const auth = msi({ env: sourceEnv(srv.origin).imds!, identityConfig: { clientId: CLIENT_ID } })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(srv.requests.length, 1)
  assertEquals(e.status, 400)
  assertEquals(e.error, 'invalid_request')
  assertEquals(e.errorDescription, 'Identity not found')
  assertStringIncludes(e.message, 'Check identityConfig')
  // system-assigned: different advice
  const sys = msi({ env: sourceEnv(srv.origin).imds! })
  const e2 = await assertRejects(() => sys.getToken(), AuthenticationError)
  assertCode(e2, 'ERR_AUTHENTICATION')
  assertStringIncludes(e2.message, 'Enable the system-assigned identity')
})

Deno.test('MsiAuthentication (app-service) reads { statusCode, message } and scrubs the secret', async () => {
  await using srv = serveLoopback(() =>
    Response.json(
      { statusCode: 401, message: `The X-IDENTITY-HEADER ${SECRETS.header} is not valid.` },
      { status: 401 },
    )
  )
  const auth = msi({ env: sourceEnv(srv.origin)['app-service']! })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 401)
  assertStringIncludes(e.errorDescription!, '[redacted]')
  assertStringIncludes(e.message, 'Check IDENTITY_HEADER')
  assertEquals(srv.requests.length, 1)
})

Deno.test('MsiAuthentication (service-fabric) reads { error: { code, message } }', async () => {
  await using srv = serveLoopback(() =>
    Response.json(
      { error: { code: 'SecretHeaderMismatch', message: 'The secret is not valid.' } },
      { status: 401 },
    )
  )
  const auth = msi({ env: sourceEnv(srv.origin)['service-fabric']! })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.error, 'SecretHeaderMismatch')
  assertEquals(e.errorDescription, 'The secret is not valid.')
})

Deno.test('MsiAuthentication (azure-ml) keeps a plain-text refusal, scrubbed', async () => {
  await using srv = serveLoopback(() =>
    new Response(`Unauthorized: bad secret ${SECRETS.msi}\nmore`, {
      status: 403,
      headers: { 'content-type': 'text/plain' },
    })
  )
  const auth = msi({ env: sourceEnv(srv.origin)['azure-ml']! })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 403)
  assertStringIncludes(e.message, 'Unauthorized: bad secret [redacted]')
  assertStringIncludes(e.message, 'Check MSI_SECRET')
})

Deno.test('MsiAuthentication reports an HTML answer as ERR_AUTHENTICATION with the status', async () => {
  await using srv = serveLoopback(() =>
    new Response('<html>Forbidden</html>', {
      status: 403,
      headers: { 'content-type': 'text/html' },
    })
  )
  const auth = msi({ env: sourceEnv(srv.origin)['cloud-shell']! })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertCode(e, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 403)
})

Deno.test('MsiAuthentication (imds) treats a proxy 403 "unreachable" as unavailable', async () => {
  await using srv = serveLoopback(() =>
    new Response(
      'connecting to 169.254.169.254:80: A socket operation was attempted to an unreachable network.',
      { status: 403 },
    )
  )
  const auth = msi({ env: sourceEnv(srv.origin).imds! })
  const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
  assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
})

Deno.test('MsiAuthentication reports a 200 without access_token as ERR_RESPONSE_INVALID', async () => {
  await using srv = serveLoopback(() => Response.json({ expires_on: EXP }))
  const e = await assertRejects(() => msi({ env: sourceEnv(srv.origin).imds! }).getToken())
  assertCode(e, 'ERR_RESPONSE_INVALID')
})

// ---- unavailable sources and endpoint validation ------------------------------------------------

Deno.test('MsiAuthentication with an explicit source names the missing variables', async () => {
  const cases: [ManagedIdentitySource, Record<string, string>, string][] = [
    ['app-service', {}, 'IDENTITY_ENDPOINT, IDENTITY_HEADER'],
    ['app-service', { IDENTITY_ENDPOINT: 'http://localhost:1/x' }, 'IDENTITY_HEADER'],
    [
      'service-fabric',
      { IDENTITY_HEADER: SECRETS.header },
      'IDENTITY_ENDPOINT, IDENTITY_SERVER_THUMBPRINT',
    ],
    ['azure-arc', { IDENTITY_ENDPOINT: 'http://localhost:1/x' }, 'IMDS_ENDPOINT'],
    ['azure-ml', { MSI_ENDPOINT: 'http://localhost:1/x' }, 'MSI_SECRET'],
    ['cloud-shell', {}, 'MSI_ENDPOINT'],
  ]
  for (const [source, env, names] of cases) {
    let calls = 0
    const fetch = () => {
      calls++
      return Promise.resolve(new Response())
    }
    const auth = msi({ env, source, fetch })
    const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
    assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, names)
    assertEquals(calls, 0)
  }
})

Deno.test('MsiAuthentication refuses endpoints that are not https, loopback or IMDS', async () => {
  const bad: [Record<string, string>, string][] = [
    [
      { IDENTITY_ENDPOINT: 'http://10.0.0.4:4141/msi/token', IDENTITY_HEADER: SECRETS.header },
      'IDENTITY_ENDPOINT must use https',
    ],
    [
      { MSI_ENDPOINT: 'http://example.com/token', MSI_SECRET: SECRETS.msi },
      'MSI_ENDPOINT must use https',
    ],
    [{ MSI_ENDPOINT: 'not a url' }, 'MSI_ENDPOINT is not a valid URL'],
    [{ MSI_ENDPOINT: 'ftp://localhost/x' }, 'MSI_ENDPOINT must use https'],
    [{ MSI_ENDPOINT: 'http://user:pw@localhost/x' }, 'hold no credentials'],
    [
      { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://10.1.2.3:2579' },
      'AZURE_POD_IDENTITY_AUTHORITY_HOST must use https',
    ],
  ]
  for (const [env, text] of bad) {
    const auth = msi({ env })
    const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
    assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, text)
    assert(!e.message.includes('10.0.0.4') && !e.message.includes('example.com'))
    if (text.includes('use https')) {
      assertStringIncludes(e.message, 'loopback hosts and 169.254.169.254)')
      assertStringIncludes(e.message, 'fix the environment variable')
    }
  }
  // accepted: https anywhere, http on loopback and 169.254.169.254
  for (
    const env of [
      {
        IDENTITY_ENDPOINT: 'https://10.0.0.4:2377/t',
        IDENTITY_HEADER: 'h',
        IDENTITY_SERVER_THUMBPRINT: 'A',
      },
      { IDENTITY_ENDPOINT: 'http://[::1]:4141/msi/token', IDENTITY_HEADER: 'h' },
      { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://169.254.169.254/' },
      {},
    ]
  ) {
    assertMatch(msi({ env }).toString(), /endpoint=(https?):\/\//)
  }
  assertStringIncludes(
    msi({}).toString(),
    'endpoint=http://169.254.169.254/metadata/identity/oauth2/token',
  )
})

Deno.test('MsiAuthentication (imds) turns an unreachable IMDS into CredentialUnavailableError', async () => {
  // A port nothing listens on: connection refused means "not on Azure": unavailable at once.
  const l = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (l.addr as Deno.NetAddr).port
  l.close()
  const clock = fakeClock()
  const auth = msi({
    env: { AZURE_POD_IDENTITY_AUTHORITY_HOST: `http://127.0.0.1:${port}` },
    sleep: clock.sleep,
    now: clock.now,
  })
  const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
  assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
  assertStringIncludes(e.message, 'does not look like an Azure VM')
  assertInstanceOf(e.cause, AmlAuthError)
  assertEquals((e.cause as AmlAuthError).code, 'ERR_NETWORK')
  assertEquals(clock.slept.length, 0) // no retry: a host without IMDS fails fast
})

Deno.test('MsiAuthentication (app-service) keeps ERR_NETWORK for an unreachable endpoint', async () => {
  const l = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (l.addr as Deno.NetAddr).port
  l.close()
  const clock = fakeClock()
  const auth = msi({
    env: {
      IDENTITY_ENDPOINT: `http://127.0.0.1:${port}/msi/token`,
      IDENTITY_HEADER: SECRETS.header,
    },
    sleep: clock.sleep,
    now: clock.now,
  })
  const e = await assertRejects(() => auth.getToken(), AmlAuthError)
  assertCode(e, 'ERR_NETWORK')
  assertEquals(clock.slept.length, 3)
})

Deno.test('MsiAuthentication sends the secret only in its header', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  await msi({ env: sourceEnv(srv.origin)['azure-ml']! }).getToken()
  const r = srv.requests[0]!
  assert(!r.url.href.includes(SECRETS.msi))
  assertEquals(r.body, '')
  const withSecret = [...r.headers].filter(([, v]) => v.includes(SECRETS.msi)).map(([k]) => k)
  assertEquals(withSecret, ['secret'])
})

Deno.test('assertNoSecret helper catches a leak', () => {
  assertThrows(() => assertNoSecret(new Error('x ' + SECRETS.arc)))
})
