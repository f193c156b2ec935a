import { assert, assertEquals, assertMatch, assertStringIncludes } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { caCertPem, localhostCertPem, localhostKeyPem } from '../../_fixtures/certs.ts'

const MAIN = new URL('../../../workers/emulator/main.ts', import.meta.url).pathname

Deno.test('startEmulator() serves https with the given certificate', async () => {
  await using emu = await startEmulator({ tls: { cert: localhostCertPem, key: localhostKeyPem } })
  assertMatch(emu.origin, /^https:\/\/127\.0\.0\.1:\d+$/)
  using client = Deno.createHttpClient({ caCerts: [caCertPem] })
  const res = await fetch(emu.url(`/${DEMO.tenantId}/v2.0/.well-known/openid-configuration`), {
    client,
  })
  const doc = await res.json()
  assertEquals(doc.issuer, `${emu.origin}/${DEMO.tenantId}/v2.0`)
})

Deno.test('startEmulator() binds loopback on a free port; stop() removes its Arc folder', async () => {
  const emu = await startEmulator()
  try {
    assertEquals(emu.hostname, '127.0.0.1')
    assert(emu.port > 0)
    assertEquals(emu.url('x'), `${emu.origin}/x`)
    assertEquals((await Deno.stat(emu.arcKeyDir)).isDirectory, true)
  } finally {
    await emu.stop()
    await emu.stop()
  }
  let gone = false
  try {
    await Deno.stat(emu.arcKeyDir)
  } catch (e) {
    gone = e instanceof Deno.errors.NotFound
  }
  assert(gone)
})

Deno.test('startEmulator() writes Arc keys into a chosen folder and leaves the folder', async () => {
  const dir = await Deno.makeTempDir()
  try {
    {
      await using emu = await startEmulator({ arcKeyDir: dir })
      const url = `${
        emu.env('arc').IDENTITY_ENDPOINT
      }?api-version=2020-06-01&resource=https://management.azure.com/`
      const res = await fetch(url, { headers: { Metadata: 'true' } })
      await res.body?.cancel()
      const realm = res.headers.get('www-authenticate')!.slice('Basic realm='.length)
      assert(realm.startsWith(`${dir}/`))
      assertEquals((await Deno.stat(realm)).size, 64)
    }
    assertEquals((await Deno.stat(dir)).isDirectory, true)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('main.ts --print-env prints shell exports; --help; a bad flag fails', async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ['run', '-A', MAIN, ...args],
      stdout: 'piped',
      stderr: 'piped',
    }).output()
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    }
  }
  const env = await run('--print-env', 'service-fabric', '--port', '9999')
  assertEquals(env.code, 0, env.stderr)
  assertEquals(env.stdout.trim().split('\n'), [
    "export IDENTITY_ENDPOINT='http://127.0.0.1:9999/msi/service-fabric/token'",
    `export IDENTITY_HEADER='${DEMO.msiSecret}'`,
    `export IDENTITY_SERVER_THUMBPRINT='${DEMO.serviceFabricThumbprint}'`,
  ])
  const help = await run('--help')
  assertEquals(help.code, 0)
  assertStringIncludes(help.stdout, '--print-env')
  const bad = await run('--nope', '1')
  assertEquals(bad.code, 2)
  assertStringIncludes(bad.stderr, 'unknown option --nope')
  const badSource = await run('--print-env', 'moon')
  assertEquals(badSource.code, 2)
})

Deno.test('main.ts starts, prints where it listens and the demo credentials, stops on SIGTERM', async () => {
  const dir = await Deno.makeTempDir()
  const configPath = `${dir}/emulator.json`
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({ armPageSize: 5, managedIdentity: { secret: 'from-config' } }),
  )
  const child = new Deno.Command(Deno.execPath(), {
    args: ['run', '-A', MAIN, '--port', '0', '--config', configPath, '--arc-key-dir', dir],
    stdout: 'piped',
    stderr: 'piped',
  }).spawn()
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    while (!text.includes('service-fabric:')) {
      const { value, done } = await reader.read()
      if (done) break
      text += value
    }
    const origin = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text)![1]!
    assertStringIncludes(text, DEMO.clientSecret)
    assertStringIncludes(text, 'MSI secret        from-config')
    const res = await fetch(`${origin}/__emulator/settings`)
    assertEquals((await res.json()).armPageSize, 5)
    child.kill('SIGTERM')
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status
    assertEquals(status.code, 0)
  } finally {
    await child.stderr.cancel()
    await Deno.remove(dir, { recursive: true })
  }
})
