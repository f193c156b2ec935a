/**
 * The portable smoke suite: one plain module, run unchanged on Deno, inside workerd (Miniflare)
 * and on Node against the identity emulator. It uses only the public API, handed in as
 * `env.lib` (the module namespace the runtime imported: `mod.ts` in Deno, the bundled worker in
 * workerd, the ESM build `dist/aml-edge-auth.mjs` in Node), so the suite itself imports nothing
 * at run time and every runtime exercises the build a user of that runtime would load.
 *
 * Every check returns a {@link SmokeResult} instead of throwing, so one run reports them all.
 *
 * @module
 */
import type * as PublicApi from '../../mod.ts'

/** The public API, as the runtime imported it. */
export type Lib = typeof PublicApi

/** Which runtime the driver says this is; the suite checks the claim. */
export type RuntimeName = 'deno' | 'workerd' | 'node'

/** What the driver hands the suite: where the emulator is and the (public, test-only) secrets. */
export interface SmokeEnv {
  /** The public API (module namespace). */
  lib: Lib
  /** The runtime the driver started. */
  runtime: RuntimeName
  /** The emulator origin as this runtime reaches it, e.g. `http://127.0.0.1:8400`. */
  origin: string
  /** Emulator tenant. */
  tenantId: string
  /** Client with a secret. */
  clientId: string
  /** Its secret. */
  clientSecret: string
  /** Client registered with {@link SmokeEnv.certPem}. */
  certClientId: string
  /** PKCS#8 PEM key of the certificate client (a test fixture). */
  certKeyPem: string
  /** PEM certificate (chain allowed) of the certificate client. */
  certPem: string
  /** Env record for the App Service source (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`). */
  appServiceEnv: Record<string, string>
  /** Env record for IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST`). */
  imdsEnv: Record<string, string>
  /** Client id of the identity the emulator serves by default (system-assigned). */
  systemIdentityClientId: string
  /**
   * `token`: managed identity must return tokens. `refused`: the runtime is Cloudflare Workers,
   * where the module refuses loopback/link-local managed-identity endpoints by design.
   */
  managedIdentity: 'token' | 'refused'
  /** The Azure ML run environment (`AZUREML_RUN_TOKEN`, ... `AZUREML_SERVICE_ENDPOINT`). */
  runEnv: Record<string, string>
  /** Concurrent cold callers of the herd check (default 200). */
  herd?: number
}

/** One check's outcome. */
export interface SmokeResult {
  /** Check name, stable across runtimes. */
  name: string
  /** Whether it passed. */
  ok: boolean
  /** What was seen (or what went wrong). Never a secret. */
  detail: string
}

const ARM_AUD = 'https://management.core.windows.net/'
const AML_AUD = 'https://ml.azure.com'
const HERD_SCOPE = 'https://graph.microsoft.com/.default'

/** The names of every check, in order; drivers assert that each one ran and passed. */
export const CHECKS: readonly string[] = Object.freeze([
  'runtime is the one claimed',
  'service principal (secret): ARM and Azure ML tokens',
  'service principal (certificate): PS256 assertion accepted',
  'listSubscriptions() through a custom cloud (paged)',
  'managed identity: App Service',
  'managed identity: IMDS',
  'interactive: device code sign-in, then a silent refresh for Azure ML',
  'Azure ML run token: fromEnvironment, refreshed from run history',
  'token cache: cold herd shares one upstream request',
  'error path: bad secret is an AuthenticationError without the secret',
])

class CheckFailed extends Error {}

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new CheckFailed(what)
}

/** Payload of a JWT (no verification: the emulator signed it, we only read claims). */
function claimsOf(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[1]
  check(part !== undefined, 'the access token is a JWT')
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/')
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0))
  return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>
}

function describeError(e: unknown): string {
  if (e instanceof CheckFailed) return `check failed: ${e.message}`
  const err = e as { name?: string; code?: string; message?: string }
  return `${err?.name ?? 'Error'}${err?.code ? ` ${err.code}` : ''}: ${err?.message ?? String(e)}`
}

/** A `fetch` that counts the requests it sends (the public `fetch` option of every credential). */
function countingFetch(): { fetch: typeof fetch; count: () => number } {
  let n = 0
  return {
    fetch: (input, init) => {
      n++
      return fetch(input, init)
    },
    count: () => n,
  }
}

/** What the smoke suite reads from an emulator request-log entry. */
interface LogEntry {
  form?: Record<string, string>
  status?: number
  assertion?: { header: Record<string, unknown>; claims: Record<string, unknown> }
}

/** Entries of the emulator's request log (its control API, over HTTP from any runtime). */
async function logged(
  origin: string,
  route: string,
): Promise<LogEntry[]> {
  const res = await fetch(`${origin}/__emulator/requests?route=${encodeURIComponent(route)}`)
  check(res.ok, `the emulator request log answers (status ${res.status})`)
  const body = await res.json() as { requests: LogEntry[] }
  return body.requests
}

function runtimeFacts(): { userAgent: string; deno: boolean; node: boolean } {
  const g = globalThis as {
    Deno?: unknown
    navigator?: { userAgent?: string }
    process?: { versions?: { node?: string } }
  }
  return {
    userAgent: g.navigator?.userAgent ?? '(none)',
    deno: g.Deno !== undefined,
    node: typeof g.process?.versions?.node === 'string' && g.Deno === undefined,
  }
}

/**
 * Runs every check against the emulator and reports each outcome.
 *
 * @param env where the emulator is, the fixture secrets, and the public API to use
 * @returns one result per entry of {@link CHECKS}, in that order
 */
export async function smoke(env: SmokeEnv): Promise<SmokeResult[]> {
  const { lib } = env
  const results: SmokeResult[] = []
  const run = async (name: string, fn: () => Promise<string>) => {
    try {
      results.push({ name, ok: true, detail: await fn() })
    } catch (e) {
      results.push({ name, ok: false, detail: describeError(e) })
    }
  }
  const secretCredential = (options: { cache: PublicApi.TokenCache; fetch?: typeof fetch }) =>
    new lib.ServicePrincipalAuthentication({
      tenantId: env.tenantId,
      servicePrincipalId: env.clientId,
      servicePrincipalPassword: env.clientSecret,
      authorityHost: env.origin,
      env: {},
      ...options,
    })

  await run(CHECKS[0]!, () => {
    const facts = runtimeFacts()
    const seen = `userAgent=${facts.userAgent}, Deno=${facts.deno}, Node=${facts.node}`
    if (env.runtime === 'deno') check(facts.deno, `Deno global present (${seen})`)
    if (env.runtime === 'node') check(facts.node, `Node without Deno (${seen})`)
    if (env.runtime === 'workerd') {
      check(facts.userAgent === 'Cloudflare-Workers' && !facts.deno, `workerd (${seen})`)
    }
    check(typeof crypto?.subtle?.sign === 'function', 'Web Crypto is available')
    return Promise.resolve(seen)
  })

  await run(CHECKS[1]!, async () => {
    const auth = secretCredential({ cache: lib.createTokenCache() })
    const arm = await auth.getToken()
    const c = claimsOf(arm.token)
    check(c.aud === ARM_AUD, `ARM token audience (got ${c.aud})`)
    check(c.tid === env.tenantId, 'ARM token tenant')
    check(c.appid === env.clientId && c.appidacr === '1', 'app id and secret auth class (1)')
    check(arm.expiresOnTimestamp > Date.now(), 'the token is not expired')
    check(arm.expiresOn === Math.floor(arm.expiresOnTimestamp / 1000), 'expiresOn in seconds')
    const header = await auth.getAzureMLAuthenticationHeader()
    check(header.Authorization.startsWith('Bearer '), 'Azure ML header is a bearer header')
    const aml = claimsOf(header.Authorization.slice(7))
    check(aml.aud === AML_AUD, `Azure ML token audience (got ${aml.aud})`)
    const again = await auth.getToken()
    check(again.token === arm.token, 'a second call is served from the cache')
    return `aud=${c.aud} and ${aml.aud}, lifetime ${
      Math.round(arm.expiresOn - Date.now() / 1000)
    } s`
  })

  await run(CHECKS[2]!, async () => {
    const auth = new lib.ServicePrincipalAuthentication({
      tenantId: env.tenantId,
      servicePrincipalId: env.certClientId,
      certificate: lib.clientCertificate({ privateKey: env.certKeyPem, certificate: env.certPem }),
      authorityHost: env.origin,
      env: {},
      cache: lib.createTokenCache(),
    })
    const token = await auth.getToken()
    const c = claimsOf(token.token)
    check(c.appid === env.certClientId, 'app id of the certificate client')
    check(c.appidacr === '2', `certificate auth class 2 (got ${c.appidacr})`)
    const [entry] = (await logged(env.origin, 'entra.token')).filter((r) =>
      r.form?.client_id === env.certClientId
    )
    check(entry?.form?.client_assertion_type?.endsWith('jwt-bearer'), 'sent a JWT assertion')
    check(entry?.form?.client_secret === undefined, 'sent no client secret')
    check(entry?.assertion?.header.alg === 'PS256', 'the assertion is signed with PS256')
    check(entry?.status === 200, 'the emulator accepted the assertion')
    check(!JSON.stringify(auth).includes('PRIVATE KEY'), 'the key is not in JSON.stringify')
    return `appidacr=${c.appidacr}, assertion verified by the emulator`
  })

  await run(CHECKS[3]!, async () => {
    const cloud: PublicApi.Cloud = {
      name: 'Emulator',
      activeDirectory: env.origin,
      resourceManager: `${env.origin}/`,
      activeDirectoryResourceId: ARM_AUD,
      amlResourceId: AML_AUD,
    }
    const auth = new lib.ServicePrincipalAuthentication({
      tenantId: env.tenantId,
      servicePrincipalId: env.clientId,
      servicePrincipalPassword: env.clientSecret,
      cloud,
      env: {},
      cache: lib.createTokenCache(),
    })
    const subs = await auth.listSubscriptions()
    check(subs.length >= 3, `at least 3 subscriptions over 2 pages (got ${subs.length})`)
    check(subs.every((s) => s.tenantId === env.tenantId), 'subscriptions of the tenant')
    return `${subs.length} subscriptions`
  })

  const msiCheck = (source: 'app-service' | 'imds', record: Record<string, string>) => async () => {
    const auth = new lib.MsiAuthentication({ env: record, cache: lib.createTokenCache() })
    check(auth.source === source, `detected source ${source} (got ${auth.source})`)
    if (env.managedIdentity === 'refused') {
      let error: unknown
      try {
        await auth.getToken()
      } catch (e) {
        error = e
      }
      check(error instanceof lib.CredentialUnavailableError, `refused (${describeError(error)})`)
      check(error.code === 'ERR_CREDENTIAL_UNAVAILABLE', 'code ERR_CREDENTIAL_UNAVAILABLE')
      check(/token broker/.test(error.message), 'the refusal points to the token broker worker')
      const secret = record.IDENTITY_HEADER
      check(secret === undefined || !error.message.includes(secret), 'no secret in the message')
      return 'refused on Cloudflare Workers: CredentialUnavailableError pointing to the broker'
    }
    const token = await auth.getToken()
    const c = claimsOf(token.token)
    check(c.aud === ARM_AUD, `ARM audience (got ${c.aud})`)
    check(c.appid === env.systemIdentityClientId, 'the system-assigned identity')
    check(
      !JSON.stringify(auth).includes(record.IDENTITY_HEADER ?? '\u0000'),
      'the identity header is not in JSON.stringify',
    )
    return `aud=${c.aud}, lifetime ${Math.round(token.expiresOn - Date.now() / 1000)} s`
  }
  await run(CHECKS[4]!, msiCheck('app-service', env.appServiceEnv))
  await run(CHECKS[5]!, msiCheck('imds', env.imdsEnv))

  await run(CHECKS[6]!, async () => {
    const prompts: { userCode: string; verificationUri: string }[] = []
    const auth = new lib.InteractiveLoginAuthentication({
      tenantId: env.tenantId,
      force: true,
      authorityHost: env.origin,
      onDeviceCode: (info) => {
        prompts.push(info)
      },
      // The emulator approves the code on the second poll; skip the poll interval.
      sleep: () => Promise.resolve(),
      env: {},
      cache: lib.createTokenCache(),
    })
    const arm = claimsOf((await auth.getToken()).token)
    check(prompts.length === 1 && prompts[0]!.userCode !== '', 'one device-code prompt')
    check(arm.aud === ARM_AUD && arm.idtyp === 'user', `a user ARM token (got ${arm.aud})`)
    const header = await auth.getAzureMLAuthenticationHeader()
    check(claimsOf(header.Authorization.slice(7)).aud === AML_AUD, 'an Azure ML token')
    check(prompts.length === 1, 'no second prompt: the refresh token served Azure ML')
    const grants = (await logged(env.origin, 'entra.token'))
      .filter((r) => r.form?.client_id === lib.AZURE_CLI_CLIENT_ID)
      .map((r) => r.form?.grant_type)
    check(grants.includes('refresh_token'), `a refresh_token grant was used (${grants.join(',')})`)
    check(!JSON.stringify(auth).includes('refresh'), 'no refresh token in JSON.stringify')
    return `signed in as ${arm.upn ?? arm.unique_name}; Azure ML token by refresh token`
  })

  await run(CHECKS[7]!, async () => {
    const auth = lib.AzureMLTokenAuthentication.fromEnvironment(env.runEnv, {
      cache: lib.createTokenCache(),
    })
    const first = await auth.getToken()
    check(first.token === env.runEnv.AZUREML_RUN_TOKEN, 'getToken() returns the run token')
    const refreshed = await auth.refresh()
    check(refreshed.token !== first.token, 'refresh() brings a new run token')
    const header = await auth.getAuthenticationHeader()
    check(header.Authorization === `Bearer ${refreshed.token}`, 'the header carries the new token')
    const calls = await logged(env.origin, 'run-history.token')
    check(calls.length === 1 && calls[0]!.status === 200, 'one run-history refresh, accepted')
    let refused: unknown
    try {
      await auth.getTokenForAudience(lib.Audience.ARM)
    } catch (e) {
      refused = e
    }
    check(
      refused instanceof lib.AmlAuthError && refused.code === 'ERR_UNSUPPORTED_AUDIENCE',
      `ARM is refused for run tokens (${describeError(refused)})`,
    )
    return 'run token refreshed once; ARM refused with ERR_UNSUPPORTED_AUDIENCE'
  })

  await run(CHECKS[8]!, async () => {
    const n = env.herd ?? 200
    const counter = countingFetch()
    const auth = secretCredential({ cache: lib.createTokenCache(), fetch: counter.fetch })
    const before = (await logged(env.origin, 'entra.token')).filter((r) =>
      r.form?.scope === HERD_SCOPE
    ).length
    const tokens = await Promise.all(Array.from({ length: n }, () => auth.getToken(HERD_SCOPE)))
    const after =
      (await logged(env.origin, 'entra.token')).filter((r) => r.form?.scope === HERD_SCOPE).length
    check(new Set(tokens.map((t) => t.token)).size === 1, 'every caller got the same token')
    check(counter.count() === 1, `one request left the credential (got ${counter.count()})`)
    check(after - before === 1, `the emulator saw one token request (got ${after - before})`)
    return `${n} concurrent cold callers -> ${counter.count()} fetch, ${after - before} logged`
  })

  await run(CHECKS[9]!, async () => {
    const secret = 'smoke-wrong-secret~' + crypto.randomUUID()
    const auth = new lib.ServicePrincipalAuthentication({
      tenantId: env.tenantId,
      servicePrincipalId: env.clientId,
      servicePrincipalPassword: secret,
      authorityHost: env.origin,
      env: {},
      cache: lib.createTokenCache(),
      retry: { maxRetries: 0 },
    })
    let error: unknown
    try {
      await auth.getToken()
    } catch (e) {
      error = e
    }
    check(error instanceof lib.AuthenticationError, `AuthenticationError (${describeError(error)})`)
    check(error instanceof lib.AmlAuthError, 'also an AmlAuthError')
    check(error.code === 'ERR_AUTHENTICATION', `code ERR_AUTHENTICATION (got ${error.code})`)
    check(error.status === 401, `status 401 (got ${error.status})`)
    check(
      JSON.stringify(error.errorCodes) === '[7000215]',
      `errorCodes [7000215] (got ${JSON.stringify(error.errorCodes)})`,
    )
    check(error.error === 'invalid_client', `error invalid_client (got ${error.error})`)
    for (
      const [where, text] of [
        ['message', error.message],
        ['String()', String(error)],
        ['JSON', JSON.stringify(error)],
        ['stack', error.stack ?? ''],
        ['credential JSON', JSON.stringify(auth)],
        ['credential String()', String(auth)],
      ]
    ) {
      check(!text!.includes(secret), `the secret is not in the ${where}`)
    }
    return `${error.code} ${error.status} ${JSON.stringify(error.errorCodes)}`
  })

  return results
}
