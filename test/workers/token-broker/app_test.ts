// deno-lint-ignore-file no-console
// Handler tests of the token broker: `app.request(path, init, env)` with real loopback HTTP for
// the upstream (a fake Entra token endpoint) and for caller JWKS documents.
import {
  assert,
  assertEquals,
  assertExists,
  assertGreater,
  assertLessOrEqual,
  assertMatch,
  assertStringIncludes,
} from '@std/assert'
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  jwtVerify,
  SignJWT,
} from 'jose'
import { createApp } from '../../../workers/token-broker/src/index.ts'
import {
  BROKER_ISSUER,
  brokerFixtures,
  CLIENT_ID,
  CLIENT_SECRET,
  defaultPolicy,
  EXPERIMENT_ID,
  findLeak,
  post,
  RUN,
  runSigningKey,
  SUB,
} from './_helpers.ts'

type Setup = Awaited<ReturnType<typeof setup>>

async function setup(
  o: { extra?: Record<string, unknown>; policy?: unknown; now?: () => number } = {},
) {
  const { entra, issuer, key, runKey, log, env } = await brokerFixtures(o)
  const app = createApp({ log: log.sink, ...(o.now ? { now: o.now } : {}) })
  const texts: string[] = []
  const request = async (path: string, init: RequestInit = {}, e = env) => {
    const res = await app.request(path, init, e)
    const body = await res.text()
    texts.push(body, JSON.stringify([...res.headers]))
    return { res, body, json: body.startsWith('{') ? JSON.parse(body) : undefined }
  }
  const secrets = () => [
    CLIENT_SECRET,
    key.key,
    JSON.parse(runKey.json).d as string,
  ]
  return {
    entra,
    issuer,
    key,
    runKey,
    log,
    env,
    app,
    request,
    texts,
    secrets,
    async [Symbol.asyncDispose]() {
      await entra.close()
      await issuer.close()
    },
  }
}

const withKey = (s: Setup) => ({ 'x-api-key': s.key.key })

/** Every error response and log line is free of secrets and tokens. */
function assertNoLeaks(s: Setup, extra: string[] = []): void {
  const leak = findLeak(s.log.lines, [...s.secrets(), ...s.entra.issued, ...extra])
  assertEquals(leak, undefined, 'a log line holds a secret or token')
  const errors = s.texts.filter((t) => t.includes('"error"'))
  assertEquals(findLeak(errors, [...s.secrets(), ...s.entra.issued, ...extra]), undefined)
  for (const t of s.texts) assert(!/UPSTREAM-BODY-MARKER|\bat \S+ \(|Error:/.test(t), t)
}

function assertRefusal(
  r: { res: Response; json: Record<string, unknown> | undefined },
  status: number,
  error: string,
  description?: RegExp,
): void {
  assertEquals(r.res.status, status, JSON.stringify(r.json))
  assertEquals(Object.keys(r.json ?? {}).sort(), ['error', 'error_description'])
  assertEquals(r.json?.error, error)
  if (description) assertMatch(String(r.json?.error_description), description)
  assertEquals(r.res.headers.get('cache-control'), 'no-store')
  assertEquals(r.res.headers.get('content-type'), 'application/json; charset=utf-8')
  if (status === 401) assertStringIncludes(r.res.headers.get('www-authenticate') ?? '', 'Bearer')
}

Deno.test('POST /token gives an API-key caller an ARM token from Entra, with no-store', async () => {
  await using s = await setup()
  const r = await s.request('/token', post({ audience: 'ARM' }, withKey(s)))
  assertEquals(r.res.status, 200)
  assertEquals(Object.keys(r.json).sort(), [
    'access_token',
    'expires_in',
    'expires_on',
    'token_type',
  ])
  assertEquals(r.json.token_type, 'Bearer')
  assertEquals(r.json.access_token, s.entra.issued[0])
  assertGreater(r.json.expires_in, 3500)
  assertLessOrEqual(r.json.expires_in, 3599)
  assertEquals(r.json.expires_on - Math.floor(Date.now() / 1000) - r.json.expires_in <= 1, true)
  assertEquals(r.res.headers.get('cache-control'), 'no-store')
  assertEquals(r.res.headers.get('x-content-type-options'), 'nosniff')
  assertEquals(r.res.headers.get('x-frame-options'), 'DENY')
  assertExists(r.res.headers.get('x-request-id'))
  // What went upstream: the v2 token endpoint of the tenant, client credentials, the ARM scope.
  const sent = s.entra.requests[0]!
  assertEquals(sent.method, 'POST')
  assertEquals(sent.url.pathname, '/11111111-2222-4333-8444-555555555555/oauth2/v2.0/token')
  assertEquals(sent.form.get('grant_type'), 'client_credentials')
  assertEquals(sent.form.get('client_id'), CLIENT_ID)
  assertEquals(sent.form.get('client_secret'), CLIENT_SECRET)
  assertEquals(sent.form.get('scope'), 'https://management.core.windows.net//.default')
  assertNoLeaks(s)
})

Deno.test('POST /token serves cached tokens without another upstream request', async () => {
  await using s = await setup()
  const a = await s.request('/token', post({ audience: 'AZUREML' }, withKey(s)))
  const b = await s.request(
    '/token',
    post({ audience: 'AZUREML' }, { authorization: 'ApiKey ' + s.key.key }),
  )
  assertEquals(a.json.access_token, b.json.access_token)
  assertEquals(s.entra.tokenRequests(), 1)
  assertEquals(s.entra.requests[0]!.form.get('scope'), 'https://ml.azure.com/.default')
  // 100 concurrent callers for a new scope: one upstream request.
  const all = await Promise.all(
    Array.from(
      { length: 100 },
      () => s.app.request('/token', post({ audience: 'ARM' }, withKey(s)), s.env),
    ),
  )
  assert(all.every((r) => r.status === 200))
  await Promise.all(all.map((r) => r.body?.cancel()))
  assertEquals(s.entra.tokenRequests(), 2)
})

Deno.test('POST /token accepts listed scopes and the .default scope of an allowed audience', async () => {
  await using s = await setup()
  const storage = await s.request(
    '/token',
    post({ scope: 'https://storage.azure.com/.default' }, withKey(s)),
  )
  assertEquals(storage.res.status, 200)
  assertEquals(s.entra.requests[0]!.form.get('scope'), 'https://storage.azure.com/.default')
  const aml = await s.request(
    '/token',
    post({ scope: 'https://ml.azure.com/.default' }, withKey(s)),
  )
  assertEquals(aml.res.status, 200)
  const other = await s.request(
    '/token',
    post({ scope: 'https://vault.azure.net/.default' }, withKey(s)),
  )
  assertRefusal(other, 403, 'access_denied', /scope/)
  assertEquals(s.entra.tokenRequests(), 2)
})

Deno.test('POST /token accepts JWT callers (RS256 and ES256) the policy names', async () => {
  await using s = await setup()
  for (const alg of ['RS256', 'ES256'] as const) {
    const jwt = await s.issuer.sign({ sub: 'repo:contoso/ml:ref:refs/heads/main' }, { alg })
    const r = await s.request(
      '/token',
      post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }),
    )
    assertEquals(r.res.status, 200, r.body)
  }
  // The JWKS was fetched once and cached.
  assertEquals(s.issuer.jwksFetches(), 1)
  const line = JSON.parse(s.log.lines.at(-1)!)
  assertEquals(line.caller, `jwt:${s.issuer.issuer}|repo:contoso/ml:ref:refs/heads/main`)
  // This caller may not have ARM, and another subject gets nothing.
  const jwt = await s.issuer.sign({ sub: 'repo:contoso/ml:ref:refs/heads/main' })
  assertRefusal(
    await s.request('/token', post({ audience: 'ARM' }, { authorization: `Bearer ${jwt}` })),
    403,
    'access_denied',
    /ARM/,
  )
  const stranger = await s.issuer.sign({ sub: 'repo:evil/ml:ref:refs/heads/main' })
  assertRefusal(
    await s.request(
      '/token',
      post({ audience: 'AZUREML' }, { authorization: `Bearer ${stranger}` }),
    ),
    403,
    'access_denied',
  )
  assertNoLeaks(s, [jwt, stranger])
})

Deno.test('callers without valid credentials are refused with 401 and a challenge', async () => {
  await using s = await setup()
  const body = { audience: 'AZUREML' }
  assertRefusal(await s.request('/token', post(body)), 401, 'invalid_client', /required/)
  assertRefusal(
    await s.request('/token', post(body, { 'x-api-key': 'abk_not-the-key-0123456789' })),
    401,
    'invalid_client',
    /API key/,
  )
  assertRefusal(
    await s.request('/token', post(body, { authorization: 'ApiKey short' })),
    401,
    'invalid_client',
  )
  assertRefusal(
    await s.request('/token', post(body, { authorization: 'Basic dXNlcjpwYXNz' })),
    401,
    'invalid_client',
    /scheme/,
  )
  assertRefusal(
    await s.request('/token', post(body, { authorization: 'Bearer not.a.jwt' })),
    401,
    'invalid_token',
  )
  assertRefusal(
    await s.request(
      '/token',
      post(body, { authorization: 'Bearer x.y.z', 'x-api-key': s.key.key }),
    ),
    400,
    'invalid_request',
    /one credential/,
  )
  assertEquals(s.entra.tokenRequests(), 0)
  const lines = s.log.lines.map((l) => JSON.parse(l))
  assertEquals(lines.map((l) => l.status), [401, 401, 401, 401, 401, 400])
  assertEquals(lines[1].reason, 'api_key')
  assertNoLeaks(s)
})

Deno.test('forged, unsigned, HMAC-confused, expired and misaddressed JWTs are refused', async () => {
  await using s = await setup()
  const sub = 'repo:contoso/ml:ref:refs/heads/main'
  const call = (jwt: string) =>
    s.request('/token', post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }))
  const tokens: string[] = []
  const t = Math.floor(Date.now() / 1000)

  // Forged: a key the issuer never published, claiming the issuer's kid.
  const other = await generateKeyPair('RS256')
  const forged = await s.issuer.sign({ sub }, { key: other.privateKey, kid: 'rsa-1' })
  tokens.push(forged)
  assertRefusal(await call(forged), 401, 'invalid_token', /signature/)

  // alg: none.
  const b64 = (o: unknown) =>
    btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${
    b64({ iss: s.issuer.issuer, aud: 'api://token-broker', sub, exp: t + 600 })
  }.`
  tokens.push(none)
  assertRefusal(await call(none), 401, 'invalid_token', /algorithm/)

  // HS256 with the issuer's public key (as published in its JWKS) as the HMAC secret.
  const secret = new TextEncoder().encode(JSON.stringify(s.issuer.rsaPublicJwk))
  for (const material of [secret, new TextEncoder().encode(s.issuer.rsaPublicJwk.n!)]) {
    const hs = await new SignJWT({ sub })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setIssuer(s.issuer.issuer)
      .setAudience('api://token-broker')
      .setExpirationTime(t + 600)
      .sign(material)
    tokens.push(hs)
    assertRefusal(await call(hs), 401, 'invalid_token', /algorithm/)
  }

  // Expired (beyond the 30 s clock tolerance).
  const expired = await s.issuer.sign({ sub }, { expiresIn: -120 })
  tokens.push(expired)
  assertRefusal(await call(expired), 401, 'invalid_token', /expired/)

  // Wrong audience, wrong issuer, unknown kid.
  const wrongAud = await s.issuer.sign({ sub }, { audience: 'api://someone-else' })
  tokens.push(wrongAud)
  assertRefusal(await call(wrongAud), 401, 'invalid_token', /aud/)
  const wrongIss = await s.issuer.sign({ sub }, { issuer: 'https://evil.example' })
  tokens.push(wrongIss)
  assertRefusal(await call(wrongIss), 401, 'invalid_token', /issuer/)
  const unknownKid = await s.issuer.sign({ sub }, { kid: 'rotated-away' })
  tokens.push(unknownKid)
  assertRefusal(await call(unknownKid), 401, 'invalid_token', /kid/)
  assertRefusal(await call(unknownKid), 401, 'invalid_token', /kid/)
  // An unknown kid refetches the JWKS at most once per cool-down: two fetches in all.
  assertLessOrEqual(s.issuer.jwksFetches(), 2)
  // A token without sub.
  const noSub = await s.issuer.sign({})
  tokens.push(noSub)
  assertRefusal(await call(noSub), 401, 'invalid_token')

  assertEquals(s.entra.tokenRequests(), 0)
  const reasons = s.log.lines.map((l) => JSON.parse(l).reason)
  assertEquals(reasons.slice(0, 9), [
    'signature',
    'alg',
    'alg',
    'alg',
    'expired',
    'claim_aud',
    'iss',
    'kid',
    'kid',
  ])
  assertNoLeaks(s, tokens)
})

Deno.test('an unreachable issuer JWKS is a 502, not a 401 or a 500', async () => {
  const closed = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (closed.addr as Deno.NetAddr).port
  closed.close()
  await using s = await setup()
  const env = {
    ...s.env,
    CALLER_ISSUERS: JSON.stringify([{
      issuer: s.issuer.issuer,
      jwksUrl: `http://127.0.0.1:${port}/jwks`,
      audience: 'api://token-broker',
      algorithms: ['RS256'],
    }]),
  }
  const jwt = await s.issuer.sign({ sub: 'repo:contoso/ml:x' })
  const r = await s.request(
    '/token',
    post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }),
    env,
  )
  assertRefusal(r, 502, 'upstream_error', /signing keys/)
})

Deno.test('request bodies: oversized, malformed, wrong type and unknown fields are refused', async () => {
  await using s = await setup()
  const h = withKey(s)
  const big = JSON.stringify({ audience: 'ARM', pad: 'x'.repeat(9000) })
  assertRefusal(await s.request('/token', post(big, h)), 413, 'request_too_large')
  // The same body streamed without a Content-Length is cut at the limit.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode('x'.repeat(1000)))
      c.close()
    },
  })
  assertRefusal(
    await s.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...h },
      body: stream,
    }),
    413,
    'request_too_large',
  )
  assertRefusal(await s.request('/token', post('{"audience":', h)), 400, 'invalid_request', /JSON/)
  assertRefusal(await s.request('/token', post('[1,2]', h)), 400, 'invalid_request', /object/)
  assertRefusal(await s.request('/token', post('"ARM"', h)), 400, 'invalid_request')
  assertRefusal(
    await s.request('/token', { method: 'POST', headers: h, body: 'audience=ARM' }),
    415,
    'invalid_request',
    /Content-Type/,
  )
  assertRefusal(
    await s.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...h },
    }),
    400,
    'invalid_request',
  )
  assertRefusal(
    await s.request('/token', post({ audience: 'ARM', client_secret: 'x' }, h)),
    400,
    'invalid_request',
    /Unknown field/,
  )
  assertRefusal(
    await s.request('/token', post({ audience: 'ARM', scope: 'a/.default' }, h)),
    400,
    'invalid_request',
    /exactly one/,
  )
  assertRefusal(await s.request('/token', post({}, h)), 400, 'invalid_request')
  assertRefusal(await s.request('/token', post({ audience: 'arm' }, h)), 400, 'invalid_request')
  assertRefusal(
    await s.request('/token', post({ scope: 'a/.default b/.default' }, h)),
    400,
    'invalid_request',
    /no spaces/,
  )
  assertRefusal(await s.request('/token', post({ scope: 42 }, h)), 400, 'invalid_request')
  // Invalid UTF-8.
  assertRefusal(
    await s.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...h },
      body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]),
    }),
    400,
    'invalid_request',
  )
  assertEquals(s.entra.tokenRequests(), 0)
  assertNoLeaks(s)
})

Deno.test('unknown paths are 404 and wrong methods 405 with Allow, all as JSON', async () => {
  await using s = await setup()
  assertRefusal(await s.request('/nope'), 404, 'not_found')
  assertRefusal(await s.request('/token/'), 404, 'not_found')
  const r = await s.request('/token', { method: 'GET' })
  assertRefusal(r, 405, 'method_not_allowed')
  assertEquals(r.res.headers.get('allow'), 'POST')
  const j = await s.request('/.well-known/jwks.json', { method: 'POST' })
  assertRefusal(j, 405, 'method_not_allowed')
  assertEquals(j.res.headers.get('allow'), 'GET, HEAD')
  const d = await s.request('/run-tokens', { method: 'DELETE' })
  assertRefusal(d, 405, 'method_not_allowed')
  const h = await s.request(
    `/history/v1.0/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/experiments/e/runs/r/token`,
    { method: 'POST' },
  )
  assertRefusal(h, 405, 'method_not_allowed')
  const lines = s.log.lines.map((l) => JSON.parse(l))
  assertEquals(lines.map((l) => [l.status, l.error]), [
    [404, 'not_found'],
    [404, 'not_found'],
    [405, 'method_not_allowed'],
    [405, 'method_not_allowed'],
    [405, 'method_not_allowed'],
    [405, 'method_not_allowed'],
  ])
})

Deno.test('upstream failures are 502s that never carry the upstream body', async () => {
  await using s = await setup()
  const call = () => s.request('/token', post({ audience: 'ARM' }, withKey(s)))
  s.entra.mode = 'invalid_client'
  const refused = await call()
  assertRefusal(refused, 502, 'upstream_error', /AADSTS7000215/)
  const line = JSON.parse(s.log.lines.at(-1)!)
  assertEquals(line.upstream_codes, [7000215])
  assertEquals(line.upstream_error, 'invalid_client')
  assertEquals(line.upstream_trace_id, 'trace-1')
  for (const mode of ['html', 'garbage', 'server_error', 'leak'] as const) {
    s.entra.mode = mode
    const r = await call()
    assertRefusal(r, 502, 'upstream_error')
  }
  // Nothing listens there: a transport failure is a 502 too.
  const closed = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (closed.addr as Deno.NetAddr).port
  closed.close()
  const down = await s.request(
    '/token',
    post({ audience: 'ARM' }, withKey(s)),
    { ...s.env, AZURE_AUTHORITY_HOST: `http://127.0.0.1:${port}` },
  )
  assertRefusal(down, 502, 'upstream_error', /could not be reached/)
  // The upstream echoed the secret and the form; none of it reached a response or a log line.
  assertNoLeaks(s)
  // And the broker recovers once the upstream does.
  s.entra.mode = 'ok'
  assertEquals((await call()).res.status, 200)
})

Deno.test('run tokens: mint, refresh through both SPEC 5 routes, verify with the JWKS', async () => {
  await using s = await setup()
  const minted = await s.request('/run-tokens', post(RUN, withKey(s)))
  assertEquals(minted.res.status, 200, minted.body)
  assertEquals(minted.res.headers.get('cache-control'), 'no-store')
  const { token, expires_in, expiryTimeUtc, expires_on } = minted.json
  assertEquals(expires_in, 3600)
  assertEquals(Date.parse(expiryTimeUtc), expires_on * 1000)
  const header = decodeProtectedHeader(token)
  assertEquals(header, { alg: 'ES256', kid: JSON.parse(s.runKey.json).kid, typ: 'aml-run+jwt' })

  const jwksRes = await s.request('/.well-known/jwks.json')
  assertEquals(jwksRes.res.headers.get('cache-control'), 'public, max-age=300')
  assertEquals(jwksRes.json.keys.length, 1)
  assertEquals(jwksRes.json.keys[0].d, undefined, 'the JWKS must never hold a private member')
  const verified = await jwtVerify(token, createLocalJWKSet(jwksRes.json), {
    issuer: BROKER_ISSUER,
    audience: BROKER_ISSUER,
    typ: 'aml-run+jwt',
  })
  assertEquals(verified.payload.run, RUN)
  assertEquals(verified.payload.caller, { apiKey: 'ci' })

  const base =
    `/history/v1.0/subscriptions/${SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws`
  const byName = `${base}/experiments/train/runs/${RUN.runId}/token`
  const byId = `${base}/experimentids/${EXPERIMENT_ID}/runs/${RUN.runId}/token`
  const r1 = await s.request(byName, { headers: { authorization: `Bearer ${token}` } })
  assertEquals(r1.res.status, 200, r1.body)
  assertEquals(Object.keys(r1.json).sort(), ['expiryTimeUtc', 'token'])
  assertEquals(r1.res.headers.get('cache-control'), 'no-store')
  assertMatch(r1.json.expiryTimeUtc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/)
  assert(r1.json.token !== token)
  const r2 = await s.request(byId, { headers: { authorization: `Bearer ${r1.json.token}` } })
  assertEquals(r2.res.status, 200, r2.body)
  const again = await jwtVerify(r2.json.token, createLocalJWKSet(jwksRes.json), {
    issuer: BROKER_ISSUER,
    audience: BROKER_ISSUER,
  })
  assertEquals(again.payload.run, RUN)
  assertEquals(again.payload.session_exp, verified.payload.session_exp)

  // The discovery document points at the JWKS (what Entra reads for federated credentials).
  const oidc = await s.request('/.well-known/openid-configuration')
  assertEquals(oidc.json.issuer, BROKER_ISSUER)
  assertEquals(oidc.json.jwks_uri, `${BROKER_ISSUER}/.well-known/jwks.json`)
  assertNoLeaks(s, [token, r1.json.token, r2.json.token])
})

Deno.test('run tokens: refusals of mint and refresh', async () => {
  let clock = Date.now()
  await using s = await setup({ now: () => clock })
  const h = withKey(s)
  // Policy: only resource groups ml-* of one workspace.
  assertRefusal(
    await s.request('/run-tokens', post({ ...RUN, workspaceName: 'other-ws' }, h)),
    403,
    'access_denied',
  )
  assertRefusal(
    await s.request('/run-tokens', post({ ...RUN, runId: '../x' }, h)),
    400,
    'invalid_request',
    /runId/,
  )
  assertRefusal(
    await s.request('/run-tokens', post({ ...RUN, subscriptionId: 'nope' }, h)),
    400,
    'invalid_request',
    /subscriptionId/,
  )
  const { experimentName: _n, experimentId: _i, ...noExperiment } = RUN
  assertRefusal(
    await s.request('/run-tokens', post(noExperiment, h)),
    400,
    'invalid_request',
    /experiment/,
  )
  assertRefusal(
    await s.request('/run-tokens', post({ ...RUN, lifetimeSeconds: 10 }, h)),
    400,
    'invalid_request',
    /lifetimeSeconds/,
  )
  assertRefusal(
    await s.request('/run-tokens', post({ ...RUN, lifetimeSeconds: 10 ** 7 }, h)),
    400,
    'invalid_request',
  )
  assertRefusal(await s.request('/run-tokens', post(RUN)), 401, 'invalid_client')

  const minted = await s.request('/run-tokens', post({ ...RUN, lifetimeSeconds: 300 }, h))
  const token = minted.json.token as string
  const base =
    `/history/v1.0/subscriptions/${SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws`
  const path = `${base}/experiments/train/runs/${RUN.runId}/token`
  const refresh = (auth: Record<string, string>, p = path) => s.request(p, { headers: auth })
  assertRefusal(await refresh({}), 401, 'invalid_token')
  assertRefusal(await refresh(h), 401, 'invalid_token', /run token/)
  // Another run, another experiment, another workspace: the token's scope must match the path.
  assertRefusal(
    await refresh(
      { authorization: `Bearer ${token}` },
      `${base}/experiments/train/runs/other/token`,
    ),
    403,
    'access_denied',
  )
  assertRefusal(
    await refresh(
      { authorization: `Bearer ${token}` },
      `${base}/experiments/eval/runs/${RUN.runId}/token`,
    ),
    403,
    'access_denied',
  )
  // A caller JWT is not a run token, even though it is a valid JWT.
  const callerJwt = await s.issuer.sign({ sub: 'repo:contoso/ml:x' })
  assertRefusal(await refresh({ authorization: `Bearer ${callerJwt}` }), 401, 'invalid_token')
  // Same claims, signed by a key the broker does not hold (same kid): refused.
  const claims = decodeJwt(token)
  const { privateKey } = await generateKeyPair('ES256')
  const forged = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: JSON.parse(s.runKey.json).kid, typ: 'aml-run+jwt' })
    .sign(privateKey)
  assertRefusal(
    await refresh({ authorization: `Bearer ${forged}` }),
    401,
    'invalid_token',
    /signature/,
  )
  const otherKid = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'unknown', typ: 'aml-run+jwt' })
    .sign(privateKey)
  assertRefusal(await refresh({ authorization: `Bearer ${otherKid}` }), 401, 'invalid_token', /key/)
  // Expired: the clock moves past exp.
  clock += 310_000
  assertRefusal(
    await refresh({ authorization: `Bearer ${token}` }),
    401,
    'invalid_token',
    /expired/,
  )
  assertNoLeaks(s, [token, callerJwt, forged])
})

Deno.test('run tokens: a revoked caller can no longer refresh; rotation keeps old tokens valid', async () => {
  await using s = await setup()
  const minted = await s.request('/run-tokens', post(RUN, withKey(s)))
  const token = minted.json.token as string
  const path =
    `/history/v1.0/subscriptions/${SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/experiments/train/runs/${RUN.runId}/token`

  // Rotation: the old key becomes RUN_TOKEN_PREVIOUS_SIGNING_KEY, a new key signs.
  const next = await runSigningKey('run-next')
  const rotated = {
    ...s.env,
    RUN_TOKEN_SIGNING_KEY: next.json,
    RUN_TOKEN_PREVIOUS_SIGNING_KEY: s.runKey.json,
  }
  const jwksRes = await s.request('/.well-known/jwks.json', {}, rotated)
  assertEquals(jwksRes.json.keys.map((k: { kid: string }) => k.kid), [
    'run-next',
    JSON.parse(s.runKey.json).kid,
  ])
  assert(jwksRes.json.keys.every((k: Record<string, unknown>) => k.d === undefined))
  const r = await s.request(path, { headers: { authorization: `Bearer ${token}` } }, rotated)
  assertEquals(r.res.status, 200, r.body)
  assertEquals(decodeProtectedHeader(r.json.token).kid, 'run-next')

  // Without the previous key, tokens it signed are refused.
  const dropped = { ...s.env, RUN_TOKEN_SIGNING_KEY: next.json }
  assertRefusal(
    await s.request(path, { headers: { authorization: `Bearer ${token}` } }, dropped),
    401,
    'invalid_token',
  )
  // A policy that no longer names the minting caller stops refreshes.
  const revoked = {
    ...s.env,
    POLICY: JSON.stringify({ rules: [{ apiKey: 'someone-else', audiences: ['ARM'] }] }),
  }
  assertRefusal(
    await s.request(path, { headers: { authorization: `Bearer ${token}` } }, revoked),
    403,
    'access_denied',
    /no longer/,
  )
})

Deno.test('rate limits: 429 with Retry-After, per caller, from the binding or in memory', async () => {
  await using s = await setup({ extra: { RATE_LIMIT_PER_MINUTE: '2' } })
  const call = () => s.request('/token', post({ audience: 'ARM' }, withKey(s)))
  assertEquals((await call()).res.status, 200)
  assertEquals((await call()).res.status, 200)
  const limited = await call()
  assertRefusal(limited, 429, 'rate_limited')
  const after = Number(limited.res.headers.get('retry-after'))
  assert(after >= 1 && after <= 60, String(after))
  // Another caller has its own window.
  const jwt = await s.issuer.sign({ sub: 'repo:contoso/ml:x' })
  const other = await s.request(
    '/token',
    post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }),
  )
  assertEquals(other.res.status, 200)
  // Failed authentications count per client address.
  for (let i = 0; i < 2; i++) {
    assertEquals(
      (await s.request(
        '/token',
        post({}, { 'x-api-key': 'abk_wrong-key-0123456789', 'cf-connecting-ip': '203.0.113.9' }),
      )).res.status,
      401,
    )
  }
  assertRefusal(
    await s.request(
      '/token',
      post({}, { 'x-api-key': 'abk_wrong-key-0123456789', 'cf-connecting-ip': '203.0.113.9' }),
    ),
    429,
    'rate_limited',
  )

  // With the Workers binding, its answer decides.
  const keys: string[] = []
  const binding = {
    limit: ({ key }: { key: string }) => {
      keys.push(key)
      return Promise.resolve({ success: keys.length < 2 })
    },
  }
  const env = { ...s.env, RATE_LIMITER: binding }
  assertEquals(
    (await s.request('/token', post({ audience: 'ARM' }, withKey(s)), env)).res.status,
    200,
  )
  const bound = await s.request('/token', post({ audience: 'ARM' }, withKey(s)), env)
  assertRefusal(bound, 429, 'rate_limited')
  assertEquals(bound.res.headers.get('retry-after'), '60')
  assertEquals(keys, ['key:ci', 'key:ci'])
})

Deno.test('a misconfigured broker answers 500/503 without details; the log names the variable', async () => {
  await using s = await setup()
  const hs = {
    ...s.env,
    CALLER_ISSUERS: JSON.stringify([{
      issuer: s.issuer.issuer,
      jwksUrl: s.issuer.jwksUrl,
      audience: 'api://token-broker',
      algorithms: ['HS256'],
    }]),
  }
  const health = await s.request('/healthz', {}, hs)
  assertEquals(health.res.status, 503)
  assertEquals(health.json, { status: 'misconfigured' })
  const r = await s.request('/token', post({ audience: 'ARM' }, withKey(s)), hs)
  assertRefusal(r, 500, 'server_error', /not configured correctly/)
  assert(!r.body.includes('CALLER_ISSUERS'))
  const line = JSON.parse(s.log.lines.at(-1)!)
  assertMatch(line.config_error, /^CALLER_ISSUERS: \[0\]\.algorithms must not contain HS256/)
  // A healthy configuration.
  const ok = await s.request('/healthz')
  assertEquals(ok.json, { status: 'ok' })
  assertNoLeaks(s)
})

Deno.test('CORS: only configured origins get CORS headers and preflights', async () => {
  await using s = await setup({ extra: { ALLOWED_ORIGINS: 'https://app.example' } })
  const pre = await s.request('/token', {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
  })
  assertEquals(pre.res.status, 204)
  assertEquals(pre.res.headers.get('access-control-allow-origin'), 'https://app.example')
  assertStringIncludes(pre.res.headers.get('access-control-allow-headers')!, 'x-api-key')
  const evil = await s.request('/token', {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  })
  assertEquals(evil.res.status, 405)
  assertEquals(evil.res.headers.get('access-control-allow-origin'), null)
  const real = await s.request(
    '/token',
    post({ audience: 'ARM' }, { ...withKey(s), origin: 'https://app.example' }),
  )
  assertEquals(real.res.status, 200)
  assertEquals(real.res.headers.get('access-control-allow-origin'), 'https://app.example')
})

Deno.test('one structured log line per request, without secrets or tokens', async () => {
  await using s = await setup()
  await s.request('/token', post({ audience: 'ARM' }, withKey(s)), s.env)
  await s.request('/run-tokens', post(RUN, withKey(s)))
  await s.request(
    '/token',
    post({ audience: 'ARM' }, { 'x-api-key': 'abk_wrong-0123456789abcdef' }),
  )
  await s.request('/token', post({ audience: 'ARM' }, { ...withKey(s), 'x-request-id': 'ci-42' }))
  assertEquals(s.log.lines.length, 4)
  const lines = s.log.lines.map((l) => JSON.parse(l))
  for (const l of lines) {
    for (const f of ['ts', 'level', 'request_id', 'method', 'route', 'status', 'duration_ms']) {
      assert(f in l, `missing ${f}`)
    }
  }
  assertEquals(lines.map((l) => [l.route, l.caller, l.status]), [
    ['/token', 'key:ci', 200],
    ['/run-tokens', 'key:ci', 200],
    ['/token', null, 401],
    ['/token', 'key:ci', 200],
  ])
  assertEquals(lines[3].request_id, 'ci-42')
  assertNoLeaks(s, [CLIENT_SECRET])
})

Deno.test('the default app is configured from its bindings alone', async () => {
  const { default: app } = await import('../../../workers/token-broker/src/index.ts')
  const lines: string[] = []
  const log = console.log
  console.log = (line: string) => lines.push(line)
  try {
    const res = await app.request('/healthz', {}, {})
    assertEquals(res.status, 503)
    await res.body?.cancel()
  } finally {
    console.log = log
  }
  assertMatch(JSON.parse(lines[0]!).config_error, /^BROKER_ISSUER: is not set/)
})

Deno.test('a policy from wrangler vars may be an object, and keys are checked against it', async () => {
  await using s = await setup({ policy: defaultPolicy() })
  const env = { ...s.env, POLICY: defaultPolicy() as Record<string, unknown> }
  const r = await s.request('/token', post({ audience: 'ARM' }, withKey(s)), env)
  assertEquals(r.res.status, 200)
})

Deno.test('the TOKEN_CACHE KV tier shares tokens across isolates, AES-GCM sealed', async () => {
  await using s = await setup()
  const kv = new Map<string, { value: string; expiration?: number }>()
  const binding = {
    get: (k: string) => Promise.resolve(kv.get(k)?.value ?? null),
    put: (k: string, value: string, o?: { expiration?: number }) => {
      kv.set(k, { value, ...(o?.expiration ? { expiration: o.expiration } : {}) })
      return Promise.resolve()
    },
    delete: (k: string) => {
      kv.delete(k)
      return Promise.resolve()
    },
  }
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  const env = { ...s.env, TOKEN_CACHE: binding, TOKEN_CACHE_KEY: key }
  const first = await s.request('/token', post({ audience: 'ARM' }, withKey(s)), env)
  assertEquals(first.res.status, 200)
  assertEquals(kv.size, 1)
  const [name, entry] = [...kv][0]!
  assertMatch(name, /^token-broker\/v1\/[0-9a-f]{64}$/)
  assertMatch(entry.value, /^v1\./)
  assert(!entry.value.includes(first.json.access_token))
  assertEquals(entry.expiration, first.json.expires_on)
  // Another isolate (a new app, same bindings): served from KV, no upstream request.
  const other = createApp({ log: () => {} })
  const res = await other.request('/token', post({ audience: 'ARM' }, withKey(s)), env)
  assertEquals((await res.json()).access_token, first.json.access_token)
  assertEquals(s.entra.tokenRequests(), 1)
  // A different key cannot open the entry: the token is fetched again.
  const rekeyed = { ...env, TOKEN_CACHE_KEY: btoa('k'.repeat(32)) }
  const third = createApp({ log: () => {} })
  const r3 = await third.request('/token', post({ audience: 'ARM' }, withKey(s)), rekeyed)
  assert((await r3.json()).access_token !== first.json.access_token)
  assertEquals(s.entra.tokenRequests(), 2)
})
