// deno run -A bench/report.ts — the figures quoted in the README, side by side in one run:
// cached getToken() throughput and per-call latency percentiles, and cold-herd request counts.
// deno-lint-ignore-file no-console
import { createTokenCache, TokenAuthentication } from '../mod.ts'
import { herd } from './_herd.ts'

const auth = new TokenAuthentication(() => ({ token: 'bench', expiresOn: 4102444800 }), {
  cache: createTokenCache(),
})
await auth.getToken()

async function throughput(calls: number): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < calls; i++) await auth.getToken()
  return calls / ((performance.now() - t0) / 1000)
}

async function latencies(calls: number): Promise<{ p50: number; p99: number }> {
  const samples = new Float64Array(calls)
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await auth.getToken()
    samples[i] = performance.now() - t0
  }
  samples.sort()
  const at = (q: number) => samples[Math.min(calls - 1, Math.floor(q * calls))]! * 1000
  return { p50: at(0.5), p99: at(0.99) }
}

await throughput(500_000) // warm-up: let the JIT settle
const runs = [await throughput(2_000_000), await throughput(2_000_000), await throughput(2_000_000)]
const best = Math.max(...runs)
const { p50, p99 } = await latencies(1_000_000)
const h200 = await herd(200)
const h1000 = await herd(1000)

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
console.log(
  `machine: ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${Deno.build.os}`,
)
console.log('| measure | value |')
console.log('| --- | --- |')
console.log(`| cached getToken() calls/s (best of 3 x 2M) | ${fmt(best)} |`)
console.log(
  `| cached getToken() p50 / p99 per call (µs, incl. timer) | ${p50.toFixed(2)} / ${
    p99.toFixed(2)
  } |`,
)
console.log(
  `| 200 concurrent cold callers: upstream requests | ${h200.requests} (${
    h200.ms.toFixed(1)
  } ms) |`,
)
console.log(
  `| 1000 concurrent cold callers: upstream requests | ${h1000.requests} (${
    h1000.ms.toFixed(1)
  } ms) |`,
)
