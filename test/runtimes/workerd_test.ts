// Runtime matrix, workerd: the portable smoke suite bundled into a Worker
// (`deno bundle --platform browser --format esm`) and run inside Miniflare's workerd. Every fetch
// the Worker makes (token endpoint, managed identity, ARM, the emulator's request log) leaves
// through `outboundService`, which forwards it to the emulator on 127.0.0.1. Managed identity is
// asserted to be refused there: the module rejects loopback/link-local managed-identity endpoints
// on Cloudflare Workers by design, and points to the token broker worker instead.
import { assertEquals } from '@std/assert'
import { Miniflare } from 'miniflare'
import { assertSmoke, bundle, smokeEnvData, startSmokeEmulator } from './_harness.ts'
import type { SmokeResult } from './smoke.ts'

const ENTRY = new URL('../_fixtures/runtimes/worker_entry.ts', import.meta.url).pathname

/** Forwards a request that left the Worker to the emulator, unchanged. */
async function forward(req: Request): Promise<Response> {
  const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.text()
  const res = await fetch(req.url, {
    method: req.method,
    headers: Object.fromEntries(req.headers),
    ...(body ? { body } : {}),
  })
  return new Response(await res.arrayBuffer(), { status: res.status, headers: res.headers })
}

/**
 * workerd's startup error, with the bundle's top-level statements that do what a Worker's global
 * scope forbids (random values, timers, I/O) and the source modules they come from.
 */
function startupError(e: unknown, code: string): Error {
  const message = e instanceof Error ? e.message : String(e)
  const lines = code.split('\n')
  const forbidden =
    /^(?:(?:var|let|const) [^=]+= )?[^\s].*\b(?:crypto\.(?:randomUUID|getRandomValues)|setTimeout|setInterval|fetch)\(/
  const culprits = lines.flatMap((l, i) => {
    if (!forbidden.test(l)) return []
    const source = lines.slice(0, i).reverse().find((s) => /^\/\/ \S+\.ts$/.test(s))
    return [`${source?.slice(3) ?? 'unknown module'}: \`${l.trim()}\``]
  })
  return new Error(
    `workerd refused to start the bundled public API (${message.split('\n')[0]}).\n` +
      `Top-level statements a Worker's global scope forbids:\n- ${culprits.join('\n- ')}`,
    { cause: e },
  )
}

Deno.test('smoke suite passes inside workerd (Miniflare), managed identity refused', async () => {
  const dir = await Deno.makeTempDir({ prefix: 'aml-smoke-workerd-' })
  await using emu = await startSmokeEmulator()
  const scriptPath = `${dir}/worker.mjs`
  const code = await bundle(ENTRY, scriptPath)
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    // Module names are relative to this root; workerd refuses paths that climb out with '..'.
    modulesRoot: dir,
    compatibilityDate: '2026-07-30',
    outboundService: forward,
  })
  let started = true
  try {
    const res = await mf.dispatchFetch('http://worker.test/', {
      method: 'POST',
      body: JSON.stringify(await smokeEnvData(emu, 'workerd')),
    }).catch((e) => {
      started = false
      throw startupError(e, code)
    })
    const text = await res.text()
    assertEquals(res.status, 200, text)
    assertSmoke(JSON.parse(text) as SmokeResult[])
  } finally {
    // After a failed start, dispose() rejects with the same startup error: keep ours.
    await mf.dispose().catch((e) => {
      if (started) throw e
    })
    await Deno.remove(dir, { recursive: true })
  }
})
