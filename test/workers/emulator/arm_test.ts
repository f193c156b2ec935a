import { assertEquals, assertStringIncludes } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import { ARM_SCOPE, get, postForm } from './_helpers.ts'

Deno.test('ARM subscriptions behind an emulator-issued ARM token', async (t) => {
  await using emu = await startEmulator()
  const res = await postForm(emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`), {
    grant_type: 'client_credentials',
    client_id: DEMO.clientId,
    client_secret: DEMO.clientSecret,
    scope: ARM_SCOPE,
  })
  const bearer = { Authorization: `Bearer ${res.body.access_token}` }
  const list = emu.url('/subscriptions?api-version=2022-12-01')

  await t.step('pages of armPageSize (default 2) linked by nextLink', async () => {
    const first = await get(list, bearer)
    assertEquals(first.status, 200)
    const items = first.body.value as Record<string, unknown>[]
    assertEquals(items.length, 2)
    assertEquals(items[0], {
      ...items[0],
      id: `/subscriptions/${DEMO.subscriptions[0]!.subscriptionId}`,
      subscriptionId: DEMO.subscriptions[0]!.subscriptionId,
      displayName: DEMO.subscriptions[0]!.displayName,
      tenantId: DEMO.tenantId,
      state: 'Enabled',
    })
    const next = String(first.body.nextLink)
    assertStringIncludes(next, emu.origin)
    assertStringIncludes(next, 'api-version=2022-12-01')
    const second = await get(next, bearer)
    assertEquals((second.body.value as unknown[]).length, 1)
    assertEquals(second.body.nextLink, undefined)
  })

  await t.step('a larger page size returns everything at once', async () => {
    emu.updateSettings({ armPageSize: 50 })
    const all = await get(list, bearer)
    assertEquals((all.body.value as unknown[]).length, 3)
    assertEquals(all.body.nextLink, undefined)
    emu.updateSettings({ armPageSize: 2 })
  })

  await t.step('subscriptions of another tenant are not listed', async () => {
    emu.register({
      subscriptions: [{
        subscriptionId: '9f9f9f9f-0000-4000-8000-000000000000',
        displayName: 'Other',
        tenantId: DEMO.secondTenantId,
      }],
    })
    const ids: string[] = []
    let url: string | undefined = list
    while (url) {
      const page = await get(url, bearer)
      ids.push(...(page.body.value as { subscriptionId: string }[]).map((s) => s.subscriptionId))
      url = page.body.nextLink as string | undefined
    }
    assertEquals(ids, DEMO.subscriptions.map((s) => s.subscriptionId))
  })

  await t.step('GET /subscriptions/{id} and /tenants', async () => {
    const one = await get(
      emu.url(`/subscriptions/${DEMO.subscriptions[1]!.subscriptionId}?api-version=2022-12-01`),
      bearer,
    )
    assertEquals(one.body.displayName, DEMO.subscriptions[1]!.displayName)
    const missing = await get(
      emu.url('/subscriptions/00000000-0000-0000-0000-000000000000?api-version=2022-12-01'),
      bearer,
    )
    assertEquals(missing.status, 404)
    assertEquals((missing.body.error as Record<string, string>).code, 'SubscriptionNotFound')
    const tenants = await get(emu.url('/tenants?api-version=2022-12-01'), bearer)
    assertEquals((tenants.body.value as { tenantId: string }[])[0]!.tenantId, DEMO.tenantId)
  })

  await t.step(
    "401 with ARM's error shape: no header, bad token, wrong audience, expired",
    async () => {
      const code = (r: { body: Record<string, unknown> }) =>
        (r.body.error as Record<string, string>).code
      const none = await get(list)
      assertEquals(none.status, 401)
      assertEquals(code(none), 'AuthenticationFailed')
      assertStringIncludes(none.headers.get('www-authenticate')!, 'Bearer')
      const junk = await get(list, { Authorization: 'Bearer not.a.jwt' })
      assertEquals(junk.status, 401)
      assertEquals(code(junk), 'InvalidAuthenticationToken')
      const ml = await emu.mintAccessToken({ resource: 'https://ml.azure.com' })
      const wrongAud = await get(list, { Authorization: `Bearer ${ml.accessToken}` })
      assertEquals(wrongAud.status, 401)
      assertEquals(code(wrongAud), 'InvalidAuthenticationTokenAudience')
      const old = await emu.mintAccessToken({ lifetimeSeconds: -60 })
      const expired = await get(list, { Authorization: `Bearer ${old.accessToken}` })
      assertEquals(expired.status, 401)
      assertEquals(code(expired), 'ExpiredAuthenticationToken')
      const run = await emu.mintRunToken({ ...DEMO.workspace })
      const runToken = await get(list, { Authorization: `Bearer ${run.token}` })
      assertEquals(runToken.status, 401)
      const basic = await get(list, { Authorization: 'Basic abc' })
      assertEquals(code(basic), 'AuthenticationFailedInvalidHeader')
    },
  )

  await t.step('missing api-version: 400 MissingApiVersionParameter', async () => {
    const res = await get(emu.url('/subscriptions'), bearer)
    assertEquals(res.status, 400)
    assertEquals((res.body.error as Record<string, string>).code, 'MissingApiVersionParameter')
  })

  await t.step('tokens of every ARM audience and of managed identities are accepted', async () => {
    for (
      const resource of [
        'https://management.azure.com/',
        'https://management.core.usgovcloudapi.net/',
      ]
    ) {
      const tok = await emu.mintAccessToken({ resource })
      assertEquals((await get(list, { Authorization: `Bearer ${tok.accessToken}` })).status, 200)
    }
    const mi = await emu.mintAccessToken({ identity: DEMO.userIdentity.clientId })
    assertEquals((await get(list, { Authorization: `Bearer ${mi.accessToken}` })).status, 200)
  })
})
