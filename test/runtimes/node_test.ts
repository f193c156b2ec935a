// Runtime matrix, Node: `mod.ts` bundled into one ESM file (the npm-consumable build of the
// README: `deno bundle --platform browser --format esm -o dist/aml-edge-auth.mjs mod.ts`), the
// smoke suite bundled the same way, and both imported by a plain Node script
// (test/_fixtures/runtimes/node_smoke.mjs) that runs the suite against the emulator. The process
// must also exit on its own: no timer or socket of the module may keep Node alive.
import { assert, assertEquals, assertMatch } from '@std/assert'
import {
  assertSmoke,
  bundle,
  PUBLIC_API,
  SMOKE,
  smokeEnvData,
  startSmokeEmulator,
} from './_harness.ts'
import type { SmokeResult } from './smoke.ts'

const RUNNER = new URL('../_fixtures/runtimes/node_smoke.mjs', import.meta.url).pathname
/** A hang guard, not a timing assertion: the run takes well under a second. */
const HANG_GUARD_MS = 60_000

Deno.test('smoke suite passes on Node with the ESM build of mod.ts', async () => {
  const dir = await Deno.makeTempDir({ prefix: 'aml-smoke-node-' })
  await using emu = await startSmokeEmulator()
  try {
    const libPath = `${dir}/aml-edge-auth.mjs`
    const smokePath = `${dir}/smoke.mjs`
    await bundle(PUBLIC_API, libPath)
    await bundle(SMOKE, smokePath)
    const child = new Deno.Command('node', {
      args: [RUNNER, libPath, smokePath],
      stdin: 'piped',
      stdout: 'piped',
      stderr: 'piped',
      env: { NODE_NO_WARNINGS: '1' },
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    }).spawn()
    const writer = child.stdin.getWriter()
    await writer.write(new TextEncoder().encode(JSON.stringify(await smokeEnvData(emu, 'node'))))
    await writer.close()
    const out = await child.output()
    const stderr = new TextDecoder().decode(out.stderr)
    assert(out.success, `node exited with ${out.code} (signal ${out.signal}): ${stderr}`)
    const { node, results } = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      node: string
      results: SmokeResult[]
    }
    assertMatch(node, /^\d+\.\d+\.\d+$/)
    assertEquals(stderr, '')
    assertSmoke(results)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})
