import {
  assert,
  assertEquals,
  assertExists,
  assertFalse,
  assertInstanceOf,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import { exportJWK, generateKeyPair, importX509, jwtVerify, SignJWT } from 'jose'
import { DEMO, type RunningEmulator, startEmulator } from '../../workers/emulator/serve.ts'
import {
  clientCertificate,
  type ClientCertificateInput,
  ServicePrincipalAuthentication,
  type ServicePrincipalAuthenticationOptions,
} from '../../src/credentials/service_principal.ts'
import { servicePrincipalFromEnvironment } from '../../src/credentials/service_principal_env.ts'
import { AmlAuthError, AuthenticationError, CredentialUnavailableError } from '../../src/errors.ts'
import {
  buildTokenRequest,
  entraAdvice,
  entraEndpoint,
  requestEntraToken,
  requestEntraTokenResult,
  SECRET_FORM_FIELDS,
} from '../../src/_entra.ts'
import { _httpContext } from '../../src/http.ts'
import { createTokenCache } from '../../src/token_cache.ts'
import { _decodeJwt } from '../../src/jwt.ts'
import type { Cloud } from '../../src/clouds.ts'
import { fakeClock, serveLoopback } from '../_fixtures/loopback.ts'
import {
  caCertPem,
  chainKeyPem,
  chainPem,
  rsa2048CertPem,
  rsa2048EncryptedPem,
  rsa2048KeyPem,
  rsa2048Pfx,
  rsa2048Pkcs1Pem,
  rsa4096CertPem,
  rsa4096KeyPem,
} from '../_fixtures/certs.ts'

// ---------------------------------------------------------------------------------------------
// Fixtures

const TENANT = DEMO.tenantId
const CERT_CLIENT = '6f1e2d3c-4b5a-4697-8887-1a2b3c4d5e6f'
const CERT4096_CLIENT = '7a1e2d3c-4b5a-4697-8887-1a2b3c4d5e70'
const CHAIN_CLIENT = '8b1e2d3c-4b5a-4697-8887-1a2b3c4d5e71'
const FED_CLIENT = '9c1e2d3c-4b5a-4697-8887-1a2b3c4d5e72'
const FED_ISSUER = 'https://oidc.k8s.example/issuer'
const FED_SUBJECT = 'system:serviceaccount:ml:trainer'
const FED_AUDIENCE = 'api://AzureADTokenExchange'
const ARM_SCOPE = 'https://management.core.windows.net//.default'
const AML_SCOPE = 'https://ml.azure.com/.default'
/** base64url(SHA-256(DER)) of rsa2048.cert.pem, from `openssl x509 -outform der | openssl dgst -sha256`. */
const RSA2048_X5T_S256 = 'UtNR9iNTOJH3EEL20QWluEREijMgnaTaU5UNyfTldEQ'

const fedKeys = await generateKeyPair('RS256', { extractable: true })
const fedJwk = { ...(await exportJWK(fedKeys.publicKey)), kid: 'k8s-1', alg: 'RS256', use: 'sig' }

/** A federated token as a Kubernetes issuer would project it. */
function federatedToken(nowMs: number, jti: string): Promise<string> {
  const iat = Math.floor(nowMs / 1000)
  return new SignJWT({ jti })
    .setProtectedHeader({ alg: 'RS256', kid: 'k8s-1' })
    .setIssuer(FED_ISSUER)
    .setSubject(FED_SUBJECT)
    .setAudience(FED_AUDIENCE)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + 3600)
    .sign(fedKeys.privateKey)
}

function emulator(now?: () => number): Promise<RunningEmulator> {
  return startEmulator({
    config: {
      clients: [
        {
          clientId: CERT_CLIENT,
          tenantId: TENANT,
          certificates: [rsa2048CertPem],
          multiTenant: true,
        },
        { clientId: CERT4096_CLIENT, tenantId: TENANT, certificates: [rsa4096CertPem] },
        { clientId: CHAIN_CLIENT, tenantId: TENANT, certificates: [chainPem] },
        {
          clientId: FED_CLIENT,
          tenantId: TENANT,
          federatedCredentials: [{
            issuer: FED_ISSUER,
            subject: FED_SUBJECT,
            audiences: [FED_AUDIENCE],
            jwks: { keys: [fedJwk as JsonWebKey] },
          }],
        },
      ],
    },
    ...(now ? { now } : {}),
  })
}

type Extra = Partial<ServicePrincipalAuthenticationOptions>

function secretCredential(emu: RunningEmulator, extra: Extra = {}): ServicePrincipalAuthentication {
  return new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: DEMO.clientId,
    servicePrincipalPassword: DEMO.clientSecret,
    authorityHost: emu.origin,
    env: {},
    cache: createTokenCache(),
    ...extra,
  } as ServicePrincipalAuthenticationOptions)
}

function certCredential(
  emu: RunningEmulator | { origin: string },
  extra: Extra = {},
): ServicePrincipalAuthentication {
  return new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: CERT_CLIENT,
    certificate: clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem }),
    authorityHost: emu.origin,
    env: {},
    cache: createTokenCache(),
    ...extra,
  } as ServicePrincipalAuthenticationOptions)
}

function tokenRequests(emu: RunningEmulator) {
  return emu.requests({ route: 'entra.token' })
}

/** Standard base64 of each certificate in a PEM text: its body lines joined. */
function pemBodies(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)]
    .map((m) => m[1]!.replace(/\s+/g, ''))
}

const PEM_BODY_SAMPLE = rsa2048KeyPem.split('\n')[5]!

/** Fails when a secret shows in any view of a value. */
function assertHidden(value: unknown, secrets: readonly string[]): void {
  const views = [
    String(value),
    JSON.stringify(value) ?? '',
    Deno.inspect(value, { depth: 10, showHidden: true }),
  ]
  if (value instanceof Error) {
    views.push(value.message, value.stack ?? '', Deno.inspect(value.cause, { depth: 10 }))
  }
  for (const secret of secrets) {
    for (const v of views) assertFalse(v.includes(secret), `secret leaked in: ${v.slice(0, 300)}`)
  }
}

const SECRETS = [DEMO.clientSecret, PEM_BODY_SAMPLE]

function noFetch(): never {
  throw new Error('the constructor must not do I/O')
}

// ---------------------------------------------------------------------------------------------
// Construction

Deno.test('ServicePrincipalAuthentication() validates options without I/O', () => {
  const base = {
    tenantId: TENANT,
    servicePrincipalId: DEMO.clientId,
    servicePrincipalPassword: 's3cret-value',
    env: {},
    fetch: noFetch,
  }
  const make = (o: Record<string, unknown>) => () =>
    new ServicePrincipalAuthentication({ ...base, ...o } as ServicePrincipalAuthenticationOptions)
  const cases: [Record<string, unknown>, string][] = [
    [{ tenantId: 'not a tenant!' }, 'tenantId must be a tenant GUID or domain'],
    [{ tenantId: undefined }, 'tenantId must be'],
    [{ tenantId: 'organizations' }, "not 'organizations'"],
    [{ tenantId: 'common' }, "not 'common'"],
    [{ servicePrincipalId: '' }, 'servicePrincipalId must be a non-empty string'],
    [{ servicePrincipalId: 'a b' }, 'servicePrincipalId must be the application (client) id'],
    [{ servicePrincipalPassword: '' }, 'servicePrincipalPassword must be a non-empty string'],
    [{ authorityHost: 'http://login.example.com' }, 'authorityHost must use https'],
    [{ authorityHost: 'not a url' }, 'authorityHost is not a valid URL'],
    [{ authorityHost: 'https://login.example.com/?x=1' }, 'no token endpoint, query or fragment'],
    [{ authorityHost: 'https://login.example.com/#f' }, 'no token endpoint, query or fragment'],
    [
      { authorityHost: `https://login.example.com/${TENANT}/oauth2/v2.0/token` },
      'authorityHost must be the authority host',
    ],
    [{ additionallyAllowedTenants: 'x' }, 'additionallyAllowedTenants must be an array'],
    [{ additionallyAllowedTenants: ['ok.example', 'bad tenant'] }, 'additionallyAllowedTenants[1]'],
    [
      { clientAssertion: 'jwt', servicePrincipalPassword: undefined },
      'clientAssertion must be a function',
    ],
  ]
  for (const [o, text] of cases) {
    const e = assertThrows(make(o), TypeError)
    assertStringIncludes(e.message, text)
    assertHidden(e, ['s3cret-value'])
  }
  // Plain http is fine for loopback (emulators), and the authority defaults to the cloud's.
  make({ authorityHost: 'http://127.0.0.1:1/' })()
  assertStringIncludes(String(make({})()), 'authorityHost=https://login.microsoftonline.com')
  assertStringIncludes(
    String(make({ cloud: 'AzureChinaCloud' })()),
    'authorityHost=https://login.chinacloudapi.cn',
  )
})

Deno.test('ServicePrincipalAuthentication() requires exactly one client credential, naming them', () => {
  const base = { tenantId: TENANT, servicePrincipalId: DEMO.clientId, env: {} }
  const none = assertThrows(
    () => new ServicePrincipalAuthentication(base as ServicePrincipalAuthenticationOptions),
    TypeError,
  )
  assertStringIncludes(
    none.message,
    'exactly one client credential: servicePrincipalPassword, certificate, clientAssertion (none was given)',
  )
  const two = assertThrows(
    () =>
      new ServicePrincipalAuthentication({
        ...base,
        servicePrincipalPassword: 'p4ssw0rd-value',
        certificate: clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem }),
      }),
    TypeError,
  )
  assertStringIncludes(two.message, '(got servicePrincipalPassword and certificate)')
  assertHidden(two, ['p4ssw0rd-value', PEM_BODY_SAMPLE])
  const three = assertThrows(
    () =>
      new ServicePrincipalAuthentication({
        ...base,
        servicePrincipalPassword: 'x',
        clientAssertion: () => 'a',
        certificate: clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem }),
      }),
    TypeError,
  )
  assertStringIncludes(
    three.message,
    'servicePrincipalPassword and certificate and clientAssertion',
  )
})

Deno.test('ServicePrincipalAuthentication() refuses encrypted keys and PFX with the openssl command', () => {
  const make = (privateKey: unknown, certificate: unknown = rsa2048CertPem) => () =>
    new ServicePrincipalAuthentication({
      tenantId: TENANT,
      servicePrincipalId: CERT_CLIENT,
      certificate: clientCertificate({ privateKey, certificate } as ClientCertificateInput),
      env: {},
      fetch: noFetch,
    })
  const enc = assertThrows(make(rsa2048EncryptedPem), TypeError)
  assertStringIncludes(enc.message, 'certificate.privateKey is encrypted')
  assertStringIncludes(enc.message, 'openssl pkcs8 -topk8 -nocrypt')
  assertHidden(enc, [rsa2048EncryptedPem.split('\n')[3]!])
  const pfxBase64 = btoa(String.fromCharCode(...rsa2048Pfx))
  for (
    const [key, cert] of [
      [rsa2048Pfx, rsa2048CertPem],
      [pfxBase64, rsa2048CertPem],
      [rsa2048KeyPem, pfxBase64],
      [rsa2048KeyPem, rsa2048Pfx],
    ]
  ) {
    const e = assertThrows(make(key, cert), TypeError)
    assertStringIncludes(e.message, 'PKCS#12 (PFX)')
    assertStringIncludes(e.message, 'openssl pkcs12 -in cert.pfx -nodes')
  }
})

Deno.test('ServicePrincipalAuthentication() checks the key belongs to the certificate', async () => {
  const make = (certificate: Record<string, unknown>) => () =>
    new ServicePrincipalAuthentication({
      tenantId: TENANT,
      servicePrincipalId: CERT_CLIENT,
      certificate: clientCertificate(certificate as unknown as ClientCertificateInput),
      env: {},
    })
  assertStringIncludes(
    assertThrows(make({ privateKey: rsa4096KeyPem, certificate: rsa2048CertPem }), TypeError)
      .message,
    'certificate.privateKey does not belong to the first certificate of certificate.certificate',
  )
  // The chain's key matches its leaf, not the CA certificate after it.
  make({ privateKey: chainKeyPem, certificate: chainPem })()
  assertThrows(
    make({
      privateKey: chainKeyPem,
      certificate: caCertPem,
    }),
    TypeError,
    'does not belong',
  )
  assertStringIncludes(
    assertThrows(make({ privateKey: rsa2048KeyPem, certificate: 'nope' }), TypeError).message,
    'certificate.certificate is not PEM text',
  )
  assertStringIncludes(
    assertThrows(
      make({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem, sendCertificateChain: 'yes' }),
      TypeError,
    ).message,
    'certificate.sendCertificateChain must be a boolean',
  )
  // CryptoKey input: a public key, an EC key, another size, a non-extractable RSASSA key.
  const pair = await crypto.subtle.generateKey(
    {
      name: 'RSA-PSS',
      hash: 'SHA-256',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    false,
    ['sign', 'verify'],
  )
  assertThrows(
    make({ privateKey: pair.publicKey, certificate: rsa2048CertPem }),
    TypeError,
    'must be a private key',
  )
  const ec = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
  ])
  assertThrows(
    make({ privateKey: ec.privateKey, certificate: rsa2048CertPem }),
    TypeError,
    'Microsoft Entra ID accepts RSA certificates only',
  )
  assertThrows(
    make({ privateKey: pair.privateKey, certificate: rsa4096CertPem }),
    TypeError,
    'certificate.privateKey does not belong to the first certificate of certificate.certificate',
  )
  const pkcs1v15 = await crypto.subtle.importKey(
    'pkcs8',
    await pkcs8Der(rsa2048KeyPem),
    { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  assertThrows(
    make({ privateKey: pkcs1v15, certificate: rsa2048CertPem }),
    TypeError,
    "must be an RSA-PSS SHA-256 signing key: import it with { name: 'RSA-PSS', hash: 'SHA-256' }",
  )
})

Deno.test('ServicePrincipalAuthentication() refuses a certificate not made by clientCertificate()', () => {
  const e = assertThrows(
    () =>
      new ServicePrincipalAuthentication({
        tenantId: TENANT,
        servicePrincipalId: CERT_CLIENT,
        certificate: { privateKey: rsa2048KeyPem, certificate: rsa2048CertPem } as never,
        env: {},
      }),
    TypeError,
  )
  assertStringIncludes(
    e.message,
    'certificate must be made by clientCertificate()',
  )
  assertHidden(e, [PEM_BODY_SAMPLE])
  assertThrows(
    () =>
      new ServicePrincipalAuthentication({
        tenantId: TENANT,
        servicePrincipalId: CERT_CLIENT,
        certificate: Object.freeze({ kind: 'certificate' as const }),
        env: {},
      }),
    TypeError,
    'clientCertificate',
  )
})

Deno.test('clientCertificate() validates at once and returns an opaque value', () => {
  const cert = clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem })
  assertEquals(JSON.stringify(cert), '{"kind":"certificate"}')
  assertHidden(cert, [PEM_BODY_SAMPLE, 'PRIVATE KEY'])
  assert(Object.isFrozen(cert))
  assertThrows(
    () => clientCertificate(null as unknown as ClientCertificateInput),
    TypeError,
    'certificate must be an object { privateKey, certificate }',
  )
  assertThrows(
    () => clientCertificate({ privateKey: rsa2048EncryptedPem, certificate: rsa2048CertPem }),
    TypeError,
    'certificate.privateKey is encrypted',
  )
  // One value may serve several credentials (the key is imported once for all).
  const make = (tenantId: string) =>
    new ServicePrincipalAuthentication({
      tenantId,
      servicePrincipalId: CERT_CLIENT,
      certificate: cert,
      env: {},
    })
  assertStringIncludes(String(make(TENANT)), 'credential=certificate')
  assertStringIncludes(String(make(DEMO.secondTenantId)), 'credential=certificate')
})

function pkcs8Der(pem: string): Promise<Uint8Array<ArrayBuffer>> {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')
  return Promise.resolve(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)))
}

// ---------------------------------------------------------------------------------------------
// Client secret

Deno.test('getToken() with a secret posts the exact client-credentials form, once per token', async () => {
  await using emu = await emulator()
  const auth = secretCredential(emu)
  const t1 = await auth.getToken()
  const t2 = await auth.getToken(ARM_SCOPE)
  assertEquals(t1, t2)
  const reqs = tokenRequests(emu)
  assertEquals(reqs.length, 1, 'first token = exactly one HTTP request, no discovery')
  assertEquals(emu.requests().length, 1)
  const r = reqs[0]!
  assertEquals(r.method, 'POST')
  assertEquals(r.path, `/${TENANT}/oauth2/v2.0/token`)
  assertEquals(r.form, {
    grant_type: 'client_credentials',
    client_id: DEMO.clientId,
    scope: ARM_SCOPE,
    client_secret: '[redacted]',
  })
  assertMatch(r.headers['content-type']!, /^application\/x-www-form-urlencoded/)
  assertMatch(r.headers['client-request-id']!, /^[0-9a-f-]{36}$/)
  const claims = _decodeJwt(t1.token)
  assertEquals(claims.aud, 'https://management.core.windows.net/')
  assertEquals(claims.tid, TENANT)
  assertEquals(r.status, 200)
})

Deno.test('getTokenForAudience() asks for the ARM and Azure ML scopes', async () => {
  await using emu = await emulator()
  const auth = secretCredential(emu)
  await auth.getTokenForAudience('ARM')
  const aml = await auth.getTokenForAudience('AZUREML')
  const header = await auth.getAzureMLAuthenticationHeader()
  assertEquals(header.Authorization, 'Bearer ' + aml.token)
  assertEquals(tokenRequests(emu).map((r) => r.form?.scope), [ARM_SCOPE, AML_SCOPE])
  assertEquals(_decodeJwt(aml.token).aud, 'https://ml.azure.com')
})

Deno.test('getToken() uses each cloud: built-in names and custom clouds on the emulator', async () => {
  await using emu = await emulator()
  const clouds: [Cloud | string, string, string][] = [
    [
      'AzureChinaCloud',
      'https://management.core.chinacloudapi.cn//.default',
      'https://ml.azure.cn/.default',
    ],
    [
      'AzureUSGovernment',
      'https://management.core.usgovcloudapi.net//.default',
      'https://ml.azure.us/.default',
    ],
    [
      {
        name: 'EmulatorChina',
        activeDirectory: emu.origin,
        resourceManager: emu.origin,
        activeDirectoryResourceId: 'https://management.core.chinacloudapi.cn/',
        amlResourceId: 'https://ml.azure.cn',
      },
      'https://management.core.chinacloudapi.cn//.default',
      'https://ml.azure.cn/.default',
    ],
    [
      {
        name: 'EmulatorUSGov',
        activeDirectory: emu.origin + '/',
        resourceManager: emu.origin,
        activeDirectoryResourceId: 'https://management.core.usgovcloudapi.net/',
        amlResourceId: 'https://ml.azure.us',
      },
      'https://management.core.usgovcloudapi.net//.default',
      'https://ml.azure.us/.default',
    ],
  ]
  for (const [cloud, arm, aml] of clouds) {
    emu.clearRequests()
    const custom = typeof cloud === 'object'
    // A custom cloud's activeDirectory is the authority; built-in clouds get the emulator here.
    const auth = secretCredential(emu, {
      cloud: cloud as Cloud,
      ...(custom ? { authorityHost: undefined } : {}),
    })
    const armToken = await auth.getToken()
    const amlToken = await auth.getTokenForAudience('AZUREML')
    assertEquals(tokenRequests(emu).map((r) => r.form?.scope), [arm, aml])
    assertEquals(_decodeJwt(armToken.token).aud, arm.slice(0, -'/.default'.length))
    assertEquals(_decodeJwt(amlToken.token).aud, aml.slice(0, -'/.default'.length))
  }
})

Deno.test('getToken() sends a CAE claims challenge in the form and bypasses the cache', async () => {
  await using emu = await emulator()
  const auth = secretCredential(emu)
  const plain = await auth.getToken()
  const claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
  const fresh = await auth.getToken(undefined, { claims })
  assert(fresh.token !== plain.token)
  const reqs = tokenRequests(emu)
  assertEquals(reqs.length, 2)
  assertEquals(reqs[1]!.form, {
    grant_type: 'client_credentials',
    client_id: DEMO.clientId,
    scope: ARM_SCOPE,
    client_secret: '[redacted]',
    claims,
  })
  assertEquals((await auth.getToken()).token, fresh.token, 'the new token replaces the cached one')
  assertEquals(tokenRequests(emu).length, 2)
})

Deno.test('getToken() passes several scopes space-joined and custom resources unchanged', async () => {
  await using emu = await emulator()
  const auth = secretCredential(emu)
  const e = await assertRejects(
    () => auth.getToken([AML_SCOPE, ARM_SCOPE]),
    AuthenticationError,
  )
  assertEquals(tokenRequests(emu)[0]!.form?.scope, [ARM_SCOPE, AML_SCOPE].sort().join(' '))
  assertEquals(e.errorCodes, [28000])
  assertStringIncludes(e.message, 'Ask for one resource per token')
  await auth.getToken('https://graph.microsoft.com/.default')
  assertEquals(tokenRequests(emu)[1]!.form?.scope, 'https://graph.microsoft.com/.default')
})

// ---------------------------------------------------------------------------------------------
// Certificates

function assertAssertion(
  emu: RunningEmulator,
  index: number,
  expect: { clientId: string; x5c?: string[]; nowS?: number; tenant?: string },
) {
  const r = tokenRequests(emu)[index]!
  assertEquals(
    r.form?.client_assertion_type,
    'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  )
  assertEquals(r.form?.client_assertion, '[redacted]')
  assertEquals(r.form?.client_secret, undefined)
  const a = r.assertion!
  assertExists(a)
  const expectedHeader: Record<string, unknown> = {
    alg: 'PS256',
    typ: 'JWT',
    'x5t#S256': a.header['x5t#S256'],
  }
  if (expect.x5c) expectedHeader.x5c = expect.x5c
  assertEquals(a.header, expectedHeader)
  assertEquals(a.claims.aud, `${emu.origin}/${expect.tenant ?? TENANT}/oauth2/v2.0/token`)
  assertEquals(a.claims.iss, expect.clientId)
  assertEquals(a.claims.sub, expect.clientId)
  assertMatch(
    String(a.claims.jti),
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  )
  const nbf = a.claims.nbf as number
  assertEquals(a.claims.iat, nbf)
  assertEquals(a.claims.exp, nbf + 600)
  if (expect.nowS !== undefined) assertEquals(nbf, expect.nowS)
  return a
}

Deno.test('certificate (RSA 2048, no chain): PS256 assertion with x5t#S256 the emulator accepts', async () => {
  const clock = fakeClock(Date.now())
  await using emu = await emulator(clock.now)
  const auth = certCredential(emu, { now: clock.now, sleep: clock.sleep })
  const token = await auth.getToken()
  assertEquals(_decodeJwt(token.token).appid ?? _decodeJwt(token.token).azp, CERT_CLIENT)
  const a = assertAssertion(emu, 0, {
    clientId: CERT_CLIENT,
    nowS: Math.floor(clock.now() / 1000),
  })
  assertEquals(a.header['x5t#S256'], RSA2048_X5T_S256)
  assertEquals(tokenRequests(emu)[0]!.status, 200)
})

Deno.test('certificate (RSA 4096, with chain): x5c holds the certificate', async () => {
  await using emu = await emulator()
  const auth = certCredential(emu, {
    servicePrincipalId: CERT4096_CLIENT,
    certificate: clientCertificate({
      privateKey: rsa4096KeyPem,
      certificate: rsa4096CertPem,
      sendCertificateChain: true,
    }),
  })
  await auth.getTokenForAudience('AZUREML')
  const a = assertAssertion(emu, 0, {
    clientId: CERT4096_CLIENT,
    x5c: pemBodies(rsa4096CertPem),
  })
  const x5t = await crypto.subtle.digest(
    'SHA-256',
    Uint8Array.from(atob(pemBodies(rsa4096CertPem)[0]!), (c) => c.charCodeAt(0)),
  )
  const expected = btoa(String.fromCharCode(...new Uint8Array(x5t)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  assertEquals(a.header['x5t#S256'], expected)
  assertEquals(tokenRequests(emu)[0]!.status, 200)
})

Deno.test('certificate chain: x5c lists leaf then CA only when sendCertificateChain is true', async () => {
  await using emu = await emulator()
  const withChain = certCredential(emu, {
    servicePrincipalId: CHAIN_CLIENT,
    certificate: clientCertificate({
      privateKey: chainKeyPem,
      certificate: chainPem,
      sendCertificateChain: true,
    }),
  })
  const without = certCredential(emu, {
    servicePrincipalId: CHAIN_CLIENT,
    certificate: clientCertificate({ privateKey: chainKeyPem, certificate: chainPem }),
  })
  await withChain.getToken()
  await without.getToken()
  const bodies = pemBodies(chainPem)
  assertEquals(bodies.length, 2)
  assertAssertion(emu, 0, { clientId: CHAIN_CLIENT, x5c: bodies })
  assertAssertion(emu, 1, { clientId: CHAIN_CLIENT })
  assertEquals(tokenRequests(emu).map((r) => r.status), [200, 200])
})

Deno.test('certificate: a PKCS#1 key (BEGIN RSA PRIVATE KEY) works', async () => {
  await using emu = await emulator()
  const auth = certCredential(emu, {
    certificate: clientCertificate({ privateKey: rsa2048Pkcs1Pem, certificate: rsa2048CertPem }),
  })
  await auth.getToken()
  assertAssertion(emu, 0, { clientId: CERT_CLIENT })
  assertEquals(tokenRequests(emu)[0]!.status, 200)
})

Deno.test('certificate: one PEM holding key and certificate can be passed as both', async () => {
  await using emu = await emulator()
  const combined = 'Bag Attributes\n    friendlyName: app\n' + rsa2048CertPem + rsa2048KeyPem
  const auth = certCredential(emu, {
    certificate: clientCertificate({ privateKey: combined, certificate: combined }),
  })
  await auth.getToken()
  assertEquals(tokenRequests(emu)[0]!.status, 200)
})

Deno.test('certificate: a CryptoKey (RSA-PSS, or an extractable RSA key) works', async () => {
  await using emu = await emulator()
  const der = await pkcs8Der(rsa2048KeyPem)
  const pss = await crypto.subtle.importKey(
    'pkcs8',
    der,
    { name: 'RSA-PSS', hash: 'SHA-256' },
    false,
    [
      'sign',
    ],
  )
  const rs = await crypto.subtle.importKey(
    'pkcs8',
    der,
    { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    true,
    ['sign'],
  )
  for (const privateKey of [pss, rs]) {
    const auth = certCredential(emu, {
      certificate: clientCertificate({ privateKey, certificate: rsa2048CertPem }),
    })
    await auth.getToken()
    assertEquals(String(auth).includes('credential=certificate'), true)
  }
  assertEquals(tokenRequests(emu).map((r) => r.status), [200, 200])
  const a = tokenRequests(emu)[1]!.assertion!
  assertEquals(a.header.alg, 'PS256')
})

Deno.test('certificate: the signature verifies with the certificate (independent check with jose)', async () => {
  await using srv = serveLoopback(() =>
    Response.json({ access_token: 'at', token_type: 'Bearer', expires_in: 3599 })
  )
  const auth = certCredential(srv, { servicePrincipalId: 'my-app' })
  await auth.getToken()
  const jwt = srv.requests[0]!.form.get('client_assertion')!
  const { payload, protectedHeader } = await jwtVerify(
    jwt,
    await importX509(rsa2048CertPem, 'PS256'),
    {
      algorithms: ['PS256'],
      audience: `${srv.origin}/${TENANT}/oauth2/v2.0/token`,
      issuer: 'my-app',
      subject: 'my-app',
    },
  )
  assertEquals(protectedHeader['x5t#S256'], RSA2048_X5T_S256)
  assertEquals(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'sub'])
  assertEquals([...srv.requests[0]!.form.keys()], [
    'grant_type',
    'client_id',
    'scope',
    'client_assertion_type',
    'client_assertion',
  ])
})

Deno.test('certificate: the key is imported once and an assertion reused until 60 s before exp', async () => {
  const clock = fakeClock()
  await using srv = serveLoopback(() =>
    Response.json({ access_token: crypto.randomUUID(), token_type: 'Bearer', expires_in: 3599 })
  )
  const realImport = crypto.subtle.importKey
  let imports = 0
  crypto.subtle.importKey = function (...args: Parameters<SubtleCrypto['importKey']>) {
    imports++
    return realImport.apply(crypto.subtle, args)
  } as SubtleCrypto['importKey']
  try {
    const auth = certCredential(srv, { now: clock.now, sleep: clock.sleep })
    await Promise.all([auth.getToken(ARM_SCOPE), auth.getToken(AML_SCOPE)])
    clock.advance(539_000)
    await auth.getToken('https://graph.microsoft.com/.default')
    clock.advance(1_000) // 540 s after signing = 60 s before exp: sign again
    await auth.getToken('https://storage.azure.com/.default')
    const jwts = srv.requests.map((r) => r.form.get('client_assertion'))
    assertEquals(jwts.length, 4)
    assertEquals(new Set(jwts.slice(0, 3)).size, 1, 'reused within 540 s')
    assert(jwts[3] !== jwts[0], 're-signed at 540 s')
    assertEquals(imports, 1, 'the key is imported once')
    assertEquals(_decodeJwt(jwts[3]!).nbf, Math.floor(clock.now() / 1000))
  } finally {
    crypto.subtle.importKey = realImport
  }
})

Deno.test('certificate: a per-call tenant gets its own assertion (aud is its token endpoint)', async () => {
  await using srv = serveLoopback(() =>
    Response.json({ access_token: crypto.randomUUID(), token_type: 'Bearer', expires_in: 3599 })
  )
  const other = DEMO.secondTenantId
  const auth = certCredential(srv, { additionallyAllowedTenants: [other] })
  await auth.getToken()
  await auth.getToken(undefined, { tenantId: other })
  await auth.getToken(AML_SCOPE)
  const auds = srv.requests.map((r) => _decodeJwt(r.form.get('client_assertion')!).aud)
  assertEquals(auds, [
    `${srv.origin}/${TENANT}/oauth2/v2.0/token`,
    `${srv.origin}/${other}/oauth2/v2.0/token`,
    `${srv.origin}/${TENANT}/oauth2/v2.0/token`,
  ])
  assertEquals(srv.requests.map((r) => r.url.pathname.split('/')[1]), [TENANT, other, TENANT])
})

Deno.test('certificate: a reused assertion refused for jti replay is re-signed once', async () => {
  // The emulator enforces single-use jti (ADFS does too); Entra ID accepts reuse within exp.
  await using emu = await emulator()
  const auth = certCredential(emu)
  await auth.getToken(ARM_SCOPE)
  await auth.getToken(AML_SCOPE)
  const reqs = tokenRequests(emu)
  assertEquals(reqs.map((r) => r.status), [200, 401, 200])
  assertEquals(reqs[0]!.assertion!.claims.jti, reqs[1]!.assertion!.claims.jti)
  assert(reqs[2]!.assertion!.claims.jti !== reqs[0]!.assertion!.claims.jti)
  // Concurrent first requests of a new credential all end with a token.
  const concurrent = certCredential(emu)
  const scopes = [ARM_SCOPE, AML_SCOPE, 'https://graph.microsoft.com/.default']
  const tokens = await Promise.all(scopes.map((s) => concurrent.getToken(s)))
  assertEquals(tokens.map((t) => _decodeJwt(t.token).aud), [
    'https://management.core.windows.net/',
    'https://ml.azure.com',
    'https://graph.microsoft.com',
  ])
})

Deno.test('certificate: an unregistered certificate gives AADSTS700027 with advice', async () => {
  await using emu = await emulator()
  const auth = certCredential(emu, {
    certificate: clientCertificate({ privateKey: rsa4096KeyPem, certificate: rsa4096CertPem }),
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.code, 'ERR_AUTHENTICATION')
  assertEquals(e.status, 401)
  assertEquals(e.errorCodes, [700027])
  assertStringIncludes(e.message, 'Check certificate: its certificate must be uploaded')
  assertHidden(e, [PEM_BODY_SAMPLE, rsa4096KeyPem.split('\n')[5]!])
  assertEquals(tokenRequests(emu).length, 1, 'a fresh assertion is not retried')
})

Deno.test('certificate: a CryptoKey that is not the certificate key fails signature validation', async () => {
  await using emu = await emulator()
  const other = await crypto.subtle.importKey(
    'pkcs8',
    await pkcs8Der(chainKeyPem),
    { name: 'RSA-PSS', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const auth = certCredential(emu, {
    certificate: clientCertificate({ privateKey: other, certificate: rsa2048CertPem }),
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.errorCodes, [700027])
  assertStringIncludes(e.errorDescription!, 'signature validation')
})

Deno.test('certificate: an assertion outside its time range gives AADSTS700024 with advice', async () => {
  await using emu = await emulator()
  const skewed = () => Date.now() + 3_600_000
  const auth = certCredential(emu, { now: skewed })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.errorCodes, [700024])
  assertStringIncludes(e.message, 'check the clock of this machine')
})

// ---------------------------------------------------------------------------------------------
// Federated assertions

Deno.test('clientAssertion: called for every token request and sent as a jwt-bearer assertion', async () => {
  await using emu = await emulator()
  let calls = 0
  const auth = new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: FED_CLIENT,
    clientAssertion: async () => await federatedToken(Date.now(), `fed-${++calls}`),
    authorityHost: emu.origin,
    env: {},
    cache: createTokenCache(),
  })
  await auth.getToken()
  await auth.getToken() // cached: no call
  await auth.getTokenForAudience('AZUREML')
  assertEquals(calls, 2)
  const reqs = tokenRequests(emu)
  assertEquals(reqs.map((r) => r.status), [200, 200])
  assertEquals(reqs.map((r) => r.assertion?.claims.jti), ['fed-1', 'fed-2'])
  assertEquals(reqs[0]!.form, {
    grant_type: 'client_credentials',
    client_id: FED_CLIENT,
    scope: ARM_SCOPE,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: '[redacted]',
  })
  assertStringIncludes(String(auth), 'credential=clientAssertion')
})

Deno.test('clientAssertion: an empty, non-string or failing result is a clear error, no request', async () => {
  await using emu = await emulator()
  const make = (clientAssertion: () => unknown) =>
    new ServicePrincipalAuthentication({
      tenantId: TENANT,
      servicePrincipalId: FED_CLIENT,
      clientAssertion: clientAssertion as () => string,
      authorityHost: emu.origin,
      env: {},
      cache: createTokenCache(),
    })
  const cases: [() => unknown, string][] = [
    [() => '', 'clientAssertion returned an empty string'],
    [() => '  \n', 'clientAssertion returned an empty string'],
    [() => Promise.resolve(undefined), 'clientAssertion returned undefined'],
    [() => null, 'clientAssertion returned null'],
    [() => 42, 'clientAssertion returned number'],
    [() => {
      throw new RangeError('token source down')
    }, 'clientAssertion failed (RangeError)'],
  ]
  for (const [cb, text] of cases) {
    const e = await assertRejects(() => make(cb).getToken(), CredentialUnavailableError)
    assertEquals(e.code, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, text)
  }
  assertEquals(tokenRequests(emu).length, 0)
})

Deno.test('clientAssertion: an assertion no federated credential matches gives AADSTS70021', async () => {
  await using emu = await emulator()
  const wrongSubject = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: 'k8s-1' })
    .setIssuer(FED_ISSUER)
    .setSubject('system:serviceaccount:other:sa')
    .setAudience(FED_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(fedKeys.privateKey)
  const auth = new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: FED_CLIENT,
    clientAssertion: () => wrongSubject,
    authorityHost: emu.origin,
    env: {},
    cache: createTokenCache(),
  })
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertEquals(e.errorCodes, [70021])
  assertStringIncludes(e.message, 'No federated identity credential matches the assertion')
  assertHidden(e, [wrongSubject])
})

Deno.test('fromEnvironment() workload identity: the token file is re-read after 5 minutes', async () => {
  const clock = fakeClock(Date.now())
  await using emu = await emulator(clock.now)
  const dir = await Deno.makeTempDir({ prefix: 'sp-wi-' })
  try {
    const file = `${dir}/azure-identity-token`
    await Deno.writeTextFile(file, (await federatedToken(clock.now(), 'token-A')) + '\n')
    const auth = servicePrincipalFromEnvironment({
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: FED_CLIENT,
      AZURE_FEDERATED_TOKEN_FILE: file,
      AZURE_AUTHORITY_HOST: emu.origin,
    }, { now: clock.now, sleep: clock.sleep, cache: createTokenCache() })
    assertStringIncludes(String(auth), 'credential=federatedTokenFile')
    await auth.getToken(ARM_SCOPE)
    // The kubelet rotates the file; within 5 minutes the cached content is still used.
    await Deno.writeTextFile(file, await federatedToken(clock.now(), 'token-B'))
    clock.advance(299_000)
    await auth.getToken(AML_SCOPE)
    clock.advance(1_000)
    await auth.getToken('https://graph.microsoft.com/.default')
    assertEquals(
      tokenRequests(emu).map((r) => r.assertion?.claims.jti),
      ['token-A', 'token-A', 'token-B'],
    )
    assertEquals(tokenRequests(emu).map((r) => r.status), [200, 200, 200])
    // An empty file is an error (after the next 5 minutes).
    await Deno.writeTextFile(file, '  \n')
    clock.advance(300_000)
    const e = await assertRejects(
      () => auth.getToken('https://storage.azure.com/.default'),
      CredentialUnavailableError,
    )
    assertStringIncludes(
      e.message,
      'The federated token file named by AZURE_FEDERATED_TOKEN_FILE is empty',
    )
    await Deno.remove(file)
    clock.advance(300_000)
    const missing = await assertRejects(
      () => auth.getToken('https://vault.azure.net/.default'),
      CredentialUnavailableError,
    )
    assertStringIncludes(
      missing.message,
      'Cannot read the federated token file named by AZURE_FEDERATED_TOKEN_FILE',
    )
    assertInstanceOf(missing.cause, Deno.errors.NotFound)
    assertEquals(tokenRequests(emu).length, 3)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

// ---------------------------------------------------------------------------------------------
// Tenants

Deno.test('getToken({ tenantId }) is allowed only for additionallyAllowedTenants or "*"', async () => {
  await using emu = await emulator()
  const other = DEMO.secondTenantId
  const strict = secretCredential(emu)
  const e = await assertRejects(
    () => strict.getToken(undefined, { tenantId: other }),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_TENANT_NOT_ALLOWED')
  assertStringIncludes(e.message, `tenant '${other}'; add it to additionallyAllowedTenants`)
  assertEquals(tokenRequests(emu).length, 0)
  // The configured tenant (any case) is the default one: same cache entry, home path.
  await strict.getToken(undefined, { tenantId: TENANT.toUpperCase() })
  await strict.getToken()
  assertEquals(tokenRequests(emu).length, 1)
  for (const allowed of [[other], ['*'], [other.toUpperCase()]]) {
    emu.clearRequests()
    const auth = secretCredential(emu, { additionallyAllowedTenants: allowed })
    const t = await auth.getToken(undefined, { tenantId: other })
    assertEquals(tokenRequests(emu)[0]!.path, `/${other}/oauth2/v2.0/token`)
    assertEquals(_decodeJwt(t.token).tid, other)
    const home = await auth.getToken()
    assertEquals(_decodeJwt(home.token).tid, TENANT)
  }
  await assertRejects(
    () => strict.getToken(undefined, { tenantId: 'bad tenant' }),
    TypeError,
    'getToken options.tenantId must be a tenant GUID or domain',
  )
})

Deno.test('getToken({ tenantId }) is ignored when AZURE_IDENTITY_DISABLE_MULTITENANTAUTH is set', async () => {
  await using emu = await emulator()
  for (const value of ['true', '1', 'yes']) {
    emu.clearRequests()
    const auth = secretCredential(emu, { env: { AZURE_IDENTITY_DISABLE_MULTITENANTAUTH: value } })
    const t = await auth.getToken(undefined, { tenantId: DEMO.secondTenantId })
    assertEquals(tokenRequests(emu)[0]!.path, `/${TENANT}/oauth2/v2.0/token`)
    assertEquals(_decodeJwt(t.token).tid, TENANT)
  }
  const off = secretCredential(emu, { env: { AZURE_IDENTITY_DISABLE_MULTITENANTAUTH: 'false' } })
  await assertRejects(
    () => off.getToken(undefined, { tenantId: DEMO.secondTenantId }),
    AmlAuthError,
    'additionallyAllowedTenants',
  )
})

// ---------------------------------------------------------------------------------------------
// Entra errors

Deno.test('Entra refusals become AuthenticationError with AADSTS details and advice', async () => {
  await using emu = await emulator()
  const cases: {
    name: string
    make: () => ServicePrincipalAuthentication
    scope?: string
    status: number
    code: number
    advice: string
  }[] = [
    {
      name: 'bad secret',
      make: () => secretCredential(emu, { servicePrincipalPassword: 'wrong-secret-value' }),
      status: 401,
      code: 7000215,
      advice: "Check servicePrincipalPassword: use the secret's Value, not its ID",
    },
    {
      name: 'unknown client',
      make: () =>
        secretCredential(emu, { servicePrincipalId: '00000000-0000-4000-8000-000000000000' }),
      status: 400,
      code: 700016,
      advice: 'Check servicePrincipalId and tenantId',
    },
    {
      name: 'unknown tenant',
      make: () => secretCredential(emu, { tenantId: '00000000-0000-4000-8000-00000000000a' }),
      status: 400,
      code: 90002,
      advice: 'Check tenantId and the cloud',
    },
    {
      name: 'invalid scope',
      make: () => secretCredential(emu),
      scope: 'api://x',
      status: 400,
      code: 70011,
      advice: 'Check the scopes',
    },
    {
      name: 'scope without /.default',
      make: () => secretCredential(emu),
      scope: 'https://ml.azure.com/user_impersonation',
      status: 400,
      code: 1002012,
      advice: 'client credentials need <resource>/.default',
    },
    {
      name: 'unknown resource',
      make: () => secretCredential(emu),
      scope: 'https://unknown.example.com/.default',
      status: 400,
      code: 500011,
      advice: 'The resource is not in this tenant',
    },
  ]
  for (const c of cases) {
    const e = await assertRejects(() => c.make().getToken(c.scope), AuthenticationError)
    assertEquals(e.code, 'ERR_AUTHENTICATION', c.name)
    assertEquals(e.status, c.status, c.name)
    assertEquals(e.errorCodes, [c.code], c.name)
    assertStringIncludes(e.message, `AADSTS${c.code}`, c.name)
    assertStringIncludes(e.message, c.advice, c.name)
    assertExists(e.traceId)
    assertExists(e.correlationId)
    assertHidden(e, ['wrong-secret-value', ...SECRETS])
  }
  // 4xx refusals are final: one request each.
  assertEquals(tokenRequests(emu).length, cases.length)
})

Deno.test('Entra refusals the emulator cannot produce (expired secret, certificate) get advice', async () => {
  await using emu = await emulator()
  const body = (code: number, error: string, text: string) => ({
    error,
    error_description: `AADSTS${code}: ${text}\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: x`,
    error_codes: [code],
    trace_id: 't',
    correlation_id: 'c',
  })
  const cases: [number, string, string, () => ServicePrincipalAuthentication][] = [
    [
      7000222,
      'The provided client secret keys for app are expired.',
      'The client secret has expired: create a new servicePrincipalPassword',
      () => secretCredential(emu),
    ],
    [
      7000274,
      'Key was found, but the certificate is not valid.',
      'Check certificate: Entra ID did not accept the certificate',
      () => certCredential(emu),
    ],
    [
      700024,
      'Client assertion is not within its valid time range.',
      'outside its valid time range',
      () => certCredential(emu),
    ],
    [
      700025,
      'Client is public so neither client_assertion nor client_secret should be presented.',
      'This application is a public client: it must not send servicePrincipalPassword or certificate',
      () => secretCredential(emu),
    ],
    [
      7000112,
      'Application is disabled.',
      'The application is disabled in this tenant',
      () => secretCredential(emu),
    ],
  ]
  for (const [code, text, advice, make] of cases) {
    emu.failNext({ route: 'entra.token', status: 401, body: body(code, 'invalid_client', text) })
    const e = await assertRejects(() => make().getToken(), AuthenticationError)
    assertEquals(e.errorCodes, [code])
    assertEquals(e.error, 'invalid_client')
    assertStringIncludes(e.message, advice)
  }
})

Deno.test('a server echoing the secret or assertion in an error cannot leak it', async () => {
  await using emu = await emulator()
  emu.failNext({
    route: 'entra.token',
    status: 401,
    body: {
      error: 'invalid_client',
      error_description: `AADSTS7000215: Invalid client secret '${DEMO.clientSecret}' provided.`,
      error_codes: [7000215],
    },
  })
  const auth = secretCredential(emu)
  const e = await assertRejects(() => auth.getToken(), AuthenticationError)
  assertStringIncludes(e.errorDescription!, '[redacted]')
  assertHidden(e, [DEMO.clientSecret])
  // The raw response stays attached but non-enumerable.
  assertExists(e.response)
  assertFalse(Object.keys(e).includes('response'))

  let assertion = ''
  await using srv = serveLoopback((req) => {
    assertion = req.form.get('client_assertion')!
    return Response.json({
      error: 'invalid_client',
      error_description: `AADSTS700027: bad assertion ${assertion}`,
      error_codes: [700027],
    }, { status: 401 })
  })
  const cert = certCredential(srv)
  const e2 = await assertRejects(() => cert.getToken(), AuthenticationError)
  assert(assertion.length > 100)
  assertHidden(e2, [assertion, assertion.split('.')[2]!])

  // Echoed in the OAuth error code and the trace fields, which also reach the error.
  emu.failNext({
    route: 'entra.token',
    status: 400,
    body: {
      error: `invalid_client:${DEMO.clientSecret}`,
      error_description: 'AADSTS7000215: Invalid client secret provided.',
      trace_id: DEMO.clientSecret,
      correlation_id: `c-${DEMO.clientSecret}`,
    },
  })
  const e3 = await assertRejects(() => secretCredential(emu).getToken(), AuthenticationError)
  assertEquals(e3.error, 'invalid_client:[redacted]')
  assertEquals(e3.traceId, '[redacted]')
  assertHidden(e3, [DEMO.clientSecret])
})

Deno.test('getToken() retries 503 with back-off, then succeeds; 4xx is not retried', async () => {
  const clock = fakeClock(Date.now())
  await using emu = await emulator(clock.now)
  emu.failNext({ route: 'entra.token', status: 503, count: 2 })
  const auth = secretCredential(emu, { now: clock.now, sleep: clock.sleep })
  await auth.getToken()
  assertEquals(tokenRequests(emu).map((r) => r.status), [503, 503, 200])
  assertEquals(clock.slept.length, 2)
})

// ---------------------------------------------------------------------------------------------
// Secrets never shown

Deno.test('no secret appears in toString, JSON.stringify or Deno.inspect of any credential', async () => {
  await using emu = await emulator()
  const assertionValue = 'eyJhbGciOiJSUzI1NiJ9.federated-assertion-value.signature'
  const creds = [
    secretCredential(emu),
    certCredential(emu),
    certCredential(emu, {
      certificate: clientCertificate({
        privateKey: rsa2048KeyPem,
        certificate: rsa2048CertPem,
        sendCertificateChain: true,
      }),
    }),
    new ServicePrincipalAuthentication({
      tenantId: TENANT,
      servicePrincipalId: FED_CLIENT,
      clientAssertion: () => assertionValue,
      env: {},
    }),
  ]
  await creds[0]!.getToken()
  await creds[1]!.getToken()
  for (const c of creds) {
    assertHidden(c, [...SECRETS, assertionValue, rsa2048KeyPem.split('\n')[10]!])
    const json = JSON.parse(JSON.stringify(c))
    assertEquals(Object.keys(json), [
      'type',
      'cloud',
      'tenantId',
      'servicePrincipalId',
      'credential',
      'authorityHost',
    ])
  }
  assertEquals(
    String(creds[0]),
    `ServicePrincipalAuthentication(cloud=AzureCloud, tenantId=${TENANT}, servicePrincipalId=${DEMO.clientId}, credential=secret, authorityHost=${emu.origin})`,
  )
  assertEquals(Deno.inspect(creds[0]), String(creds[0]))
  assertEquals(Object.keys(creds[0]!).includes('servicePrincipalPassword'), false)
})

// ---------------------------------------------------------------------------------------------
// Cache identity

Deno.test('secrets that a polynomial hash would confuse ("Aa" vs "BB") never share a token', async () => {
  const client = '5d1e2d3c-4b5a-4697-8887-1a2b3c4d5e6a'
  await using emu = await startEmulator({
    config: { clients: [{ clientId: client, tenantId: TENANT, secrets: ['s3cret-Aa-0001'] }] },
  })
  const cache = createTokenCache()
  const make = (secret: string) =>
    secretCredential(emu, { cache, servicePrincipalId: client, servicePrincipalPassword: secret })
  await make('s3cret-Aa-0001').getToken()
  const e = await assertRejects(() => make('s3cret-BB-0001').getToken(), AuthenticationError)
  assertEquals(e.errorCodes, [7000215])
  assertEquals(tokenRequests(emu).length, 2, 'the second secret went to Entra and was refused')
})

Deno.test("ServicePrincipalAuthentication() checks a custom cloud's host as an authority", () => {
  const cloud: Cloud = {
    name: 'Contoso',
    activeDirectory: 'https://login.contoso.example/?x=1',
    resourceManager: 'https://management.contoso.example/',
    activeDirectoryResourceId: 'https://management.core.contoso.example/',
    amlResourceId: 'https://ml.contoso.example',
  }
  const e = assertThrows(
    () =>
      new ServicePrincipalAuthentication({
        tenantId: TENANT,
        servicePrincipalId: DEMO.clientId,
        servicePrincipalPassword: 's3cret-value',
        cloud,
        env: {},
        fetch: noFetch,
      }),
    TypeError,
  )
  assertStringIncludes(e.message, 'cloud.activeDirectory must be the authority host')
})

Deno.test('credentials share cached tokens only when client, tenant, authority and secret match', async () => {
  await using emu = await emulator()
  const cache = createTokenCache()
  const a = secretCredential(emu, { cache })
  const b = secretCredential(emu, { cache })
  await a.getToken()
  await b.getToken()
  assertEquals(tokenRequests(emu).length, 1, 'same identity: shared')
  const other = secretCredential(emu, { cache, servicePrincipalPassword: 'another-secret-value' })
  await assertRejects(() => other.getToken(), AuthenticationError)
  assertEquals(tokenRequests(emu).length, 2, 'another secret never gets the cached token')
  const certA = certCredential(emu, { cache })
  const certB = certCredential(emu, {
    cache,
    certificate: clientCertificate({ privateKey: rsa2048Pkcs1Pem, certificate: rsa2048CertPem }),
  })
  await certA.getToken()
  await certB.getToken()
  assertEquals(tokenRequests(emu).length, 3, 'same certificate: shared')
  const cb = () => federatedToken(Date.now(), crypto.randomUUID())
  const f1 = new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: FED_CLIENT,
    clientAssertion: cb,
    authorityHost: emu.origin,
    env: {},
    cache,
  })
  const f2 = new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: FED_CLIENT,
    clientAssertion: cb,
    authorityHost: emu.origin,
    env: {},
    cache,
  })
  await f1.getToken()
  await f2.getToken()
  assertEquals(tokenRequests(emu).length, 5, 'callbacks never share')
})

// ---------------------------------------------------------------------------------------------
// fromEnvironment

Deno.test('fromEnvironment() reads AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET', async () => {
  await using emu = await emulator()
  const env = emu.env('service-principal')
  delete env.AZUREML_SERVICE_PRINCIPAL_ID
  const auth = servicePrincipalFromEnvironment(env, { cache: createTokenCache() })
  await auth.getToken()
  assertEquals(tokenRequests(emu)[0]!.path, `/${TENANT}/oauth2/v2.0/token`)
  assertEquals(tokenRequests(emu)[0]!.form?.client_id, DEMO.clientId)
  assertHidden(auth, [DEMO.clientSecret])
  // Errors name the variables.
  const bad = servicePrincipalFromEnvironment(
    { ...env, AZURE_CLIENT_SECRET: 'wrong-secret-value' },
    { cache: createTokenCache() },
  )
  const e = await assertRejects(() => bad.getToken(), AuthenticationError)
  assertStringIncludes(e.message, 'Check AZURE_CLIENT_SECRET')
})

Deno.test('fromEnvironment() prefers the AZUREML_SERVICE_PRINCIPAL_* variables', async () => {
  await using emu = await emulator()
  const env = {
    ...emu.env('service-principal'),
    AZURE_CLIENT_SECRET: 'wrong-secret-value',
  }
  const auth = servicePrincipalFromEnvironment(env, {
    cache: createTokenCache(),
    cloud: {
      name: 'Emulator',
      activeDirectory: emu.origin,
      resourceManager: emu.origin,
      activeDirectoryResourceId: 'https://management.core.windows.net/',
      amlResourceId: 'https://ml.azure.com',
    },
  })
  await auth.getToken()
  assertEquals(tokenRequests(emu)[0]!.status, 200)
  const bad = servicePrincipalFromEnvironment(
    { ...env, AZUREML_SERVICE_PRINCIPAL_PASSWORD: 'wrong-secret-value' },
    {
      cache: createTokenCache(),
      cloud: {
        name: 'Emulator',
        activeDirectory: emu.origin,
        resourceManager: emu.origin,
        activeDirectoryResourceId: 'https://management.core.windows.net/',
        amlResourceId: 'https://ml.azure.com',
      },
    },
  )
  const e = await assertRejects(() => bad.getToken(), AuthenticationError)
  assertStringIncludes(e.message, 'Check AZUREML_SERVICE_PRINCIPAL_PASSWORD')
  // The tenantId option takes precedence over the tenant variable.
  const t = servicePrincipalFromEnvironment(env, { tenantId: 'contoso.example' })
  assertStringIncludes(String(t), 'tenantId=contoso.example')
})

Deno.test('fromEnvironment() with AZURE_CLIENT_CERTIFICATE_PATH reads the PEM on first use', async () => {
  await using emu = await emulator()
  const reads: string[] = []
  const file: { content?: string } = {}
  const readFile = (path: string) => {
    reads.push(path)
    return file.content === undefined
      ? Promise.reject(new Deno.errors.NotFound('no such file'))
      : Promise.resolve(file.content)
  }
  const auth = servicePrincipalFromEnvironment({
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CHAIN_CLIENT,
    AZURE_CLIENT_CERTIFICATE_PATH: '/secrets/app.pem',
    AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: 'TRUE',
    AZURE_AUTHORITY_HOST: emu.origin,
  }, { readFile, cache: createTokenCache() })
  assertEquals(reads, [], 'no I/O in fromEnvironment')
  const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
  assertStringIncludes(
    e.message,
    'Cannot read the certificate file named by AZURE_CLIENT_CERTIFICATE_PATH',
  )
  file.content = chainKeyPem + chainPem
  await auth.getToken() // the failed read is retried
  assertAssertion(emu, 0, { clientId: CHAIN_CLIENT, x5c: pemBodies(chainPem) })
  await auth.getTokenForAudience('AZUREML') // a second signing, not a second read
  assertEquals(reads, ['/secrets/app.pem', '/secrets/app.pem'], 'read once after success')
  // An encrypted key in the file is explained on first use.
  const enc = servicePrincipalFromEnvironment({
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CERT_CLIENT,
    AZURE_CLIENT_CERTIFICATE_PATH: '/secrets/enc.pem',
    AZURE_AUTHORITY_HOST: emu.origin,
  }, {
    readFile: () => Promise.resolve(rsa2048EncryptedPem + rsa2048CertPem),
    cache: createTokenCache(),
  })
  const e2 = await assertRejects(() => enc.getToken(), CredentialUnavailableError)
  assertStringIncludes(e2.message, 'The private key in AZURE_CLIENT_CERTIFICATE_PATH is encrypted')
  assertStringIncludes(e2.message, 'openssl pkcs8 -topk8 -nocrypt')
})

Deno.test('fromEnvironment() refuses certificate passwords and PFX files, saying how to convert', () => {
  const base = {
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CERT_CLIENT,
    AZURE_CLIENT_CERTIFICATE_PATH: '/secrets/app.pem',
  }
  const readFile = () => Promise.reject(new Error('must not read'))
  const e = assertThrows(
    () =>
      servicePrincipalFromEnvironment(
        { ...base, AZURE_CLIENT_CERTIFICATE_PASSWORD: 'pfx-password-value' },
        { readFile },
      ),
    CredentialUnavailableError,
  )
  assertStringIncludes(
    e.message,
    'AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but password-protected keys are not supported',
  )
  assertStringIncludes(e.message, 'openssl pkcs8 -topk8 -nocrypt')
  assertHidden(e, ['pfx-password-value'])
  const pfx = assertThrows(
    () =>
      servicePrincipalFromEnvironment(
        { ...base, AZURE_CLIENT_CERTIFICATE_PATH: '/secrets/app.PFX' },
        { readFile },
      ),
    CredentialUnavailableError,
  )
  assertStringIncludes(pfx.message, 'openssl pkcs12 -in cert.pfx -nodes -out cert.pem')
})

Deno.test('fromEnvironment() names exactly the missing variables', () => {
  const cases: [Record<string, string>, string][] = [
    [
      {},
      'set AZURE_TENANT_ID, AZURE_CLIENT_ID, one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE (for AZURE_TENANT_ID/AZURE_CLIENT_ID sign-in), or AZUREML_SERVICE_PRINCIPAL_ID, AZUREML_SERVICE_PRINCIPAL_PASSWORD, AZUREML_SERVICE_PRINCIPAL_TENANT_ID',
    ],
    [
      { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_SECRET: 'x' },
      'set AZURE_CLIENT_ID (for AZURE_TENANT_ID/AZURE_CLIENT_ID sign-in)',
    ],
    [
      { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: 'c' },
      'set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE',
    ],
    [
      { AZUREML_SERVICE_PRINCIPAL_ID: 'c', AZUREML_SERVICE_PRINCIPAL_TENANT_ID: TENANT },
      'set AZUREML_SERVICE_PRINCIPAL_PASSWORD (for the Azure ML service principal variables)',
    ],
    [
      { AZURE_TENANT_ID: ' ', AZURE_CLIENT_ID: 'c', AZURE_CLIENT_SECRET: 's' },
      'set AZURE_TENANT_ID (',
    ],
    [
      { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: 'c', AZURE_USERNAME: 'u', AZURE_PASSWORD: 'p' },
      'AZURE_USERNAME/AZURE_PASSWORD (username and password sign-in) is not supported',
    ],
  ]
  for (const [env, text] of cases) {
    const e = assertThrows(
      () => servicePrincipalFromEnvironment(env),
      CredentialUnavailableError,
    )
    assertEquals(e.code, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, text)
  }
})

Deno.test('fromEnvironment() reads the authority, allowed tenants and rejects bad values by name', async () => {
  await using emu = await emulator()
  const env = {
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: DEMO.clientId,
    AZURE_CLIENT_SECRET: DEMO.clientSecret,
    AZURE_AUTHORITY_HOST: emu.origin + '/',
    AZURE_ADDITIONALLY_ALLOWED_TENANTS: ` ${DEMO.secondTenantDomain} ; other.example ;`,
  }
  const auth = servicePrincipalFromEnvironment(env, { cache: createTokenCache() })
  await auth.getToken(undefined, { tenantId: DEMO.secondTenantDomain })
  assertEquals(tokenRequests(emu)[0]!.path, `/${DEMO.secondTenantDomain}/oauth2/v2.0/token`)
  const denied = await assertRejects(
    () => auth.getToken(undefined, { tenantId: 'third.example' }),
    AmlAuthError,
  )
  assertStringIncludes(denied.message, 'add it to AZURE_ADDITIONALLY_ALLOWED_TENANTS')
  for (
    const [k, v, text] of [
      ['AZURE_TENANT_ID', 'bad tenant', 'AZURE_TENANT_ID must be a tenant GUID or domain'],
      ['AZURE_AUTHORITY_HOST', 'http://login.example.com', 'AZURE_AUTHORITY_HOST must use https'],
      [
        'AZURE_ADDITIONALLY_ALLOWED_TENANTS',
        'ok.example;bad tenant',
        'AZURE_ADDITIONALLY_ALLOWED_TENANTS must be',
      ],
    ]
  ) {
    assertThrows(
      () => servicePrincipalFromEnvironment({ ...env, [k!]: v! }),
      TypeError,
      text,
    )
  }
})

Deno.test('fromEnvironment() defaults to the env option, then the runtime environment', () => {
  const env = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: 'c', AZURE_CLIENT_SECRET: 's' }
  const a = servicePrincipalFromEnvironment(undefined, { env })
  assertStringIncludes(String(a), `tenantId=${TENANT}`)
})

// ---------------------------------------------------------------------------------------------
// The shared Entra request helpers (used by the device-code and refresh-token flows too)

Deno.test('buildTokenRequest() describes a POST to the v2 token or devicecode endpoint', () => {
  const req = buildTokenRequest({
    authority: 'https://login.microsoftonline.us/',
    tenant: 'organizations',
    form: { client_id: 'c', scope: 's', skipped: undefined },
    endpoint: 'devicecode',
  })
  assertEquals(req.method, 'POST')
  assertEquals(req.url, 'https://login.microsoftonline.us/organizations/oauth2/v2.0/devicecode')
  assertEquals(req.form, { client_id: 'c', scope: 's', skipped: undefined })
  assertEquals(req.what, 'Microsoft Entra ID')
  assertMatch(req.headers!['client-request-id']!, /^[0-9a-f-]{36}$/)
  assertEquals(
    entraEndpoint('https://login.microsoftonline.com', TENANT),
    `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`,
  )
})

Deno.test('requestEntraTokenResult() keeps refresh and id tokens; errors scrub every secret field', async () => {
  const refresh = 'refresh-token-value-0123456789'
  await using srv = serveLoopback((req, i) =>
    i === 0
      ? Response.json({
        token_type: 'Bearer',
        access_token: 'at-value',
        refresh_token: refresh,
        id_token: 'id.token.value',
        scope: 'openid offline_access',
        expires_in: 3599,
      })
      : Response.json({
        error: 'invalid_grant',
        error_description: `AADSTS700082: The refresh token ${req.form.get('refresh_token')} ` +
          `and code ${req.form.get('code')} and verifier ${req.form.get('code_verifier')} expired.`,
        error_codes: [700082],
      }, { status: 400 })
  )
  const http = _httpContext({})
  const ok = await requestEntraTokenResult(http, {
    authority: srv.origin,
    tenant: 'organizations',
    form: { grant_type: 'refresh_token', refresh_token: 'old-refresh-token-value' },
  })
  assertEquals(ok.accessToken.token, 'at-value')
  assertEquals(ok.refreshToken, refresh)
  assertEquals(ok.idToken, 'id.token.value')
  assertEquals(ok.scope, 'openid offline_access')
  const secrets = ['old-refresh-token-value', 'authorization-code-value', 'pkce-verifier-value']
  const e = await assertRejects(
    () =>
      requestEntraToken(http, {
        authority: srv.origin,
        tenant: 'organizations',
        form: {
          grant_type: 'refresh_token',
          refresh_token: secrets[0],
          code: secrets[1],
          code_verifier: secrets[2],
        },
        advice: entraAdvice({ clientId: 'clientId' }, {
          700082: 'The refresh token has expired: sign in again',
        }),
      }),
    AuthenticationError,
  )
  assertEquals(e.errorCodes, [700082])
  assertStringIncludes(e.message, 'The refresh token has expired: sign in again')
  assertHidden(e, secrets)
  assertEquals(SECRET_FORM_FIELDS.includes('device_code'), true)
})
