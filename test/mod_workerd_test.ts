// The whole package inside workerd (Miniflare): a Worker that imports mod.ts and builds every
// credential at global scope must start (workerd refuses random values, timers and I/O there),
// and each credential must then work, or fail with its typed error, inside the handler.
import { assert, assertEquals, assertMatch } from '@std/assert'
import { Miniflare } from 'miniflare'
import { DEMO, startEmulator } from '../workers/emulator/serve.ts'
import { _decodeJwt } from '../src/jwt.ts'

const ENTRY = new URL('./_fixtures/workerd_global_entry.ts', import.meta.url).pathname

Deno.test('mod.ts loads in workerd and every credential can be built at global scope', async () => {
  const dir = await Deno.makeTempDir({ prefix: 'mod-workerd-' })
  await using emu = await startEmulator()
  const scriptPath = `${dir}/worker.js`
  const built = await new Deno.Command(Deno.execPath(), {
    args: ['bundle', '--platform', 'browser', '--format', 'esm', '-o', scriptPath, ENTRY],
    stdout: 'piped',
    stderr: 'piped',
  }).output()
  assert(built.success, new TextDecoder().decode(built.stderr))
  const sent: string[] = []
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: dir,
    compatibilityDate: '2026-07-30',
    // Entra ID is the emulator: the Worker keeps its default authority host.
    outboundService: async (req: Request) => {
      const url = new URL(req.url)
      sent.push(`${req.method} ${url.origin}${url.pathname}`)
      const body = req.method === 'POST' ? await req.text() : undefined
      const res = await fetch(emu.origin + url.pathname + url.search, {
        method: req.method,
        headers: Object.fromEntries(req.headers),
        ...(body !== undefined ? { body } : {}),
      })
      return new Response(await res.text(), { status: res.status, headers: res.headers })
    },
  })
  try {
    const res = await mf.dispatchFetch('http://worker.test/')
    const body = await res.json() as Record<string, { token?: string; code?: string }>
    assertEquals(res.status, 200, JSON.stringify(body))
    assertEquals(body.token, { token: 'Bearer callback-token' })
    assertEquals(body.arm, { token: 'Bearer arm-token' })
    assertEquals(body.run, { token: 'Bearer run-token' })
    assertEquals(body.interactive, { code: 'ERR_CREDENTIAL_UNAVAILABLE' })
    assertEquals(body.cli, { code: 'ERR_CREDENTIAL_UNAVAILABLE' })
    assertEquals(body.msi, { code: 'ERR_CREDENTIAL_UNAVAILABLE' })
    assertMatch(body.sp?.token ?? '', /^Bearer ey/)
    const claims = _decodeJwt(body.sp!.token!.slice('Bearer '.length))
    assertEquals(claims.aud, 'https://management.core.windows.net/')
    assertEquals(claims.appid ?? claims.azp, DEMO.clientId)
    assertEquals(sent, [
      `POST https://login.microsoftonline.com/${DEMO.tenantId}/oauth2/v2.0/token`,
    ])
  } finally {
    await mf.dispose()
    await Deno.remove(dir, { recursive: true })
  }
})
