// Configuration, policy and key handling of the token broker, checked without HTTP.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertRejects,
  assertThrows,
} from '@std/assert'
import { exportJWK, generateKeyPair } from 'jose'
import { type Bindings, loadConfig } from '../../../workers/token-broker/src/env.ts'
import { ConfigError } from '../../../workers/token-broker/src/errors.ts'
import {
  glob,
  grantFor,
  parsePolicy,
  permitsRun,
} from '../../../workers/token-broker/src/policy.ts'
import { parseCallerIssuers } from '../../../workers/token-broker/src/caller_auth.ts'
import { importSigningKey } from '../../../workers/token-broker/src/run_tokens.ts'
import { memoryLimiter } from '../../../workers/token-broker/src/rate_limit.ts'
import { parseJsonc } from '../../../workers/token-broker/build.ts'
import {
  apiKey,
  BROKER_ISSUER,
  brokerEnv,
  CLIENT_SECRET,
  RUN,
  runSigningKey,
  SUB,
} from './_helpers.ts'

const ISSUER = 'https://issuer.example'

async function baseEnv(): Promise<Bindings & Record<string, unknown>> {
  const key = await apiKey()
  const run = await runSigningKey('k1')
  return brokerEnv({
    authorityHost: 'https://login.microsoftonline.com',
    runKey: run.json,
    apiKeyHash: key.hash,
    extra: {
      CALLER_ISSUERS: JSON.stringify([
        { issuer: ISSUER, jwksUrl: ISSUER + '/jwks', audience: 'api://b', algorithms: ['RS256'] },
      ]),
    },
  }) as Bindings & Record<string, unknown>
}

async function refused(
  env: Record<string, unknown>,
  variable: string,
  message?: RegExp,
): Promise<ConfigError> {
  const e = await assertRejects(() => loadConfig(env as Bindings))
  assertInstanceOf(e, ConfigError)
  assertEquals(e.variable, variable, e.message)
  if (message) assertMatch(e.message, message)
  // No value of a variable ever reaches the message.
  for (const v of Object.values(env)) {
    if (typeof v === 'string' && v.length >= 12) assert(!e.message.includes(v), e.message)
  }
  assert(!e.message.includes(CLIENT_SECRET))
  return e
}

Deno.test('loadConfig() accepts a complete configuration', async () => {
  const env = await baseEnv()
  const c = await loadConfig(env)
  assertEquals(c.issuer, BROKER_ISSUER)
  assertEquals(c.upstream.credential.kind, 'secret')
  assertEquals(c.callerIssuers[0]!.algorithms, ['RS256'])
  assertEquals(c.apiKeys.map((k) => k.id), ['ci'])
  assertEquals(c.runTokens.lifetimeSeconds, 3600)
  assertEquals(c.runTokens.maxLifetimeSeconds, 86400)
  assertEquals(c.runTokens.signing.kid, 'k1')
  assertEquals(c.publishedKeys.length, 1)
  assertEquals(c.rateLimitPerMinute, 120)
})

Deno.test('loadConfig() refuses HMAC and none algorithms for caller issuers at start-up', async () => {
  const env = await baseEnv()
  for (const alg of ['HS256', 'HS512', 'hs384']) {
    const e = await refused(
      {
        ...env,
        CALLER_ISSUERS: [{
          issuer: ISSUER,
          jwksUrl: ISSUER + '/jwks',
          audience: 'a',
          algorithms: ['RS256', alg],
        }],
      },
      'CALLER_ISSUERS',
      /must not contain .*HMAC/,
    )
    assertMatch(e.message, /\[0\]\.algorithms/)
  }
  await refused(
    {
      ...env,
      CALLER_ISSUERS: [{
        issuer: ISSUER,
        jwksUrl: ISSUER + '/j',
        audience: 'a',
        algorithms: ['none'],
      }],
    },
    'CALLER_ISSUERS',
    /never none/,
  )
  await refused(
    {
      ...env,
      CALLER_ISSUERS: [{ issuer: ISSUER, jwksUrl: ISSUER + '/j', audience: 'a', algorithms: [] }],
    },
    'CALLER_ISSUERS',
  )
})

Deno.test('parseCallerIssuers() checks every field', () => {
  const ok = {
    issuer: ISSUER,
    jwksUrl: ISSUER + '/jwks',
    audience: ['a', 'b'],
    algorithms: ['ES256'],
  }
  assertEquals(parseCallerIssuers([ok], BROKER_ISSUER)[0]!.audience, ['a', 'b'])
  assertEquals(parseCallerIssuers(undefined, BROKER_ISSUER), [])
  const bad: [unknown, RegExp][] = [
    [{}, /must be a JSON array/],
    [[{ ...ok, jwksUrl: 'http://evil.example/jwks' }], /https/],
    [[{ ...ok, jwksUrl: 'not a url' }], /jwksUrl/],
    [[{ ...ok, audience: '' }], /audience/],
    [[{ ...ok, extra: 1 }], /unknown field "extra"/],
    [[ok, ok], /listed twice/],
    [[{ ...ok, issuer: BROKER_ISSUER }], /broker's own issuer/],
    [[{ ...ok, algorithms: ['RS1'] }], /may only hold/],
  ]
  for (const [value, re] of bad) {
    const e = assertThrows(() => parseCallerIssuers(value, BROKER_ISSUER))
    assertInstanceOf(e, ConfigError)
    assertMatch(e.message, re)
  }
  // Loopback http is fine for local runs.
  assertEquals(
    parseCallerIssuers([{ ...ok, jwksUrl: 'http://127.0.0.1:9/jwks' }], BROKER_ISSUER).length,
    1,
  )
})

Deno.test('loadConfig() names the variable at fault, never its value', async () => {
  const env = await baseEnv()
  const { BROKER_ISSUER: _i, ...noIssuer } = env
  await refused(noIssuer, 'BROKER_ISSUER', /is not set/)
  await refused({ ...env, BROKER_ISSUER: 'http://broker.example' }, 'BROKER_ISSUER', /https/)
  await refused({ ...env, BROKER_ISSUER: 'https://broker.example/b' }, 'BROKER_ISSUER', /no path/)
  assertEquals(
    (await loadConfig({ ...env, BROKER_ISSUER: 'https://broker.example/' })).issuer,
    BROKER_ISSUER,
  )
  await refused({ ...env, AZURE_TENANT_ID: 'not a tenant!' }, 'AZURE_TENANT_ID')
  await refused({ ...env, AZURE_AUTHORITY_HOST: 'http://login.example' }, 'AZURE_AUTHORITY_HOST')
  await refused({ ...env, AZURE_CLOUD: 'Moon' }, 'AZURE_CLOUD')
  await refused(
    { ...env, AZURE_CLIENT_CERTIFICATE: 'x'.repeat(40) },
    'AZURE_CREDENTIAL_KIND',
    /several upstream credentials/,
  )
  const { AZURE_CLIENT_SECRET: _s, ...noSecret } = env
  await refused(noSecret, 'AZURE_CREDENTIAL_KIND', /no upstream credential/)
  await refused(
    { ...noSecret, AZURE_CLIENT_CERTIFICATE: 'not a pem at all, just text' },
    'AZURE_CLIENT_CERTIFICATE',
    /PEM private key/,
  )
  await refused({ ...env, AZURE_CREDENTIAL_KIND: 'password' }, 'AZURE_CREDENTIAL_KIND')
  await refused({ ...env, AZURE_CREDENTIAL_KIND: 'federated' }, 'AZURE_FEDERATED_SUBJECT')
  await refused({ ...env, UPSTREAM_MAX_RETRIES: '9' }, 'UPSTREAM_MAX_RETRIES')
  await refused({ ...env, CALLER_API_KEYS: '{"ci": "abc"}' }, 'CALLER_API_KEYS', /64 hex/)
  await refused(
    { ...env, CALLER_API_KEYS: '{"bad id": "' + 'a'.repeat(64) + '"}' },
    'CALLER_API_KEYS',
  )
  await refused({ ...env, CALLER_API_KEYS: '{not json' }, 'CALLER_API_KEYS', /not valid JSON/)
  const { CALLER_API_KEYS: _k, CALLER_ISSUERS: _c, ...noCallers } = env
  await refused(noCallers, 'CALLER_ISSUERS', /no caller can authenticate/)
  const { POLICY: _p, ...noPolicy } = env
  await refused(noPolicy, 'POLICY', /is not set/)
  await refused({ ...env, RUN_TOKEN_LIFETIME_SECONDS: '60' }, 'RUN_TOKEN_LIFETIME_SECONDS')
  await refused(
    { ...env, RUN_TOKEN_LIFETIME_SECONDS: '7200', RUN_TOKEN_MAX_LIFETIME_SECONDS: '3600' },
    'RUN_TOKEN_LIFETIME_SECONDS',
  )
  await refused({ ...env, ALLOWED_ORIGINS: 'https://a.example/path' }, 'ALLOWED_ORIGINS')
  await refused({ ...env, TOKEN_CACHE: {} }, 'TOKEN_CACHE_KEY', /required/)
  await refused({ ...env, TOKEN_CACHE: {}, TOKEN_CACHE_KEY: btoa('short') }, 'TOKEN_CACHE_KEY')
  await refused({ ...env, BROKER_ISSUER: 42 }, 'BROKER_ISSUER', /string/)
})

Deno.test('loadConfig() checks the run-token keys without ever showing them', async () => {
  const env = await baseEnv()
  const priv = JSON.parse(env.RUN_TOKEN_SIGNING_KEY as string)
  const { RUN_TOKEN_SIGNING_KEY: _r, ...noKey } = env
  await refused(noKey, 'RUN_TOKEN_SIGNING_KEY', /is not set/)
  await refused({ ...env, RUN_TOKEN_SIGNING_KEY: '{oops' }, 'RUN_TOKEN_SIGNING_KEY', /JSON/)
  const { d: _d, ...pub } = priv
  await refused(
    { ...env, RUN_TOKEN_SIGNING_KEY: JSON.stringify(pub) },
    'RUN_TOKEN_SIGNING_KEY',
    /private/,
  )
  const p384 = await generateKeyPair('ES384', { extractable: true })
  await refused(
    { ...env, RUN_TOKEN_SIGNING_KEY: JSON.stringify(await exportJWK(p384.privateKey)) },
    'RUN_TOKEN_SIGNING_KEY',
    /P-256/,
  )
  const rsa = await generateKeyPair('RS256', { extractable: true })
  await refused(
    { ...env, RUN_TOKEN_SIGNING_KEY: JSON.stringify(await exportJWK(rsa.privateKey)) },
    'RUN_TOKEN_SIGNING_KEY',
  )
  // x/y of another key: the pair does not match.
  const other = await runSigningKey()
  const mixed = { ...priv, x: JSON.parse(other.json).x, y: JSON.parse(other.json).y }
  const e = await refused(
    { ...env, RUN_TOKEN_SIGNING_KEY: JSON.stringify(mixed) },
    'RUN_TOKEN_SIGNING_KEY',
  )
  assert(!e.message.includes(priv.d))
  await refused(
    { ...env, RUN_TOKEN_SIGNING_KEY: JSON.stringify({ ...priv, alg: 'HS256' }) },
    'RUN_TOKEN_SIGNING_KEY',
    /alg/,
  )
  await refused(
    { ...env, RUN_TOKEN_PREVIOUS_SIGNING_KEY: env.RUN_TOKEN_SIGNING_KEY },
    'RUN_TOKEN_PREVIOUS_SIGNING_KEY',
    /same kid/,
  )
  // Without a kid, the RFC 7638 thumbprint is the kid.
  const { kid: _kid, ...noKid } = priv
  const k = await importSigningKey(JSON.stringify(noKid), 'X', ['ES256'])
  assertMatch(k.kid, /^[A-Za-z0-9_-]{43}$/)
  assertEquals(Object.keys(k.publicJwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
  // A previous key may be public only; only its public part is published.
  const c = await loadConfig({
    ...env,
    RUN_TOKEN_PREVIOUS_SIGNING_KEY: JSON.stringify({ ...pub, kid: 'old' }),
  })
  assertEquals(c.publishedKeys.map((p) => p.kid), ['k1', 'old'])
})

Deno.test('loadConfig() in federated mode signs with the run key or its own RSA key', async () => {
  const env = await baseEnv()
  const { AZURE_CLIENT_SECRET: _s, ...base } = env
  const fed = await loadConfig({ ...base, AZURE_FEDERATED_SUBJECT: 'broker' })
  assert(fed.upstream.credential.kind === 'federated')
  assertEquals(fed.upstream.credential.audience, 'api://AzureADTokenExchange')
  assertEquals(fed.upstream.credential.key.kid, 'k1')
  const rsa = await generateKeyPair('RS256', { extractable: true })
  const own = await loadConfig({
    ...base,
    AZURE_FEDERATED_SUBJECT: 'broker',
    AZURE_FEDERATED_SIGNING_KEY: JSON.stringify({
      ...(await exportJWK(rsa.privateKey)),
      kid: 'fed',
    }),
  })
  assert(own.upstream.credential.kind === 'federated')
  assertEquals(own.upstream.credential.key.alg, 'RS256')
  // Both keys are published (Entra reads the federation key from the JWKS).
  assertEquals(own.publishedKeys.map((k) => [k.kid, k.alg]), [['k1', 'ES256'], ['fed', 'RS256']])
  const small = await crypto.subtle.generateKey(
    {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    true,
    ['sign', 'verify'],
  )
  await refused(
    {
      ...base,
      AZURE_FEDERATED_SUBJECT: 'broker',
      AZURE_FEDERATED_SIGNING_KEY: JSON.stringify(await exportJWK(small.privateKey)),
    },
    'AZURE_FEDERATED_SIGNING_KEY',
    /2048/,
  )
})

Deno.test('parsePolicy() refuses ambiguous or misspelt rules', () => {
  const bad: [unknown, RegExp][] = [
    [{ rule: [] }, /array of rules/],
    [[{ apiKey: 'a', issuer: ISSUER, subject: 'x' }], /exactly one caller/],
    [[{ audiences: ['ARM'] }], /exactly one caller/],
    [[{ apiKey: 'a', audience: ['ARM'] }], /unknown field "audience"/],
    [[{ apiKey: 'a', audiences: ['Graph'] }], /ARM and AZUREML/],
    [[{ apiKey: 'a', scopes: ['a b'] }], /no spaces/],
    [[{ issuer: 'https://other.example', subject: 'x' }], /CALLER_ISSUERS/],
    [[{ issuer: ISSUER }], /subject/],
    [[{ apiKey: 'a', runTokens: [{ subscriptionId: SUB }] }], /resourceGroupName/],
    [[{
      apiKey: 'a',
      runTokens: [{ subscriptionId: SUB, resourceGroupName: '*', workspaceName: '*', run: 'x' }],
    }], /unknown field "run"/],
    [[{ apiKey: 'a', runTokens: {} }], /array/],
  ]
  for (const [value, re] of bad) {
    const e = assertThrows(() => parsePolicy(value, [ISSUER]))
    assertInstanceOf(e, ConfigError)
    assertEquals(e.variable, 'POLICY')
    assertMatch(e.message, re)
  }
})

Deno.test('grantFor() is default deny and unions every matching rule', () => {
  const policy = parsePolicy(
    {
      rules: [
        { apiKey: 'ci', audiences: ['ARM'] },
        { apiKey: 'ci', scopes: ['https://storage.azure.com/.default'] },
        { issuer: ISSUER, subject: 'repo:contoso/*:ref:refs/heads/main', audiences: ['AZUREML'] },
        {
          issuer: ISSUER,
          subject: 'exact',
          runTokens: [{
            subscriptionId: SUB,
            resourceGroupName: 'ml-*',
            workspaceName: 'ws',
            experimentName: 'train',
          }],
        },
      ],
    },
    [ISSUER],
  )
  const ci = grantFor(policy, { apiKey: 'ci' })
  assertEquals([...ci.audiences], ['ARM'])
  assertEquals([...ci.scopes], ['https://storage.azure.com/.default'])
  assertEquals(ci.rules, ['rules[0]', 'rules[1]'])
  assertEquals(grantFor(policy, { apiKey: 'other' }).rules, [])
  assertEquals([
    ...grantFor(policy, { issuer: ISSUER, subject: 'repo:contoso/ml:ref:refs/heads/main' })
      .audiences,
  ], ['AZUREML'])
  assertEquals(
    grantFor(policy, { issuer: ISSUER, subject: 'repo:contoso/ml:ref:refs/heads/dev' }).rules,
    [],
  )
  assertEquals(grantFor(policy, { issuer: 'https://evil', subject: 'exact' }).rules, [])
  const exact = grantFor(policy, { issuer: ISSUER, subject: 'exact' })
  // The pattern pins the experiment by name only: a request may not add an unchecked id.
  const { experimentId: _id, ...byName } = RUN
  const run = { ...byName, resourceGroupName: 'ml-prod', workspaceName: 'ws' }
  assert(permitsRun(exact, run))
  assert(!permitsRun(exact, { ...run, experimentId: RUN.experimentId }))
  assert(!permitsRun(exact, { ...run, resourceGroupName: 'prod' }))
  assert(!permitsRun(exact, { ...run, experimentName: 'eval' }))
  // A pattern naming the experiment cannot match a request that only gives its id.
  const { experimentName: _n, ...byId } = { ...run, experimentId: RUN.experimentId }
  assert(!permitsRun(exact, byId))
  assert(!permitsRun(ci, run))
})

Deno.test('glob() treats only * as special', () => {
  assert(glob('a.b')('a.b'))
  assert(!glob('a.b')('axb'))
  assert(glob('repo:x/*')('repo:x/y/z'))
  assert(glob('*')(''))
  assert(glob('a*c')('ac'))
  assert(!glob('a*c')('acd'))
  assert(glob('(x)+[y]*')('(x)+[y]anything'))
  assert(!glob('^a$')('a'))
})

Deno.test('memoryLimiter() counts a fixed one-minute window per key', async () => {
  let t = 0
  const l = memoryLimiter(2, () => t)
  assertEquals(await l.limit('a'), { ok: true })
  assertEquals(await l.limit('a'), { ok: true })
  assertEquals(await l.limit('b'), { ok: true })
  t = 20_000
  assertEquals(await l.limit('a'), { ok: false, retryAfterSeconds: 40 })
  t = 60_000
  assertEquals(await l.limit('a'), { ok: true })
})

Deno.test('parseJsonc() keeps // inside strings and drops comments and trailing commas', () => {
  assertEquals(
    parseJsonc('{\n // c\n "a": "https://x/y", /* b */ "b": [1,2,],\n}'),
    { a: 'https://x/y', b: [1, 2] },
  )
})

Deno.test('wrangler.jsonc is web-standard, pinned and declares its secrets', async () => {
  const text = await Deno.readTextFile(
    new URL('../../../workers/token-broker/wrangler.jsonc', import.meta.url),
  )
  const c = parseJsonc(text) as Record<string, unknown>
  assertEquals(c.compatibility_date, '2026-07-30')
  assert(c.compatibility_flags === undefined, 'no compatibility flags (no nodejs_compat)')
  assert(!text.includes('"nodejs_compat'))
  assertEquals((c.secrets as { required: string[] }).required, [
    'AZURE_CLIENT_SECRET',
    'CALLER_API_KEYS',
    'RUN_TOKEN_SIGNING_KEY',
  ])
  // The policy and issuers in vars are valid configuration.
  const vars = c.vars as Record<string, unknown>
  const issuers = parseCallerIssuers(vars.CALLER_ISSUERS, String(vars.BROKER_ISSUER))
  parsePolicy(vars.POLICY, issuers.map((i) => i.issuer))
})
