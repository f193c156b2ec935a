// Integration tests of the bundled broker inside workerd (Miniflare `dispatchFetch`), with the
// project's identity emulator as the upstream Entra ID and as a trusted JWT issuer. One bundle and
// one Miniflare instance for the whole file.
import { assert, assertEquals, assertGreater, assertMatch } from '@std/assert'
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  generateKeyPair,
  jwtVerify,
  SignJWT,
} from 'jose'
import { DEMO, type RunningEmulator, startEmulator } from '../../../workers/emulator/serve.ts'
import { bundleBroker } from '../../../workers/token-broker/build.ts'
import {
  DEMO_BROKER_RESOURCE,
  type DemoSetup,
  demoSetup,
  startBrokerInWorkerd,
  type WorkerdBroker,
} from '../../../workers/token-broker/dev.ts'
import { AzureMLTokenAuthentication } from '../../../src/credentials/azureml_token.ts'
import { createTokenCache } from '../../../src/token_cache.ts'
import { findLeak } from './_helpers.ts'
import { fuzzCases } from './_fuzz.ts'

const W = DEMO.workspace

Deno.test('the bundled broker in workerd, against the identity emulator', async (t) => {
  const dir = await Deno.makeTempDir({ prefix: 'token-broker-test-' })
  const emulator: RunningEmulator = await startEmulator()
  const lines: string[] = []
  let broker: WorkerdBroker | undefined
  const texts: string[] = []
  const tokens: string[] = []
  try {
    const scriptPath = await bundleBroker(`${dir}/index.js`)
    const brokerUrl = 'http://127.0.0.1:' + freePort()
    const demo: DemoSetup = await demoSetup(emulator, brokerUrl)
    broker = await startBrokerInWorkerd({
      scriptPath,
      bindings: demo.bindings,
      port: Number(new URL(brokerUrl).port),
      kv: true,
      rateLimit: { limit: 100_000, period: 60 },
      onLog: (line) => lines.push(line),
    })
    const mf = broker.mf
    const call = async (path: string, init: RequestInit = {}) => {
      const res = await mf.dispatchFetch(brokerUrl + path, init as never)
      const body = await res.text()
      texts.push(body)
      return {
        res: res as unknown as Response,
        body,
        json: body.startsWith('{') ? JSON.parse(body) : undefined,
      }
    }
    const key = { 'x-api-key': demo.apiKey, 'content-type': 'application/json' }
    const post = (path: string, body: unknown, headers: Record<string, string> = key) =>
      call(path, {
        method: 'POST',
        headers,
        body: typeof body === 'string' ? body : JSON.stringify(body),
      })
    const tokenRequests = () => emulator.requests({ route: 'entra.token' }).length
    const emulatorJwks = createRemoteJWKSet(
      new URL(emulator.url(`/${DEMO.tenantId}/discovery/v2.0/keys`)),
    )
    const callerJwt = async (
      resource = DEMO_BROKER_RESOURCE,
      lifetimeSeconds = 600,
      tenantId?: string,
    ) => {
      const { accessToken } = await emulator.mintAccessToken({
        resource,
        lifetimeSeconds,
        origin: emulator.origin,
        ...(tenantId ? { tenantId } : {}),
      })
      tokens.push(accessToken)
      return accessToken
    }

    await t.step('1000 concurrent cold /token calls cause one upstream request', async () => {
      const before = tokenRequests()
      const all = await Promise.all(
        Array.from({ length: 1000 }, () => post('/token', { audience: 'AZUREML' })),
      )
      assertEquals(all.map((r) => r.res.status).filter((s) => s !== 200), [])
      assertEquals(new Set(all.map((r) => r.json.access_token)).size, 1)
      assertEquals(tokenRequests() - before, 1)
      tokens.push(all[0]!.json.access_token)
    })

    await t.step('upstream failures map to 502 without the upstream body', async () => {
      const storage = { scope: 'https://storage.azure.com/.default' }
      const marker = 'UPSTREAM-BODY-MARKER'
      const expect502 = async (re: RegExp) => {
        const r = await post('/token', storage)
        assertEquals([r.res.status, r.json.error], [502, 'upstream_error'], r.body)
        assertMatch(r.json.error_description, re)
        assert(!r.body.includes(marker) && !r.body.includes('AADSTS7000215: '), r.body)
      }
      emulator.failNext({
        route: 'entra.token',
        kind: 'status',
        status: 401,
        body: {
          error: 'invalid_client',
          error_description:
            `AADSTS7000215: Invalid client secret provided. ${marker} ${DEMO.clientSecret}`,
          error_codes: [7000215],
        },
      })
      await expect502(/refused .*\(AADSTS7000215\)/)
      // 5xx are retried (UPSTREAM_MAX_RETRIES, default 2): three failures in a row.
      emulator.failNext({ route: 'entra.token', kind: 'html', count: 3 })
      await expect502(/unavailable/)
      emulator.failNext({ route: 'entra.token', kind: 'malformed-json' })
      await expect502(/unreadable/)
      emulator.failNext({ route: 'entra.token', kind: 'drop', count: 3 })
      await expect502(/could not be reached|unreadable|unavailable/)
      const line = lines.map((l) => JSON.parse(l)).find((l) => l.upstream_codes !== undefined)
      assertEquals(line?.upstream_codes, [7000215])
      assert(!lines.some((l) => l.includes(marker)))
      emulator.clearFaults()
    })

    await t.step('GET /healthz', async () => {
      const r = await call('/healthz')
      assertEquals([r.res.status, r.json], [200, { status: 'ok' }])
    })

    await t.step(
      'API-key caller: ARM, AZUREML and a listed scope, verified against the emulator JWKS',
      async () => {
        for (
          const [body, aud] of [
            [{ audience: 'ARM' }, 'https://management.core.windows.net/'],
            [{ audience: 'AZUREML' }, 'https://ml.azure.com'],
            [{ scope: 'https://storage.azure.com/.default' }, 'https://storage.azure.com'],
          ] as const
        ) {
          const r = await post('/token', body)
          assertEquals(r.res.status, 200, r.body)
          assertEquals(r.res.headers.get('cache-control'), 'no-store')
          assertEquals(r.json.token_type, 'Bearer')
          assertGreater(r.json.expires_in, 3000)
          tokens.push(r.json.access_token)
          const { payload } = await jwtVerify(r.json.access_token, emulatorJwks, { audience: aud })
          assertEquals(payload.tid, DEMO.tenantId)
          assertEquals(payload.appid ?? payload.azp, DEMO.clientId)
        }
        // What the broker sent upstream (the emulator's log redacts the secret).
        const sent = emulator.requests({ route: 'entra.token' }).at(-1)!
        assertEquals(sent.form?.grant_type, 'client_credentials')
        assertEquals(sent.form?.client_id, DEMO.clientId)
        assertEquals(sent.form?.scope, 'https://storage.azure.com/.default')
      },
    )

    await t.step('JWT caller: an emulator-issued token for the broker', async () => {
      const jwt = await callerJwt()
      const r = await post('/token', { audience: 'AZUREML' }, {
        authorization: `Bearer ${jwt}`,
        'content-type': 'application/json',
      })
      assertEquals(r.res.status, 200, r.body)
      const denied = await post('/token', { audience: 'ARM' }, {
        authorization: `Bearer ${jwt}`,
        'content-type': 'application/json',
      })
      assertEquals([denied.res.status, denied.json.error], [403, 'access_denied'])
    })

    await t.step('every refusal, in workerd', async () => {
      const bearer = (jwt: string) => ({
        authorization: `Bearer ${jwt}`,
        'content-type': 'application/json',
      })
      const expect = async (
        headers: Record<string, string>,
        status: number,
        error: string,
        re?: RegExp,
      ) => {
        const r = await post('/token', { audience: 'AZUREML' }, headers)
        assertEquals([r.res.status, r.json?.error], [status, error], r.body)
        if (re) assertMatch(r.json.error_description, re)
        if (status === 401) assert(r.res.headers.get('www-authenticate'))
      }
      await expect({ 'content-type': 'application/json' }, 401, 'invalid_client', /required/)
      await expect(
        { 'x-api-key': demo.apiKey.slice(0, -2) + 'xx', 'content-type': 'application/json' },
        401,
        'invalid_client',
      )
      // Forged: the emulator's kid, another key.
      const real = await callerJwt()
      const { privateKey } = await generateKeyPair('RS256')
      const header = JSON.parse(atob(real.split('.')[0]!.replace(/-/g, '+').replace(/_/g, '/')))
      const forged = await new SignJWT(decodeJwt(real)).setProtectedHeader({
        alg: 'RS256',
        kid: header.kid,
      }).sign(privateKey)
      tokens.push(forged)
      await expect(bearer(forged), 401, 'invalid_token', /signature/)
      // alg none.
      const none = `${btoa('{"alg":"none"}').replace(/=+$/, '')}.${real.split('.')[1]}.`
      await expect(bearer(none), 401, 'invalid_token', /algorithm/)
      // HS256 with the emulator's published public key as the secret.
      const jwks = await (await fetch(emulator.url(`/${DEMO.tenantId}/discovery/v2.0/keys`))).json()
      const hs = await new SignJWT(decodeJwt(real))
        .setProtectedHeader({ alg: 'HS256', kid: header.kid })
        .sign(new TextEncoder().encode(JSON.stringify(jwks.keys[0])))
      tokens.push(hs)
      await expect(bearer(hs), 401, 'invalid_token', /algorithm/)
      await expect(
        bearer(await callerJwt(DEMO_BROKER_RESOURCE, -600)),
        401,
        'invalid_token',
        /expired/,
      )
      emulator.register({ resources: ['api://another-api'] })
      await expect(bearer(await callerJwt('api://another-api')), 401, 'invalid_token', /aud/)
      await expect(
        bearer(await callerJwt(DEMO_BROKER_RESOURCE, 600, DEMO.secondTenantId)),
        401,
        'invalid_token',
        /issuer/,
      )
      const unknownKid = await new SignJWT(decodeJwt(real)).setProtectedHeader({
        alg: 'RS256',
        kid: 'no-such-kid',
      }).sign(privateKey)
      tokens.push(unknownKid)
      await expect(bearer(unknownKid), 401, 'invalid_token', /kid/)
      // Policy: the demo key may not have this scope.
      const denied = await post('/token', { scope: 'https://vault.azure.net/.default' })
      assertEquals([denied.res.status, denied.json.error], [403, 'access_denied'])
    })

    await t.step('oversized and malformed bodies', async () => {
      const big = await post('/token', JSON.stringify({ audience: 'ARM', pad: 'x'.repeat(10_000) }))
      assertEquals([big.res.status, big.json.error], [413, 'request_too_large'])
      const bad = await post('/token', '{"audience":')
      assertEquals([bad.res.status, bad.json.error], [400, 'invalid_request'])
      const wrongType = await post('/token', 'audience=ARM', {
        'x-api-key': demo.apiKey,
        'content-type': 'text/plain',
      })
      assertEquals(wrongType.res.status, 415)
      const method = await call('/token', { method: 'PUT' })
      assertEquals([method.res.status, method.res.headers.get('allow')], [405, 'POST'])
      assertEquals((await call('/nope')).res.status, 404)
    })

    await t.step(
      'run token: mint, refresh with AzureMLTokenAuthentication through SPEC 5, verify with the JWKS',
      async () => {
        const runId = 'run-' + crypto.randomUUID().slice(0, 8)
        const scope = {
          subscriptionId: W.subscriptionId,
          resourceGroupName: W.resourceGroupName,
          workspaceName: W.workspaceName,
          experimentName: W.experimentName,
          runId,
        }
        const minted = await post('/run-tokens', scope)
        assertEquals(minted.res.status, 200, minted.body)
        tokens.push(minted.json.token)
        const expiresOn = minted.json.expires_on as number
        // A clock 60 s before expiry: the credential refreshes on first use (under 95 s left).
        const auth = AzureMLTokenAuthentication.create({
          azuremlAccessToken: minted.json.token,
          expiryTime: minted.json.expiryTimeUtc,
          host: brokerUrl,
          ...scope,
          cache: createTokenCache(),
          env: {},
          tokenFiles: false,
          now: () => (expiresOn - 60) * 1000,
        })
        const { Authorization } = await auth.getAuthenticationHeader()
        const refreshed = Authorization.slice('Bearer '.length)
        assert(refreshed !== minted.json.token, 'the run token was refreshed')
        tokens.push(refreshed)
        const jwks = await call('/.well-known/jwks.json')
        assertEquals(jwks.json.keys[0].kid, demo.publicJwk.kid)
        const { payload, protectedHeader } = await jwtVerify(
          refreshed,
          createLocalJWKSet(jwks.json),
          {
            issuer: brokerUrl,
            audience: brokerUrl,
            typ: 'aml-run+jwt',
          },
        )
        assertEquals(protectedHeader.alg, 'ES256')
        assertEquals(payload.run, scope)
        // The refresh request went to the SPEC 5 route and was logged as such.
        const refreshLine = lines.map((l) => JSON.parse(l)).findLast((l) =>
          String(l.route).startsWith('/history/')
        )
        assertEquals(refreshLine?.status, 200)
        // The token of another run cannot refresh this run.
        const other = await call(
          `/history/v1.0/subscriptions/${W.subscriptionId}/resourceGroups/${W.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${W.workspaceName}/experiments/${W.experimentName}/runs/another-run/token`,
          { headers: { authorization: Authorization } },
        )
        assertEquals([other.res.status, other.json.error], [403, 'access_denied'])
      },
    )

    await t.step('the KV tier holds only sealed tokens under hashed names', async () => {
      const kv = (await mf.getKVNamespace('TOKEN_CACHE')) as unknown as {
        list(): Promise<{ keys: { name: string }[] }>
        get(key: string): Promise<string | null>
      }
      const { keys } = await kv.list()
      assertGreater(keys.length, 0)
      for (const { name } of keys) {
        assertMatch(name, /^token-broker\/v1\/[0-9a-f]{64}$/)
        const value = (await kv.get(name)) ?? ''
        assertMatch(value, /^v1\./)
        assertEquals(findLeak([value], tokens), undefined)
      }
    })

    await t.step('a bounded fuzz in workerd never yields a 500 or a stack trace', async () => {
      // Methods kj-http does not know (FOO) are refused by workerd's HTTP parser before the
      // worker runs, with a reset that races the request body; the handler fuzz covers them.
      const cases = fuzzCases(0x5eed, 150, brokerUrl, demo.apiKey).filter((c) =>
        c.init.method !== 'FOO'
      )
      for (const c of cases) {
        let res
        try {
          res = await mf.dispatchFetch(c.url, c.init as never)
        } catch (e) {
          throw new Error(
            `${c.label}: ${JSON.stringify(c.init.headers)} ${String(c.init.body).slice(0, 100)}`,
            { cause: e },
          )
        }
        const body = await res.text()
        assert(res.status !== 500 && res.status < 600, `${c.label}: ${res.status} ${body}`)
        assert(!/\bat \S+ \(|\n\s+at /.test(body), `${c.label}: stack trace`)
      }
    })

    await t.step('no response or worker log line holds a secret or a token', () => {
      assertGreater(lines.length, 1000)
      const secrets = [
        DEMO.clientSecret,
        demo.apiKey,
        JSON.parse(demo.bindings.RUN_TOKEN_SIGNING_KEY!).d,
        demo.bindings.TOKEN_CACHE_KEY!,
        ...tokens,
      ]
      assertEquals(findLeak(lines, secrets), undefined)
      const errors = texts.filter((x) => x.includes('"error"'))
      assertEquals(findLeak(errors, secrets), undefined)
      for (const l of lines) JSON.parse(l)
    })
  } finally {
    await broker?.dispose()
    await emulator.stop()
    await Deno.remove(dir, { recursive: true })
  }
})

function freePort(): number {
  const l = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (l.addr as Deno.NetAddr).port
  l.close()
  return port
}
