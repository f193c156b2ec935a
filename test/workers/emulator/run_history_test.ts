import { assertEquals, assertMatch, assertNotEquals } from '@std/assert'
import { DEMO, RUN_TOKEN_ISSUER, startEmulator } from '../../../workers/emulator/serve.ts'
import { claimsOf, get } from './_helpers.ts'

const W = DEMO.workspace
const base =
  `/history/v1.0/subscriptions/${W.subscriptionId}/resourceGroups/${W.resourceGroupName}` +
  `/providers/Microsoft.MachineLearningServices/workspaces/${W.workspaceName}`
const byName = `${base}/experiments/${W.experimentName}/runs/${W.runId}/token`
const byId = `${base}/experimentids/${W.experimentId}/runs/${W.runId}/token`

Deno.test('Azure ML run history: run-token refresh', async (t) => {
  await using emu = await startEmulator()

  await t.step(
    'a run token for this run buys a new one, by experiment name and by id',
    async () => {
      const first = await emu.mintRunToken({ ...W }, { lifetimeSeconds: 600 })
      assertMatch(first.expiryTimeUtc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      for (const path of [byName, byId]) {
        const res = await get(emu.url(path), { Authorization: `Bearer ${first.token}` })
        assertEquals(res.status, 200, res.text)
        assertNotEquals(res.body.token, first.token)
        const claims = claimsOf(String(res.body.token))
        assertEquals(claims.iss, RUN_TOKEN_ISSUER)
        assertEquals(Number(claims.exp) - Number(claims.iat), 600)
        assertEquals(new Date(String(res.body.expiryTimeUtc)).getTime() / 1000, claims.exp)
        assertEquals(Object.keys(res.body).sort(), ['expiryTimeUtc', 'token'])
      }
    },
  )

  await t.step('the control API mints run tokens too', async () => {
    const res = await fetch(emu.url('/__emulator/run-tokens'), {
      method: 'POST',
      body: JSON.stringify({ scope: { ...W }, lifetimeSeconds: 120 }),
    })
    const body = await res.json()
    assertEquals(res.status, 201)
    const refreshed = await get(emu.url(byName), { Authorization: `Bearer ${body.token}` })
    assertEquals(refreshed.status, 200)
    const bad = await fetch(emu.url('/__emulator/run-tokens'), {
      method: 'POST',
      body: JSON.stringify({ scope: {} }),
    })
    assertEquals(bad.status, 400)
    await bad.body?.cancel()
  })

  await t.step('401: no token, another run, an expired token, an ARM token', async () => {
    assertEquals((await get(emu.url(byName))).status, 401)
    const other = await emu.mintRunToken({ ...W, runId: 'other-run' })
    const wrongRun = await get(emu.url(byName), { Authorization: `Bearer ${other.token}` })
    assertEquals(wrongRun.status, 401)
    const { experimentId: _, ...withoutId } = W
    const nameOnly = await emu.mintRunToken(withoutId)
    assertEquals(
      (await get(emu.url(byId), { Authorization: `Bearer ${nameOnly.token}` })).status,
      401,
    )
    const short = await emu.mintRunToken({ ...W }, { lifetimeSeconds: 5 })
    emu.advanceClock(10)
    try {
      const expired = await get(emu.url(byName), { Authorization: `Bearer ${short.token}` })
      assertEquals(expired.status, 401)
      assertEquals(
        ((expired.body.error as Record<string, unknown>).innerError as Record<string, string>).code,
        'TokenExpired',
      )
    } finally {
      emu.advanceClock(-10)
    }
    const arm = await emu.mintAccessToken()
    assertEquals(
      (await get(emu.url(byName), { Authorization: `Bearer ${arm.accessToken}` })).status,
      401,
    )
  })

  await t.step('runEnv() gives the AZUREML_* run environment', async () => {
    const env = await emu.runEnv()
    assertEquals(env.AZUREML_ARM_SUBSCRIPTION, W.subscriptionId)
    assertEquals(env.AZUREML_ARM_RESOURCEGROUP, W.resourceGroupName)
    assertEquals(env.AZUREML_ARM_WORKSPACE_NAME, W.workspaceName)
    assertEquals(env.AZUREML_ARM_PROJECT_NAME, W.experimentName)
    assertEquals(env.AZUREML_EXPERIMENT_ID, W.experimentId)
    assertEquals(env.AZUREML_RUN_ID, W.runId)
    assertEquals(env.AZUREML_SERVICE_ENDPOINT, emu.origin)
    assertMatch(env.AZUREML_RUN_TOKEN_EXPIRY!, /^\d{10}$/)
    const res = await get(emu.url(byId), { Authorization: `Bearer ${env.AZUREML_RUN_TOKEN}` })
    assertEquals(res.status, 200)
  })
})
