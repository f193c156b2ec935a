// deno bench -A bench/token_cache_bench.ts
// The cache hit is the hot path: one Map lookup, one clock read, a promise resolved once.
import { createTokenCache, TokenAuthentication } from '../mod.ts'
import { herd } from './_herd.ts'

const auth = new TokenAuthentication(() => ({ token: 'bench', expiresOn: 4102444800 }), {
  cache: createTokenCache(),
})
await auth.getToken()
const aml = 'https://ml.azure.com/.default'
await auth.getToken(aml)

Deno.bench('cached getToken() (default ARM scope)', { group: 'hit', baseline: true }, async () => {
  await auth.getToken()
})

Deno.bench('cached getToken(scope string)', { group: 'hit' }, async () => {
  await auth.getToken(aml)
})

Deno.bench('cached getAuthenticationHeader()', { group: 'hit' }, async () => {
  await auth.getAuthenticationHeader()
})

Deno.bench('1000 concurrent cold callers over loopback HTTP', { n: 20, warmup: 2 }, async () => {
  const { requests } = await herd(1000)
  if (requests !== 1) throw new Error(`herd made ${requests} upstream requests, expected 1`)
})
