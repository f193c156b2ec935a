// Regression tests of the token broker's security review: each test failed before its fix.
import { assert, assertEquals, assertMatch } from '@std/assert'
import { createApp } from '../../../workers/token-broker/src/index.ts'
import {
  glob,
  grantFor,
  parsePolicy,
  permitsRun,
} from '../../../workers/token-broker/src/policy.ts'
import { serveLoopback } from '../../_fixtures/loopback.ts'
import { brokerFixtures, EXPERIMENT_ID, post, RUN, SUB } from './_helpers.ts'

async function setup(o: { policy?: unknown; extra?: Record<string, unknown> } = {}) {
  const { entra, issuer, key, log, env } = await brokerFixtures(o)
  let clock = Date.now()
  const app = createApp({ log: log.sink, now: () => clock })
  const request = async (path: string, init: RequestInit = {}, e: object = env) => {
    const res = await app.request(path, init, e)
    const body = await res.text()
    return { res, body, json: body.startsWith('{') ? JSON.parse(body) : undefined }
  }
  return {
    entra,
    issuer,
    key,
    env,
    log,
    request,
    advance: (ms: number) => {
      clock += ms
    },
    async [Symbol.asyncDispose]() {
      await entra.close()
      await issuer.close()
    },
  }
}

const BASE =
  `/history/v1.0/subscriptions/${SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws`

Deno.test('glob() matches in linear time: many * against a hostile value cannot stall the isolate', () => {
  // With a backtracking RegExp, 6 stars against 500 characters take hours; here it is instant.
  const pattern = 'repo:' + Array(6).fill('*').join(':') + ':x'
  const hostile = 'repo:' + ':'.repeat(500)
  assert(!glob(pattern)(hostile))
  assert(glob(pattern)(hostile + 'x'))
  assert(!glob('*a*a*a*a*a*a*a*b')('a'.repeat(512)))
  // Same semantics as before: anchored, only * special, * matches anything including / and :.
  const cases: [string, string, boolean][] = [
    ['a*c', 'ac', true],
    ['a*c', 'abbbc', true],
    ['a*c', 'acd', false],
    ['*c', 'abc', true],
    ['a*', 'a/b:c', true],
    ['a*b*c', 'aXbYbZc', true],
    ['a*b*c', 'aXcYb', false],
    ['**', '', true],
    ['*.*', 'ab', false],
    ['(x)+[y]*', '(x)+[y]anything', true],
    ['^a$', 'a', false],
    ['a?', 'ab', false],
    ['A*', 'a', false],
  ]
  for (const [p, s, want] of cases) assertEquals(glob(p)(s), want, `${p} vs ${s}`)
})

Deno.test('a run pattern that pins the experiment name does not let a caller add any experiment id', async () => {
  const policy = parsePolicy(
    {
      rules: [
        {
          apiKey: 'ci',
          runTokens: [{
            subscriptionId: SUB,
            resourceGroupName: 'ml-rg',
            workspaceName: 'ml-ws',
            experimentName: 'train',
          }],
        },
        {
          apiKey: 'by-id',
          runTokens: [{
            subscriptionId: SUB,
            resourceGroupName: 'ml-rg',
            workspaceName: 'ml-ws',
            experimentId: EXPERIMENT_ID,
          }],
        },
        {
          apiKey: 'both',
          runTokens: [{
            subscriptionId: SUB,
            resourceGroupName: 'ml-rg',
            workspaceName: 'ml-ws',
            experimentName: 'train',
            experimentId: '*',
          }],
        },
      ],
    },
    [],
  )
  const { experimentId: _i, ...byName } = RUN
  const { experimentName: _n, ...byId } = RUN
  const secretExperiment = '0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f'
  const ci = grantFor(policy, { apiKey: 'ci' })
  assert(permitsRun(ci, byName))
  assert(!permitsRun(ci, { ...byName, experimentId: secretExperiment }))
  const idOnly = grantFor(policy, { apiKey: 'by-id' })
  assert(permitsRun(idOnly, byId))
  assert(!permitsRun(idOnly, { ...byId, experimentName: 'anything' }))
  // "*" given deliberately still allows any value of the other field.
  assert(
    permitsRun(grantFor(policy, { apiKey: 'both' }), { ...byName, experimentId: secretExperiment }),
  )

  // End to end: the minted token would otherwise carry (and refresh under) the other experiment.
  await using s = await setup({
    policy: {
      rules: [{
        apiKey: 'ci',
        runTokens: [{
          subscriptionId: SUB,
          resourceGroupName: 'ml-rg',
          workspaceName: 'ml-ws',
          experimentName: 'train',
        }],
      }],
    },
  })
  const h = { 'x-api-key': s.key.key }
  const smuggled = await s.request(
    '/run-tokens',
    post({ ...byName, experimentId: secretExperiment }, h),
  )
  assertEquals(smuggled.res.status, 403, smuggled.body)
  assertEquals(smuggled.json.error, 'access_denied')
  assertEquals((await s.request('/run-tokens', post(byName, h))).res.status, 200)
})

Deno.test('run-token requests refuse inherited property names as fields', async () => {
  await using s = await setup()
  const h = { 'x-api-key': s.key.key }
  for (const field of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    const body = JSON.stringify(RUN).replace(/^\{/, `{"${field}":{"x":1},`)
    const r = await s.request('/run-tokens', post(body, h))
    assertEquals(r.res.status, 400, `${field}: ${r.body}`)
    assertEquals(r.json.error, 'invalid_request')
    assertMatch(r.json.error_description, /Unknown field/)
  }
})

Deno.test('failed run-token refreshes count against the client address', async () => {
  await using s = await setup({ extra: { RATE_LIMIT_PER_MINUTE: '2' } })
  const path = `${BASE}/experiments/train/runs/${RUN.runId}/token`
  const ip = { 'cf-connecting-ip': '198.51.100.7' }
  const bogus = { ...ip, authorization: 'Bearer a.b.c' }
  assertEquals((await s.request(path, { headers: bogus })).res.status, 401)
  assertEquals((await s.request(path, { headers: ip })).res.status, 401)
  const limited = await s.request(path, { headers: bogus })
  assertEquals(limited.res.status, 429, limited.body)
  assertEquals(limited.json.error, 'rate_limited')
  assert(Number(limited.res.headers.get('retry-after')) >= 1)
  // Another address is not affected.
  const other = await s.request(path, {
    headers: { 'cf-connecting-ip': '198.51.100.8', authorization: 'Bearer a.b.c' },
  })
  assertEquals(other.res.status, 401)
})

Deno.test('an unavailable issuer JWKS is not fetched again for every forged token', async () => {
  let status = 503
  const jwks = serveLoopback(() =>
    status === 200 ? Response.json({ keys: [] }) : new Response('down', { status })
  )
  await using s = await setup()
  const env = {
    ...s.env,
    CALLER_ISSUERS: JSON.stringify([{
      issuer: s.issuer.issuer,
      jwksUrl: `${jwks.origin}/jwks`,
      audience: 'api://token-broker',
      algorithms: ['RS256'],
    }]),
  }
  try {
    const jwt = await s.issuer.sign({ sub: 'repo:contoso/ml:x' })
    const call = () =>
      s.request('/token', post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }), env)
    for (let i = 0; i < 5; i++) {
      const r = await call()
      assertEquals(r.res.status, 502, r.body)
      assertEquals(r.json.error, 'upstream_error')
    }
    assertEquals(jwks.requests.length, 1, 'one fetch per failure cool-down')
    // After the cool-down the issuer is asked again.
    s.advance(11_000)
    status = 200
    const again = await call()
    assertEquals(again.res.status, 401, again.body)
    assertEquals(jwks.requests.length, 2)
  } finally {
    await jwks.close()
  }
})

Deno.test('a token-chosen kid cannot make a reachable issuer look unavailable', async () => {
  await using s = await setup()
  const call = (jwt: string) =>
    s.request('/token', post({ audience: 'AZUREML' }, { authorization: `Bearer ${jwt}` }))
  const bad = await s.issuer.sign({ sub: 'repo:contoso/ml:x' }, { kid: 'no-such-kid' })
  assertEquals((await call(bad)).res.status, 401)
  const good = await s.issuer.sign({ sub: 'repo:contoso/ml:x' })
  const r = await call(good)
  assertEquals(r.res.status, 200, r.body)
})
