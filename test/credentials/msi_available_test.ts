import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from '@std/assert'
import { CredentialUnavailableError } from '@aml-edge/auth'
import { _isCloudflareWorkers } from '../../src/env.ts'
import { _workersRefusal, MsiAuthentication } from '../../src/credentials/msi.ts'
import { _isLocalEndpoint } from '../../src/credentials/_msi_sources.ts'
import { delay, serveLoopback } from '../_fixtures/loopback.ts'
import { assertCode, EXP, msi, sourceEnv, tokenResponse } from './_msi_helpers.ts'

Deno.test('MsiAuthentication.isAvailable() is true for every env-detected source', async () => {
  const env = sourceEnv('http://127.0.0.1:9')
  for (const source of ['service-fabric', 'app-service', 'azure-arc', 'azure-ml', 'cloud-shell']) {
    assertEquals(await MsiAuthentication.isAvailable(env[source]!), true, source)
  }
  // IMDS named by the pod-identity variable
  assertEquals(await MsiAuthentication.isAvailable(env.imds!), true)
})

Deno.test('MsiAuthentication.isAvailable() without a probe is false for plain IMDS', async () => {
  assertEquals(await MsiAuthentication.isAvailable({}), false)
})

Deno.test('MsiAuthentication.isAvailable() is false for an invalid endpoint', async () => {
  for (
    const env of [
      { MSI_ENDPOINT: 'http://10.0.0.1/token' },
      { IDENTITY_ENDPOINT: 'not a url', IDENTITY_HEADER: 'h' },
      { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://example.com' },
    ]
  ) {
    assertEquals(await MsiAuthentication.isAvailable(env, { probe: true }), false)
  }
})

Deno.test('MsiAuthentication.isAvailable({ probe }) sends one GET without Metadata and takes 400 as yes', async () => {
  await using srv = serveLoopback(() =>
    Response.json(
      { error: 'invalid_request', error_description: 'Required metadata header not specified' },
      { status: 400 },
    )
  )
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: srv.origin }
  assertEquals(await MsiAuthentication.isAvailable(env, { probe: true }), true)
  assertEquals(srv.requests.length, 1)
  const r = srv.requests[0]!
  assertEquals(r.method, 'GET')
  assertEquals(r.url.pathname, '/metadata/identity/oauth2/token')
  assertEquals(r.url.search, '')
  assertEquals(r.headers.get('metadata'), null)
})

Deno.test('MsiAuthentication.isAvailable({ probe }) is false for a proxy 403 "unreachable"', async () => {
  await using srv = serveLoopback(() =>
    new Response('A socket operation was attempted to an unreachable network.', { status: 403 })
  )
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: srv.origin }
  assertEquals(await MsiAuthentication.isAvailable(env, { probe: true }), false)
})

Deno.test('MsiAuthentication.isAvailable({ probe }) does not retry', async () => {
  await using srv = serveLoopback(() => new Response('busy', { status: 503 }))
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: srv.origin }
  assertEquals(await MsiAuthentication.isAvailable(env, { probe: true }), true)
  assertEquals(srv.requests.length, 1)
})

Deno.test('MsiAuthentication.isAvailable({ probe }) is false when nothing answers', async () => {
  const l = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (l.addr as Deno.NetAddr).port
  l.close()
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: `http://127.0.0.1:${port}` }
  assertEquals(await MsiAuthentication.isAvailable(env, { probe: true }), false)
})

Deno.test('MsiAuthentication.isAvailable({ probe }) gives up after timeoutMs', async () => {
  await using srv = serveLoopback(async (_r, _i, signal) => {
    await delay(30_000, signal)
    return new Response('late', { status: 400 })
  })
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: srv.origin }
  assertEquals(await MsiAuthentication.isAvailable(env, { probe: true, timeoutMs: 50 }), false)
})

Deno.test('MsiAuthentication.isAvailable({ probe }) uses the given fetch and signal', async () => {
  const seen: string[] = []
  const fetch = (input: string | URL | Request) => {
    seen.push(String(input))
    return Promise.resolve(new Response('{}', { status: 400 }))
  }
  assertEquals(await MsiAuthentication.isAvailable({}, { probe: true, fetch }), true)
  assertEquals(seen, ['http://169.254.169.254/metadata/identity/oauth2/token'])
  const aborted = AbortSignal.abort()
  assertEquals(
    await MsiAuthentication.isAvailable({}, { probe: true, fetch, signal: aborted }),
    false,
  )
})

Deno.test('MsiAuthentication.isAvailable() rejects a bad timeoutMs', async () => {
  await assertRejects(() => MsiAuthentication.isAvailable({}, { timeoutMs: -1 }), RangeError)
})

// ---- Cloudflare Workers ---------------------------------------------------------------------------

Deno.test('_isCloudflareWorkers() reads navigator.userAgent', () => {
  assertEquals(_isCloudflareWorkers('Cloudflare-Workers'), true)
  assertEquals(_isCloudflareWorkers('Deno/2.9.6'), false)
  assertEquals(_isCloudflareWorkers(undefined), false)
  assertEquals(_isCloudflareWorkers(), false) // this runtime is Deno
})

Deno.test('_isLocalEndpoint() knows loopback and link-local hosts', () => {
  for (
    const u of [
      'http://169.254.169.254/metadata/identity/oauth2/token',
      'http://169.254.1.2/x',
      'http://localhost:4141/msi/token',
      'http://127.0.0.1:40342/x',
      'http://[::1]:1/x',
      'http://[fe80::1]:1/x',
    ]
  ) assertEquals(_isLocalEndpoint(u), true, u)
  for (const u of ['https://10.0.0.4:2377/x', 'https://msi.example.com/t', 'nonsense']) {
    assertEquals(_isLocalEndpoint(u), false, u)
  }
})

Deno.test('_workersRefusal() points Workers to the token broker', () => {
  const e = _workersRefusal('imds', 'http://169.254.169.254/metadata/identity/oauth2/token', true)
  assertInstanceOf(e, CredentialUnavailableError)
  assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
  assertStringIncludes(e.message, 'workers/token-broker')
  assertStringIncludes(e.message, 'Cloudflare Workers')
  assertEquals(_workersRefusal('imds', 'http://169.254.169.254/x', false), undefined)
  assertEquals(_workersRefusal('service-fabric', 'https://sf.example.com/t', true), undefined)
})

/** Runs `fn` while `navigator.userAgent` says Cloudflare Workers. */
async function asWorkers(fn: () => Promise<void>): Promise<void> {
  Object.defineProperty(navigator, 'userAgent', { value: 'Cloudflare-Workers', configurable: true })
  try {
    assert(_isCloudflareWorkers())
    await fn()
  } finally {
    delete (navigator as { userAgent?: string }).userAgent
  }
  assert(!_isCloudflareWorkers())
}

Deno.test('MsiAuthentication on Cloudflare Workers refuses local endpoints at once, with no request', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  await asWorkers(async () => {
    for (const source of ['imds', 'app-service', 'azure-arc', 'azure-ml', 'cloud-shell']) {
      const env = sourceEnv(srv.origin)[source]!
      const e = await assertRejects(() => msi({ env }).getToken(), CredentialUnavailableError)
      assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
      assertStringIncludes(e.message, 'workers/token-broker')
      assertEquals(await MsiAuthentication.isAvailable(env), false)
    }
    const e = await assertRejects(() => msi().getToken(), CredentialUnavailableError)
    assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, 'IMDS')
  })
  assertEquals(srv.requests.length, 0)
})

Deno.test('MsiAuthentication on Cloudflare Workers still calls a remote https endpoint', async () => {
  const seen: string[] = []
  const fetch = (input: string | URL | Request) => {
    seen.push(String(input))
    return Promise.resolve(tokenResponse({ expires_on: EXP }))
  }
  await asWorkers(async () => {
    const env = {
      IDENTITY_ENDPOINT: 'https://identity.example.com/msi/token',
      IDENTITY_HEADER: 'h',
    }
    const t = await msi({ env, fetch }).getToken()
    assertEquals(t.token, 'mi-token')
  })
  assertEquals(seen.length, 1)
})
