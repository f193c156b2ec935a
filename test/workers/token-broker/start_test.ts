// The README's `deno task start` path, end to end: spawn it, wait for the ready line, run the
// printed curl command (as fetch), verify the token against the emulator's keys, send SIGINT and
// expect a clean exit.
import { assert, assertEquals, assertMatch } from '@std/assert'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { DEMO } from '../../../workers/emulator/serve.ts'
import { REPO_ROOT } from '../../../workers/token-broker/build.ts'

Deno.test('deno task start serves a real token and exits 0 on SIGINT', async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ['task', 'start', '--port', '0'],
    cwd: REPO_ROOT,
    stdin: 'null',
    stdout: 'piped',
    stderr: 'piped',
    env: { NO_COLOR: '1' },
  }).spawn()
  let out = ''
  let err = ''
  let readyResolve: (url: string) => void = () => {}
  const ready = new Promise<string>((resolve) => (readyResolve = resolve))
  const decoder = new TextDecoder()
  const drainOut = (async () => {
    for await (const chunk of child.stdout) {
      out += decoder.decode(chunk, { stream: true })
      const m = /Token broker ready at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m) readyResolve(m[1]!)
    }
  })()
  const drainErr = (async () => {
    for await (const chunk of child.stderr) err += decoder.decode(chunk, { stream: true })
  })()
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const url = await Promise.race([
      ready,
      child.status.then(() => Promise.reject(new Error(`exited early:\n${out}\n${err}`))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no ready line in 90 s:\n${out}\n${err}`)),
          90_000,
        )
      }),
    ])
    clearTimeout(timer)
    // The printed curl command, run as fetch.
    const curl = /curl -s -X POST (\S+) -H '([^:]+): ([^']+)' -H '([^:]+): ([^']+)' -d '([^']+)'/
      .exec(out)
    assert(curl, `no curl command in:\n${out}`)
    const [, target, h1, v1, h2, v2, body] = curl
    assertEquals(new URL(target!).origin, url)
    const res = await fetch(target!, {
      method: 'POST',
      headers: { [h1!]: v1!, [h2!]: v2! },
      body: body!,
    })
    const json = await res.json()
    assertEquals(res.status, 200, JSON.stringify(json))
    assertEquals(json.token_type, 'Bearer')
    assertEquals(res.headers.get('cache-control'), 'no-store')
    // The token is the emulator's: verify it with the keys its discovery document names.
    const emulator = /emulator\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!
    const discovery = await (await fetch(
      `${emulator}/${DEMO.tenantId}/v2.0/.well-known/openid-configuration`,
    )).json()
    const { payload } = await jwtVerify(
      json.access_token,
      createRemoteJWKSet(new URL(discovery.jwks_uri)),
      { audience: 'https://ml.azure.com' },
    )
    assertEquals(payload.tid, DEMO.tenantId)
    assertEquals(payload.appid, DEMO.clientId)
    // The demo key is printed once, and is the one the curl command carries.
    const key = /demo API key[^\n]*\n\s+(abk_\S+)/.exec(out)![1]!
    assertEquals(v1 === key || v2 === key, true)
    assertMatch(out, /ready at/)
  } finally {
    clearTimeout(timer)
    try {
      child.kill('SIGINT')
    } catch {
      // already gone
    }
  }
  const status = await child.status
  await drainOut
  await drainErr
  assertEquals(status.code, 0, `exit ${status.code}:\n${out}\n${err}`)
  assertMatch(out, /stopping the token broker and the emulator/)
})
