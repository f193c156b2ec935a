// The certificate flow of ServicePrincipalAuthentication inside workerd (Miniflare): the
// credential is bundled for the browser platform, so no Deno or Node API can be reached, and the
// PS256 client assertion is signed with workerd's Web Crypto. Upstream calls leave the Worker
// through `outboundService`, which records them and forwards them to the emulator.
import { assert, assertEquals, assertExists, assertMatch } from '@std/assert'
import { Miniflare } from 'miniflare'
import { DEMO, startEmulator } from '../../workers/emulator/serve.ts'
import { _decodeJwt } from '../../src/jwt.ts'
import { chainKeyPem, chainPem } from '../_fixtures/certs.ts'

const CLIENT = '8b1e2d3c-4b5a-4697-8887-1a2b3c4d5e71'
const ENTRY = new URL('../_fixtures/workerd_sp_entry.ts', import.meta.url).pathname

async function bundle(out: string): Promise<void> {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ['bundle', '--platform', 'browser', '--format', 'esm', '-o', out, ENTRY],
    stdout: 'piped',
    stderr: 'piped',
  }).output()
  assert(res.success, new TextDecoder().decode(res.stderr))
}

interface Seen {
  method: string
  url: string
  form: URLSearchParams
}

Deno.test('ServicePrincipalAuthentication signs a certificate assertion inside workerd', async () => {
  const dir = await Deno.makeTempDir({ prefix: 'sp-workerd-' })
  await using emu = await startEmulator({
    config: { clients: [{ clientId: CLIENT, tenantId: DEMO.tenantId, certificates: [chainPem] }] },
  })
  const scriptPath = `${dir}/worker.js`
  await bundle(scriptPath)
  const bundled = await Deno.readTextFile(scriptPath)
  assert(!/from\s*['"]node:/.test(bundled), 'the bundle imports no Node module')
  const seen: Seen[] = []
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    // Module names are relative to this root; workerd refuses paths that climb out with '..'.
    modulesRoot: dir,
    compatibilityDate: '2026-07-30',
    bindings: {
      TENANT_ID: DEMO.tenantId,
      CLIENT_ID: CLIENT,
      PRIVATE_KEY: chainKeyPem,
      CERTIFICATE: chainPem,
      AUTHORITY_HOST: emu.origin,
      SEND_CHAIN: 'true',
    },
    outboundService: async (req: Request) => {
      const body = await req.text()
      seen.push({ method: req.method, url: req.url, form: new URLSearchParams(body) })
      const res = await fetch(req.url, {
        method: req.method,
        headers: Object.fromEntries(req.headers),
        ...(body ? { body } : {}),
      })
      return new Response(await res.text(), { status: res.status, headers: res.headers })
    },
  })
  try {
    const res = await mf.dispatchFetch('http://worker.test/token')
    const body = await res.json() as Record<string, unknown>
    assertEquals(res.status, 200, JSON.stringify(body))
    assertEquals(body.userAgent, 'Cloudflare-Workers')
    assertEquals(body.hasDeno, false)
    const claims = _decodeJwt(String(body.token))
    assertEquals(claims.aud, 'https://management.core.windows.net/')
    assertEquals(claims.tid, DEMO.tenantId)

    // What the Worker sent, seen at the boundary: one POST to the token endpoint.
    assertEquals(seen.length, 1)
    assertEquals(seen[0]!.method, 'POST')
    assertEquals(seen[0]!.url, `${emu.origin}/${DEMO.tenantId}/oauth2/v2.0/token`)
    assertEquals([...seen[0]!.form.keys()], [
      'grant_type',
      'client_id',
      'scope',
      'client_assertion_type',
      'client_assertion',
    ])
    // And what the emulator verified: the PS256 signature, x5t#S256 and the chain in x5c.
    const logged = emu.requests({ route: 'entra.token' })
    assertEquals(logged.map((r) => r.status), [200])
    const a = logged[0]!.assertion
    assertExists(a)
    assertEquals(a.header.alg, 'PS256')
    assertMatch(String(a.header['x5t#S256']), /^[A-Za-z0-9_-]{43}$/)
    assertEquals((a.header.x5c as string[]).length, 2)
    assertEquals(a.claims.iss, CLIENT)
    assertEquals(a.claims.aud, `${emu.origin}/${DEMO.tenantId}/oauth2/v2.0/token`)

    // A second audience in the same isolate: the cached key signs again (the emulator refuses
    // the reused jti once, so the Worker re-signs), and a repeated call is served from cache.
    const aml = await mf.dispatchFetch(
      'http://worker.test/token?scope=' + encodeURIComponent('https://ml.azure.com/.default'),
    )
    const amlBody = await aml.json() as Record<string, unknown>
    assertEquals(aml.status, 200, JSON.stringify(amlBody))
    assertEquals(_decodeJwt(String(amlBody.token)).aud, 'https://ml.azure.com')
    const again = await mf.dispatchFetch('http://worker.test/token')
    assertEquals((await again.json() as Record<string, unknown>).token, body.token)
    assertEquals(emu.requests({ route: 'entra.token' }).map((r) => r.status), [200, 401, 200])
  } finally {
    await mf.dispose()
    await Deno.remove(dir, { recursive: true })
  }
})
