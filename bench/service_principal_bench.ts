// Benchmarks of ServicePrincipalAuthentication. Run: `deno bench -A bench/service_principal_bench.ts`.
//
// - cached getToken (the hot path) with a secret credential;
// - a cold credential's first token over loopback HTTP (and how many requests it took);
// - a cold certificate credential's first token (key import + PS256 signing + HTTP);
// - RSA-PSS signing cost for 2048- and 4096-bit keys;
// - how many assertions a certificate credential signs under continuous use over 60 simulated
//   minutes (fake clock), for realistic 1 h tokens and for 2 min tokens (the worst case);
// - module import time in a fresh `deno eval` process.
// Counts are printed after the run ("report" lines).
import {
  clientCertificate,
  ServicePrincipalAuthentication,
} from '../src/credentials/service_principal.ts'
import { createTokenCache } from '../src/token_cache.ts'
import { _decodeJwt } from '../src/jwt.ts'
import { fakeClock, serveLoopback } from '../test/_fixtures/loopback.ts'
import {
  rsa2048CertPem,
  rsa2048KeyPem,
  rsa4096CertPem,
  rsa4096KeyPem,
} from '../test/_fixtures/certs.ts'

const TENANT = '8d3e0f4a-7c1b-4e2d-9a6f-0e5b1c2d3a4f'
const CLIENT = '0d5e6f7a-8b9c-4d0e-a1f2-b3c4d5e6f7a8'
const ARM = 'https://management.core.windows.net//.default'
const AML = 'https://ml.azure.com/.default'
const report: string[] = []

// A loopback Entra stand-in: any token request gets a 1 h token.
const server = serveLoopback((req) =>
  Response.json({
    token_type: 'Bearer',
    expires_in: 3599,
    access_token: `at.${req.form.get('scope')}.${crypto.randomUUID()}`,
  })
)

function secretCredential(): ServicePrincipalAuthentication {
  return new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: CLIENT,
    servicePrincipalPassword: 'bench-secret',
    authorityHost: server.origin,
    env: {},
    cache: createTokenCache(),
  })
}

const warm = secretCredential()
await warm.getToken()

Deno.bench(
  'getToken() cache hit (secret credential)',
  { group: 'hot', baseline: true },
  async () => {
    await warm.getToken()
  },
)

Deno.bench('getToken(ARM scope string) cache hit', { group: 'hot' }, async () => {
  await warm.getToken(ARM)
})

let coldRuns = 0
let coldRequestsBefore = -1
Deno.bench('first token, cold secret credential (loopback HTTP)', { group: 'cold' }, async () => {
  if (coldRequestsBefore < 0) coldRequestsBefore = server.requests.length
  coldRuns++
  await secretCredential().getToken()
})

let certRuns = 0
let certRequestsBefore = -1
Deno.bench(
  'first token, cold certificate credential RSA-2048 (import + sign + HTTP)',
  { group: 'cold' },
  async () => {
    if (certRequestsBefore < 0) certRequestsBefore = server.requests.length
    certRuns++
    await new ServicePrincipalAuthentication({
      tenantId: TENANT,
      servicePrincipalId: CLIENT,
      certificate: clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem }),
      authorityHost: server.origin,
      env: {},
      cache: createTokenCache(),
    }).getToken()
  },
)

async function pssKey(pem: string): Promise<CryptoKey> {
  const der = Uint8Array.from(
    atob(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')),
    (c) => c.charCodeAt(0),
  )
  return await crypto.subtle.importKey('pkcs8', der, { name: 'RSA-PSS', hash: 'SHA-256' }, false, [
    'sign',
  ])
}
const key2048 = await pssKey(rsa2048KeyPem)
const key4096 = await pssKey(rsa4096KeyPem)
const payload = new TextEncoder().encode('x'.repeat(600))
Deno.bench('RSA-PSS SHA-256 sign, 2048-bit', { group: 'sign' }, async () => {
  await crypto.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, key2048, payload)
})
Deno.bench('RSA-PSS SHA-256 sign, 4096-bit', { group: 'sign' }, async () => {
  await crypto.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, key4096, payload)
})

Deno.bench('construct a certificate credential (sync PEM parse and key match, RSA-4096)', {
  group: 'construct',
}, () => {
  new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: CLIENT,
    certificate: clientCertificate({ privateKey: rsa4096KeyPem, certificate: rsa4096CertPem }),
    env: {},
  })
})

/**
 * Continuous use over `minutes` simulated minutes: every 10 s, tokens for ARM and Azure ML.
 * Tokens live `lifetimeS`. Returns token requests and distinct assertions (= signings).
 */
async function simulate(minutes: number, lifetimeS: number) {
  const clock = fakeClock()
  const assertions = new Set<string>()
  let requests = 0
  const fetch = (_input: string | URL | Request, init?: RequestInit) => {
    requests++
    assertions.add(new URLSearchParams(String(init?.body)).get('client_assertion')!)
    return Promise.resolve(
      Response.json({
        token_type: 'Bearer',
        expires_in: lifetimeS,
        access_token: crypto.randomUUID(),
      }),
    )
  }
  const auth = new ServicePrincipalAuthentication({
    tenantId: TENANT,
    servicePrincipalId: CLIENT,
    certificate: clientCertificate({ privateKey: rsa2048KeyPem, certificate: rsa2048CertPem }),
    authorityHost: 'https://login.microsoftonline.com',
    env: {},
    cache: createTokenCache(),
    fetch,
    now: clock.now,
    sleep: clock.sleep,
  })
  for (let t = 0; t < minutes * 60; t += 10) {
    await auth.getToken(ARM)
    await auth.getToken(AML)
    // Let background refreshes finish before the clock moves on.
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0))
    clock.advance(10_000)
  }
  const iats = [...assertions].map((a) => _decodeJwt(a).iat as number)
  return { requests, signings: assertions.size, iats }
}

// Module import time in a fresh process (what a cold isolate pays), measured inside the child.
const importTimes: Record<string, number[]> = {}
async function importTime(specifier: string): Promise<number> {
  const code = `const t = performance.now(); await import(${JSON.stringify(specifier)}); ` +
    'console.log((performance.now() - t).toFixed(2))'
  const out = await new Deno.Command(Deno.execPath(), {
    args: ['eval', '--no-check', code],
    stdout: 'piped',
    stderr: 'null',
  }).output()
  const ms = Number(new TextDecoder().decode(out.stdout).trim())
  ;(importTimes[specifier] ??= []).push(ms)
  return ms
}
const MOD = new URL('../mod.ts', import.meta.url).href
const SP = new URL('../src/credentials/service_principal.ts', import.meta.url).href
Deno.bench('fresh process: deno eval + await import(mod.ts)', {
  group: 'import',
  n: 10,
  warmup: 1,
}, async () => {
  await importTime(MOD)
})
Deno.bench('fresh process: deno eval + await import(service_principal.ts)', {
  group: 'import',
  n: 10,
  warmup: 1,
}, async () => {
  await importTime(SP)
})

globalThis.addEventListener('unload', () => {
  const cold = server.requests.length
  report.push(
    `report: cold secret credential: ${coldRuns} first tokens, ` +
      `${(certRequestsBefore >= 0 ? certRequestsBefore : cold) - coldRequestsBefore} HTTP requests`,
  )
  if (certRequestsBefore >= 0) {
    report.push(
      `report: cold certificate credential: ${certRuns} first tokens, ${
        cold - certRequestsBefore
      } HTTP requests`,
    )
  }
  for (const [spec, times] of Object.entries(importTimes)) {
    const sorted = [...times].sort((a, b) => a - b)
    report.push(
      `report: import ${spec.split('/').slice(-1)[0]} in a fresh process: median ${
        sorted[Math.floor(sorted.length / 2)]
      } ms (min ${sorted[0]}, max ${sorted[sorted.length - 1]}, n=${sorted.length})`,
    )
  }
  // deno-lint-ignore no-console
  for (const line of report) console.log(line)
})

// The signing counts do not depend on timing: compute them once, up front.
for (const [lifetime, label] of [[3599, '1 h tokens'], [120, '2 min tokens']] as const) {
  const r = await simulate(60, lifetime)
  const gaps = r.iats.slice(1).map((v, i) => v - r.iats[i]!)
  report.push(
    `report: 60 simulated minutes, ARM + AML every 10 s, ${label}: ${r.requests} token ` +
      `requests, ${r.signings} assertions signed` +
      (gaps.length ? ` (one every ${Math.min(...gaps)}-${Math.max(...gaps)} s)` : ''),
  )
}

// Closing the server: cached hits need no network, the cold benches run before unload.
globalThis.addEventListener('unload', () => {
  server.close()
})
