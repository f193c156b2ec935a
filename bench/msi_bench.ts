// deno bench -A bench/msi_bench.ts
// MsiAuthentication against the local identity emulator (IMDS and App Service routes over real
// loopback HTTP): a cold herd of 1000 concurrent callers must cause exactly one request to the
// identity endpoint (the Python SDK asked on every call; @azure/identity once per concurrent
// caller), and a cached getToken() is the hot path.
// deno-lint-ignore-file no-console
import { createTokenCache } from '../mod.ts'
import { MsiAuthentication } from '../src/credentials/msi.ts'
import { startEmulator } from '../workers/emulator/serve.ts'

const emu = await startEmulator()
const HERD = 1000

/** One cold herd on a fresh cache; returns the identity-endpoint requests it caused. */
async function coldHerd(env: Record<string, string>, route: 'mi.imds' | 'mi.app-service') {
  const before = emu.requests({ route }).length
  const auth = new MsiAuthentication({ env, cache: createTokenCache() })
  const tokens = await Promise.all(Array.from({ length: HERD }, () => auth.getToken()))
  if (!tokens.every((t) => t === tokens[0])) throw new Error('callers got different tokens')
  return emu.requests({ route }).length - before
}

// The count, reported once before the timed runs.
for (const [name, route] of [['imds', 'mi.imds'], ['app-service', 'mi.app-service']] as const) {
  const requests = await coldHerd(emu.env(name), route)
  console.log(`msi (${name}): ${HERD} concurrent cold callers -> ${requests} identity request(s)`)
  if (requests !== 1) throw new Error(`expected 1 identity request, got ${requests}`)
}
emu.clearRequests()

const imds = new MsiAuthentication({ env: emu.env('imds'), cache: createTokenCache() })
await imds.getToken()
await imds.getToken('https://ml.azure.com/.default')

Deno.bench('msi cached getToken() (ARM)', { group: 'msi-hit', baseline: true }, async () => {
  await imds.getToken()
})

Deno.bench('msi cached getToken(Azure ML scope)', { group: 'msi-hit' }, async () => {
  await imds.getToken('https://ml.azure.com/.default')
})

Deno.bench('msi cached getAuthenticationHeader()', { group: 'msi-hit' }, async () => {
  await imds.getAuthenticationHeader()
})

Deno.bench(
  `msi (imds): ${HERD} concurrent cold callers, one emulator request`,
  { group: 'msi-cold', n: 20, warmup: 2 },
  async () => {
    const requests = await coldHerd(emu.env('imds'), 'mi.imds')
    if (requests !== 1) throw new Error(`expected 1 identity request, got ${requests}`)
  },
)

Deno.bench(
  `msi (app-service): ${HERD} concurrent cold callers, one emulator request`,
  { group: 'msi-cold', n: 20, warmup: 2 },
  async () => {
    const requests = await coldHerd(emu.env('app-service'), 'mi.app-service')
    if (requests !== 1) throw new Error(`expected 1 identity request, got ${requests}`)
  },
)

// Stop the emulator when the process ends (deno bench has no afterAll).
globalThis.addEventListener('unload', () => {
  emu.stop()
})
