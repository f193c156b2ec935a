/**
 * Throughput of the emulator's token endpoint (`deno bench -A bench/emulator_bench.ts`).
 *
 * Each "x100" case sends 100 concurrent client-credentials requests over loopback HTTP; tokens per
 * second = 100 / (time per iteration). The "sign only" case isolates the RS256 signature, the
 * bottleneck; "tokenReuseSeconds" shows the cost without signing.
 *
 * @module
 */
import { DEMO, startEmulator } from '../workers/emulator/serve.ts'

const form = new URLSearchParams({
  grant_type: 'client_credentials',
  client_id: DEMO.clientId,
  client_secret: DEMO.clientSecret,
  scope: 'https://management.core.windows.net//.default',
}).toString()
const headers = { 'content-type': 'application/x-www-form-urlencoded' }

const signing = await startEmulator()
const reusing = await startEmulator({ config: { tokenReuseSeconds: 60 } })
const imdsEmu = signing
const tokenUrl = signing.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)
const reuseUrl = reusing.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)
const imdsUrl = imdsEmu.url(
  '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/',
)

async function burst(url: string, n: number, init: RequestInit): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, async () => {
      const res = await fetch(url, init)
      if (res.status !== 200) throw new Error(`status ${res.status}`)
      await res.arrayBuffer()
    }),
  )
}

Deno.bench('token endpoint, client_credentials, 1 request', { group: 'single' }, async () => {
  await burst(tokenUrl, 1, { method: 'POST', body: form, headers })
})

Deno.bench('token endpoint, client_credentials, x100 concurrent', {
  group: 'burst',
  baseline: true,
}, async () => {
  await burst(tokenUrl, 100, { method: 'POST', body: form, headers })
})

Deno.bench('IMDS managed identity, x100 concurrent', { group: 'burst' }, async () => {
  await burst(imdsUrl, 100, { headers: { Metadata: 'true' } })
})

Deno.bench(
  'token endpoint with tokenReuseSeconds: 60, x100 concurrent',
  { group: 'burst' },
  async () => {
    await burst(reuseUrl, 100, { method: 'POST', body: form, headers })
  },
)

Deno.bench('RS256 sign only (in-process mint), x100', { group: 'burst' }, async () => {
  await Promise.all(Array.from({ length: 100 }, () => signing.mintAccessToken()))
})

globalThis.addEventListener('unload', () => {
  signing.stop()
  reusing.stop()
})
