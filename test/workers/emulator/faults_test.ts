import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertRejects,
  assertStringIncludes,
} from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { ARM_SCOPE, assertEntraError, postForm } from './_helpers.ts'

const form = {
  grant_type: 'client_credentials',
  client_id: DEMO.clientId,
  client_secret: DEMO.clientSecret,
  scope: ARM_SCOPE,
}

Deno.test('fault injection and latency', async (t) => {
  await using emu = await startEmulator()
  const token = emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`)
  const imds = emu.url(
    '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/',
  )
  const post = () => fetch(token, { method: 'POST', body: new URLSearchParams(form) })

  await t.step(
    'the next N responses fail with the status and Retry-After, in Entra shape',
    async () => {
      emu.failNext({ route: 'entra.token', status: 503, count: 2, retryAfter: 7 })
      assertEquals(emu.faults()[0]!.remaining, 2)
      for (let i = 0; i < 2; i++) {
        const res = await postForm(token, form)
        assertEntraError(res, 503, 'temporarily_unavailable', 90033)
        assertEquals(res.headers.get('retry-after'), '7')
        assertEquals(res.headers.get('x-emulator-fault'), 'status')
      }
      assertEquals((await postForm(token, form)).status, 200)
      assertEquals(emu.faults(), [])
    },
  )

  await t.step('a fault applies only to its route; skip lets requests through first', async () => {
    emu.failNext({ route: 'mi.imds', status: 429, skip: 1 })
    assertEquals((await postForm(token, form)).status, 200)
    const first = await fetch(imds, { headers: { Metadata: 'true' } })
    await first.body?.cancel()
    assertEquals(first.status, 200)
    const second = await fetch(imds, { headers: { Metadata: 'true' } })
    const body = await second.json()
    assertEquals(second.status, 429)
    assertEquals(body.error_description, 'Temporarily throttled, too many requests')
    const log = emu.requests({ route: 'mi.imds' })
    assertEquals(log.at(-1)!.fault, 'status')
    assertEquals(log.at(-1)!.status, 429)
  })

  await t.step('410 and custom bodies; * matches every route', async () => {
    emu.failNext({
      route: '*',
      status: 410,
      body: 'gone for maintenance',
      headers: { 'x-extra': '1' },
    })
    const res = await fetch(imds, { headers: { Metadata: 'true' } })
    assertEquals(res.status, 410)
    assertEquals(res.headers.get('x-extra'), '1')
    assertEquals(await res.text(), 'gone for maintenance')
    emu.failNext({ route: 'arm.subscriptions', status: 500 })
    const arm = await fetch(emu.url('/subscriptions?api-version=2022-12-01'))
    assertEquals((await arm.json()).error.code, 'ServiceUnavailable')
  })

  await t.step('malformed JSON', async () => {
    emu.failNext({ route: 'entra.token', kind: 'malformed-json' })
    const res = await post()
    assertEquals(res.status, 200)
    assertStringIncludes(res.headers.get('content-type')!, 'application/json')
    await assertRejects(() => res.json(), SyntaxError)
  })

  await t.step('an HTML error page', async () => {
    emu.failNext({ route: 'entra.token', kind: 'html' })
    const res = await post()
    assertEquals(res.status, 502)
    assertStringIncludes(res.headers.get('content-type')!, 'text/html')
    assertStringIncludes(await res.text(), '<html>')
  })

  await t.step('an empty body', async () => {
    emu.failNext({ route: 'entra.token', kind: 'empty', status: 200 })
    const res = await post()
    assertEquals(res.status, 200)
    assertEquals(await res.text(), '')
  })

  await t.step('an oversized body', async () => {
    emu.failNext({ route: 'entra.token', kind: 'oversized', bytes: 3 * 1024 * 1024 })
    const res = await post()
    const buf = await res.arrayBuffer()
    assertEquals(buf.byteLength, 3 * 1024 * 1024)
    assertEquals(res.headers.get('content-length'), String(3 * 1024 * 1024))
  })

  await t.step('a dropped connection: the body read fails', async () => {
    emu.failNext({ route: 'entra.token', kind: 'drop' })
    const res = await post()
    assertEquals(res.status, 200)
    await assertRejects(() => res.text())
    assertEquals((await postForm(token, form)).status, 200, 'the next request works')
  })

  await t.step('latency per route and globally; delayMs on a fault', async () => {
    emu.setLatency('entra.token', 150)
    let t0 = performance.now()
    assertEquals((await postForm(token, form)).status, 200)
    assertGreaterOrEqual(performance.now() - t0, 140)
    emu.setLatency('entra.token', 0)
    emu.updateSettings({ latency: { '*': 100 } })
    t0 = performance.now()
    const r = await fetch(imds, { headers: { Metadata: 'true' } })
    await r.body?.cancel()
    assertGreaterOrEqual(performance.now() - t0, 90)
    emu.setLatency('*', 0)
    emu.failNext({ route: 'entra.token', status: 500, delayMs: 120 })
    t0 = performance.now()
    assertEquals((await postForm(token, form)).status, 500)
    assertGreaterOrEqual(performance.now() - t0, 110)
  })

  await t.step('bad fault specs are refused with the field named', () => {
    let msg = ''
    try {
      emu.failNext({ route: 'entra.nope' as 'entra.token' })
    } catch (e) {
      msg = (e as Error).message
    }
    assertStringIncludes(msg, 'fault.route')
    try {
      emu.failNext({ route: 'entra.token', status: 99 })
    } catch (e) {
      msg = (e as Error).message
    }
    assertStringIncludes(msg, 'fault.status')
  })

  await t.step('faults from the config are armed at start and again after reset', async () => {
    await using other = await startEmulator({
      config: { faults: [{ route: 'entra.jwks', status: 500 }] },
    })
    const url = other.url('/common/discovery/v2.0/keys')
    const a = await fetch(url)
    await a.body?.cancel()
    assertEquals(a.status, 500)
    const b = await fetch(url)
    await b.body?.cancel()
    assertEquals(b.status, 200)
    other.reset()
    const c = await fetch(url)
    await c.body?.cancel()
    assertEquals(c.status, 500)
  })

  assert(true)
})
