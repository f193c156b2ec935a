// The broker's upstream identity modes other than a client secret (which the other files use):
// - federated: the broker signs its own client assertion (iss = its issuer URL, sub = the
//   configured subject, aud = api://AzureADTokenExchange), checked against the identity emulator
//   (a federated credential holding the broker's public key) and against a loopback token server
//   that, as Entra does, discovers the broker's keys through /.well-known/openid-configuration;
// - certificate: one PEM secret with the key and the chain, a PS256 assertion.
import { assert, assertEquals, assertMatch } from '@std/assert'
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { createApp } from '../../../workers/token-broker/src/index.ts'
import {
  DEMO_FEDERATED_CLIENT_ID,
  DEMO_FEDERATED_SUBJECT,
  demoSetup,
} from '../../../workers/token-broker/dev.ts'
import { serveLoopback } from '../../_fixtures/loopback.ts'
import { apiKey, findLeak, logSink, post, runSigningKey, TENANT } from './_helpers.ts'

Deno.test('federated mode gets tokens from the emulator with a self-signed assertion', async () => {
  await using emulator = await startEmulator()
  const brokerUrl = 'https://broker.example'
  const demo = await demoSetup(emulator, brokerUrl, { federated: true })
  const log = logSink()
  const app = createApp({ log: log.sink })
  const { TOKEN_CACHE_KEY: _k, ...bindings } = demo.bindings
  const r = await app.request(
    '/token',
    post({ audience: 'AZUREML' }, { 'x-api-key': demo.apiKey }),
    bindings,
  )
  const body = await r.json()
  assertEquals(r.status, 200, JSON.stringify(body))
  // What reached the emulator: a JWT-bearer assertion from the broker's issuer.
  const sent = emulator.requests({ route: 'entra.token' }).at(-1)!
  assertEquals(sent.form?.client_id, DEMO_FEDERATED_CLIENT_ID)
  assertEquals(
    sent.form?.client_assertion_type,
    'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  )
  assertEquals(sent.form?.client_secret, undefined)
  const { header, claims } = sent.assertion!
  assertEquals(header.alg, 'ES256')
  assertEquals(header.kid, demo.publicJwk.kid)
  assertEquals(claims.iss, brokerUrl)
  assertEquals(claims.sub, DEMO_FEDERATED_SUBJECT)
  assertEquals(claims.aud, 'api://AzureADTokenExchange')
  assertEquals((claims.exp as number) - (claims.iat as number), 300)
  assert(typeof claims.jti === 'string')
  // The token is an app token of the federated app.
  const jwks = createRemoteJWKSet(new URL(emulator.url(`/${DEMO.tenantId}/discovery/v2.0/keys`)))
  const { payload } = await jwtVerify(body.access_token, jwks, { audience: 'https://ml.azure.com' })
  assertEquals(payload.appid, DEMO_FEDERATED_CLIENT_ID)
  assertEquals(payload.appidacr, '2')

  // A subject the federated credential does not name: Entra refuses, the caller gets a 502.
  const wrong = await app.request(
    '/token',
    post({ audience: 'ARM' }, { 'x-api-key': demo.apiKey }),
    { ...bindings, AZURE_FEDERATED_SUBJECT: 'someone-else' },
  )
  const wrongBody = await wrong.json()
  assertEquals([wrong.status, wrongBody.error], [502, 'upstream_error'])
  assertMatch(wrongBody.error_description, /AADSTS70021/)
  assert(!JSON.stringify(wrongBody).includes('someone-else'))
  assertEquals(
    findLeak(log.lines, [
      demo.apiKey,
      JSON.parse(demo.bindings.RUN_TOKEN_SIGNING_KEY!).d,
      body.access_token,
    ]),
    undefined,
  )
})

Deno.test('federated mode: a token server discovers the broker keys as Entra does', async () => {
  // The broker on real loopback HTTP, so that its issuer URL can be fetched.
  const app = createApp({ log: () => {} })
  const runKey = await runSigningKey('run-1')
  const rsa = await generateKeyPair('RS256', { extractable: true })
  const fedKey = JSON.stringify({ ...(await exportJWK(rsa.privateKey)), kid: 'fed-1' })
  const key = await apiKey()
  let env: Record<string, string> = {}
  const broker = Deno.serve(
    { hostname: '127.0.0.1', port: 0, onListen() {} },
    (req) => app.fetch(req, env),
  )
  const issuer = `http://127.0.0.1:${broker.addr.port}`
  const seen: { iss?: unknown; sub?: unknown; alg?: unknown; kid?: unknown } = {}
  // Entra's side: find the issuer's JWKS through discovery, verify the assertion.
  await using tokenServer = serveLoopback(async (req) => {
    const assertion = req.form.get('client_assertion') ?? ''
    try {
      const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()
      assertEquals(discovery.issuer, issuer)
      const { payload, protectedHeader } = await jwtVerify(
        assertion,
        createRemoteJWKSet(new URL(discovery.jwks_uri)),
        { issuer, audience: 'api://AzureADTokenExchange', subject: 'broker-sub', maxTokenAge: 600 },
      )
      Object.assign(seen, {
        iss: payload.iss,
        sub: payload.sub,
        alg: protectedHeader.alg,
        kid: protectedHeader.kid,
      })
      return Response.json({ token_type: 'Bearer', expires_in: 3600, access_token: 'federated-at' })
    } catch {
      return Response.json({ error: 'invalid_client', error_codes: [700024] }, { status: 400 })
    }
  })
  env = {
    BROKER_ISSUER: issuer,
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: DEMO_FEDERATED_CLIENT_ID,
    AZURE_FEDERATED_SUBJECT: 'broker-sub',
    AZURE_FEDERATED_SIGNING_KEY: fedKey,
    AZURE_AUTHORITY_HOST: tokenServer.origin,
    RUN_TOKEN_SIGNING_KEY: runKey.json,
    CALLER_API_KEYS: JSON.stringify({ ci: key.hash }),
    POLICY: JSON.stringify([{ apiKey: 'ci', audiences: ['ARM'] }]),
  }
  try {
    const res = await fetch(`${issuer}/token`, post({ audience: 'ARM' }, { 'x-api-key': key.key }))
    const body = await res.json()
    assertEquals(res.status, 200, JSON.stringify(body))
    assertEquals(body.access_token, 'federated-at')
    assertEquals(seen, { iss: issuer, sub: 'broker-sub', alg: 'RS256', kid: 'fed-1' })
    // Both keys are published; the federation key is never accepted for run tokens.
    const jwks = await (await fetch(`${issuer}/.well-known/jwks.json`)).json()
    assertEquals(jwks.keys.map((k: { kid: string; alg: string }) => [k.kid, k.alg]), [
      ['run-1', 'ES256'],
      ['fed-1', 'RS256'],
    ])
    assert(jwks.keys.every((k: Record<string, unknown>) => k.d === undefined && k.p === undefined))
    const oidc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()
    assertEquals(oidc.id_token_signing_alg_values_supported, ['ES256', 'RS256'])
    // This caller has no run-token permission: default deny.
    const run = await fetch(
      `${issuer}/run-tokens`,
      post({
        subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
        resourceGroupName: 'rg',
        workspaceName: 'ws1',
        experimentName: 'e',
        runId: 'r',
      }, { 'x-api-key': key.key }),
    )
    assertEquals([run.status, (await run.json()).error], [403, 'access_denied'])
  } finally {
    await broker.shutdown()
  }
})

Deno.test('certificate mode signs a PS256 assertion the emulator accepts (one PEM secret)', async () => {
  const { rsa2048CertPem, rsa2048KeyPem, chainKeyPem, chainPem } = await import(
    '../../_fixtures/certs.ts'
  )
  const clientId = 'c0ffee00-1111-4222-8333-444455556666'
  await using emulator = await startEmulator({
    config: {
      clients: [{
        clientId,
        tenantId: DEMO.tenantId,
        certificates: [rsa2048CertPem, chainPem],
      }],
    },
  })
  const key = await apiKey()
  const runKey = await runSigningKey()
  const log = logSink()
  const app = createApp({ log: log.sink })
  const env = (pem: string, chain = false) => ({
    BROKER_ISSUER: 'https://broker.example',
    AZURE_TENANT_ID: DEMO.tenantId,
    AZURE_CLIENT_ID: clientId,
    AZURE_CLIENT_CERTIFICATE: pem,
    ...(chain ? { AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: 'true' } : {}),
    AZURE_AUTHORITY_HOST: emulator.origin,
    RUN_TOKEN_SIGNING_KEY: runKey.json,
    CALLER_API_KEYS: JSON.stringify({ ci: key.hash }),
    POLICY: JSON.stringify([{ apiKey: 'ci', audiences: ['ARM', 'AZUREML'] }]),
  })
  // Key first or certificate first, in one secret: both work.
  for (
    const [pem, chain] of [[rsa2048KeyPem + rsa2048CertPem, false], [
      chainPem + chainKeyPem,
      true,
    ]] as const
  ) {
    const res = await app.request(
      '/token',
      post({ audience: 'ARM' }, { 'x-api-key': key.key }),
      env(pem, chain),
    )
    const body = await res.json()
    assertEquals(res.status, 200, JSON.stringify(body))
    const sent = emulator.requests({ route: 'entra.token' }).at(-1)!
    assertEquals(sent.assertion?.header.alg, 'PS256')
    assert(typeof sent.assertion?.header['x5t#S256'] === 'string')
    assertEquals(Array.isArray(sent.assertion?.header.x5c), chain)
    assertEquals(sent.assertion?.claims.iss, clientId)
  }
  assertEquals(
    findLeak(log.lines, [rsa2048KeyPem.slice(40, 120), chainKeyPem.slice(40, 120), key.key]),
    undefined,
  )
})
