import { assert, assertEquals, assertExists, assertStringIncludes } from '@std/assert'
import { base64url, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import {
  chainKeyPem,
  chainPem,
  rsa2048CertPem,
  rsa2048KeyPem,
  rsa4096CertPem,
  rsa4096KeyPem,
} from '../../_fixtures/certs.ts'
import { ARM_SCOPE, assertEntraError, JWT_BEARER, postForm, verifyToken } from './_helpers.ts'
import { signAssertion, thumbprints } from './_helpers.ts'

const CERT_CLIENT = 'e0000000-0000-4000-8000-0000000000c1'
const FED_CLIENT = 'e0000000-0000-4000-8000-0000000000f1'

Deno.test('Entra certificate client assertions are checked as Entra checks them', async (t) => {
  await using emu = await startEmulator({
    config: {
      clients: [{
        clientId: CERT_CLIENT,
        tenantId: DEMO.tenantId,
        certificates: [rsa2048CertPem, chainPem, rsa4096CertPem],
      }],
    },
  })
  const endpoint = emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)
  const send = async (assertion: string, extra: Record<string, string> = {}) =>
    await postForm(endpoint, {
      grant_type: 'client_credentials',
      client_id: CERT_CLIENT,
      scope: ARM_SCOPE,
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
      ...extra,
    })
  const base = {
    keyPem: rsa2048KeyPem,
    certPem: rsa2048CertPem,
    clientId: CERT_CLIENT,
    audience: endpoint,
  }

  await t.step('PS256 + x5t#S256 is accepted (appidacr 2)', async () => {
    const res = await send(await signAssertion(base))
    assertEquals(res.status, 200, JSON.stringify(res.body))
    const claims = await verifyToken(emu, String(res.body.access_token), DEMO.tenantId)
    assertEquals(claims.appid, CERT_CLIENT)
    assertEquals(claims.appidacr, '2')
  })

  await t.step('RS256 + x5t (SHA-1) is accepted', async () => {
    const res = await send(await signAssertion({ ...base, alg: 'RS256' }))
    assertEquals(res.status, 200, JSON.stringify(res.body))
  })

  await t.step('a CA-issued leaf with x5c, and an RSA-4096 key, are accepted', async () => {
    const x5c = [...chainPem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END/g)].map((m) =>
      m[1]!.replace(/\s+/g, '')
    )
    const chain = await send(
      await signAssertion({ ...base, keyPem: chainKeyPem, certPem: chainPem, header: { x5c } }),
    )
    assertEquals(chain.status, 200, JSON.stringify(chain.body))
    const big = await send(
      await signAssertion({ ...base, keyPem: rsa4096KeyPem, certPem: rsa4096CertPem }),
    )
    assertEquals(big.status, 200, JSON.stringify(big.body))
  })

  await t.step('the domain-name token endpoint is also a valid audience', async () => {
    const res = await send(
      await signAssertion({
        ...base,
        audience: emu.url(`/${DEMO.tenantDomain}/oauth2/v2.0/token`),
      }),
    )
    assertEquals(res.status, 200, JSON.stringify(res.body))
  })

  await t.step('a signature by another key: AADSTS700027', async () => {
    const forged = await signAssertion({ ...base, keyPem: rsa4096KeyPem }) // thumbprint of 2048 cert
    const res = await send(forged)
    assertEntraError(res, 401, 'invalid_client', 700027)
    assertStringIncludes(String(res.body.error_description), 'signature')
  })

  await t.step('a tampered payload: AADSTS700027', async () => {
    const [h, p, s] = (await signAssertion(base)).split('.')
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p!)))
    claims.jti = crypto.randomUUID()
    const tampered = `${h}.${base64url.encode(JSON.stringify(claims))}.${s}`
    assertEntraError(await send(tampered), 401, 'invalid_client', 700027)
  })

  await t.step('an unregistered thumbprint: AADSTS700027 naming it', async () => {
    const other = await thumbprints(
      chainPem.split('-----END CERTIFICATE-----')[1]! + '-----END CERTIFICATE-----',
    )
    const res = await send(await signAssertion({ ...base, header: { 'x5t#S256': other.x5tS256 } }))
    assertEntraError(res, 401, 'invalid_client', 700027)
    assertStringIncludes(String(res.body.error_description), other.x5tS256)
  })

  await t.step('no thumbprint header: AADSTS700027', async () => {
    assertEntraError(
      await send(await signAssertion({ ...base, omitThumbprint: true })),
      401,
      'invalid_client',
      700027,
    )
  })

  await t.step('aud not the token endpoint: AADSTS700023', async () => {
    const res = await send(
      await signAssertion({
        ...base,
        audience: 'https://login.microsoftonline.com/x/oauth2/v2.0/token',
      }),
    )
    assertEntraError(res, 401, 'invalid_client', 700023)
  })

  await t.step('iss or sub not the client id: AADSTS700021', async () => {
    assertEntraError(
      await send(await signAssertion({ ...base, claims: { iss: DEMO.clientId } })),
      401,
      'invalid_client',
      700021,
    )
    assertEntraError(
      await send(await signAssertion({ ...base, claims: { sub: 'someone' } })),
      401,
      'invalid_client',
      700021,
    )
  })

  await t.step('expired, or not yet valid: AADSTS700024', async () => {
    const now = Math.floor(Date.now() / 1000)
    const expired = await send(
      await signAssertion({ ...base, claims: { nbf: now - 1800, exp: now - 900 } }),
    )
    assertEntraError(expired, 401, 'invalid_client', 700024)
    assertStringIncludes(String(expired.body.error_description), 'not within its valid time range')
    const early = await send(
      await signAssertion({ ...base, claims: { nbf: now + 900, exp: now + 1500 } }),
    )
    assertEntraError(early, 401, 'invalid_client', 700024)
    const noExp = await send(await signAssertion({ ...base, claims: { exp: undefined } }))
    assertEntraError(noExp, 401, 'invalid_client', 700024)
  })

  await t.step(
    'a replayed jti: AADSTS700021 (emulator choice), the first use succeeds',
    async () => {
      const assertion = await signAssertion(base)
      assertEquals((await send(assertion)).status, 200)
      const again = await send(assertion)
      assertEntraError(again, 401, 'invalid_client', 700021)
      assertStringIncludes(String(again.body.error_description), 'jti')
    },
  )

  await t.step(
    'missing jti, malformed JWT, wrong assertion type: AADSTS50027 / 900144',
    async () => {
      assertEntraError(
        await send(await signAssertion({ ...base, claims: { jti: undefined } })),
        400,
        'invalid_request',
        50027,
      )
      assertEntraError(await send('not-a-jwt'), 400, 'invalid_request', 50027)
      assertEntraError(
        await send(await signAssertion(base), { client_assertion_type: 'jwt' }),
        400,
        'invalid_request',
        50027,
      )
      const res = await postForm(endpoint, {
        grant_type: 'client_credentials',
        client_id: CERT_CLIENT,
        scope: ARM_SCOPE,
        client_assertion: await signAssertion(base),
      })
      assertEntraError(res, 400, 'invalid_request', 900144)
    },
  )

  await t.step('an unsupported alg: AADSTS700027', async () => {
    const hs = await new SignJWT({
      iss: CERT_CLIENT,
      sub: CERT_CLIENT,
      aud: endpoint,
      jti: 'x',
      exp: 9999999999,
    })
      .setProtectedHeader(
        { alg: 'HS256', 'x5t#S256': (await thumbprints(rsa2048CertPem)).x5tS256 } as {
          alg: string
        },
      )
      .sign(new Uint8Array(32))
    assertEntraError(await send(hs), 401, 'invalid_client', 700027)
  })

  await t.step('a secret sent to a certificate-only client: AADSTS7000215', async () => {
    const res = await postForm(endpoint, {
      grant_type: 'client_credentials',
      client_id: CERT_CLIENT,
      scope: ARM_SCOPE,
      client_secret: 'guess',
    })
    assertEntraError(res, 401, 'invalid_client', 7000215)
  })

  await t.step(
    'the log keeps the decoded assertion header and claims, never the signature',
    async () => {
      const assertion = await signAssertion(base)
      await send(assertion)
      const entry = emu.requests({ route: 'entra.token' }).at(-1)!
      assertEquals(entry.form?.client_assertion, '[redacted]')
      assertExists(entry.assertion)
      assertEquals(entry.assertion.header.alg, 'PS256')
      assertEquals(entry.assertion.claims.iss, CERT_CLIENT)
      assertEquals(entry.assertion.claims.aud, endpoint)
      const signature = assertion.split('.')[2]!
      assert(!JSON.stringify(emu.requests()).includes(signature))
    },
  )
})

Deno.test('Entra federated client assertions (workload identity style)', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k8s-1', alg: 'RS256', use: 'sig' }
  const issuer = 'https://oidc.example.test/cluster'
  const subject = 'system:serviceaccount:default:workload'
  await using emu = await startEmulator({
    config: {
      clients: [{
        clientId: FED_CLIENT,
        federatedCredentials: [{ issuer, subject, jwks: { keys: [jwk] } }],
      }],
    },
  })
  const endpoint = emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)
  const fed = (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({
      iss: issuer,
      sub: subject,
      aud: 'api://AzureADTokenExchange',
      iat: now,
      exp: now + 3600,
      ...claims,
    })
      .setProtectedHeader({ alg: 'RS256', kid: 'k8s-1' })
      .sign(privateKey)
  }
  const send = async (assertion: string) =>
    await postForm(endpoint, {
      grant_type: 'client_credentials',
      client_id: FED_CLIENT,
      scope: ARM_SCOPE,
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
    })

  await t.step('a matching federated assertion is accepted, and may be reused', async () => {
    const a = await fed()
    assertEquals((await send(a)).status, 200)
    assertEquals((await send(a)).status, 200)
  })

  await t.step('an unknown subject: AADSTS70021', async () => {
    const res = await send(await fed({ sub: 'system:serviceaccount:other:x' }))
    assertEntraError(res, 400, 'invalid_client', 70021)
  })

  await t.step('an expired federated token: AADSTS700024', async () => {
    const now = Math.floor(Date.now() / 1000)
    assertEntraError(
      await send(await fed({ iat: now - 7200, exp: now - 3600 })),
      401,
      'invalid_client',
      700024,
    )
  })
})
