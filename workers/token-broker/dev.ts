/**
 * `deno task start`: the token broker in workerd (Miniflare) against the local identity emulator,
 * on a machine with no Azure account. It bundles `src/index.ts`, starts the emulator, generates a
 * demo API key (printed once) and a run-token signing key, starts the broker on 127.0.0.1:8787 (or
 * a free port) and prints a `curl` command that returns a real token. Ctrl-C stops both.
 *
 * ```sh
 * deno task start [--port 8787] [--emulator-port 0] [--federated]
 * deno run -A workers/token-broker/dev.ts keygen [kid] [--rsa]   # a new signing key (JWK)
 * deno run -A workers/token-broker/dev.ts apikey <id>    # a new API key and its CALLER_API_KEYS entry
 * ```
 *
 * The helpers are exported for the integration tests and the benchmark.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { Miniflare } from 'miniflare'
import { exportJWK, generateKeyPair } from 'jose'
import { DEMO, type RunningEmulator, startEmulator } from '../emulator/serve.ts'
import { bundleBroker, readWranglerConfig, REPO_ROOT } from './build.ts'

/** The part of Node's `process` that Miniflare's signal hooks live on. */
interface SignalHooks {
  listeners(signal: string): ((...args: unknown[]) => void)[]
  removeListener(signal: string, listener: (...args: unknown[]) => void): void
}

/** Options of {@linkcode startBrokerInWorkerd}. */
export interface WorkerdBrokerOptions {
  /** The bundled worker (from `bundleBroker`). */
  scriptPath: string
  /** Vars and secrets. */
  bindings: Record<string, unknown>
  /** Port on 127.0.0.1 (0: any free port; default 0). */
  port?: number
  /** The `RATE_LIMITER` binding's limit per period (default: wrangler.jsonc's). */
  rateLimit?: { limit: number; period: 10 | 60 }
  /** Bind an in-memory `TOKEN_CACHE` KV namespace (default false). */
  kv?: boolean
  /** Receives the worker's console lines (default: Miniflare prints them). */
  onLog?: (line: string) => void
}

/** A broker running in workerd. */
export interface WorkerdBroker {
  /** Miniflare (for `dispatchFetch`). */
  mf: Miniflare
  /** The HTTP origin, e.g. `http://127.0.0.1:8787`. */
  url: string
  /** Stops workerd. */
  dispose(): Promise<void>
}

/**
 * Starts the bundled broker in workerd through Miniflare, with the compatibility date of
 * wrangler.jsonc, the rate-limiting binding and, optionally, a KV namespace.
 *
 * @param o script, bindings, port, limits
 * @returns the running broker
 */
export async function startBrokerInWorkerd(o: WorkerdBrokerOptions): Promise<WorkerdBroker> {
  const wrangler = await readWranglerConfig()
  const rl = o.rateLimit ?? wrangler.ratelimits?.[0]?.simple ?? { limit: 120, period: 60 }
  const scriptDir = o.scriptPath.slice(0, o.scriptPath.lastIndexOf('/'))
  const broker = {
    name: 'token-broker',
    modules: true,
    scriptPath: o.scriptPath,
    modulesRoot: scriptDir,
    compatibilityDate: wrangler.compatibility_date,
    compatibilityFlags: wrangler.compatibility_flags ?? [],
    bindings: o.bindings as Record<string, string>,
    ratelimits: { RATE_LIMITER: { namespace_id: '7001', simple: rl } },
    ...(o.kv ? { kvNamespaces: ['TOKEN_CACHE'] } : {}),
  }
  const logging = o.onLog
    ? {
      structuredWorkerdLogs: true,
      handleStructuredLogs: ({ message }: { message: string }): void => {
        o.onLog!(message)
      },
    }
    : {}
  // Miniflare installs Node signal hooks that kill workerd and exit with 130; the callers of this
  // function (dev.ts, tests) stop it themselves and decide the exit code, so they are removed.
  // Feature-detected: Deno (and Node) expose Miniflare's `process`; elsewhere there is nothing to undo.
  const proc = (globalThis as { process?: SignalHooks }).process
  const before = new Set(proc ? [...proc.listeners('SIGINT'), ...proc.listeners('SIGTERM')] : [])
  const mf = new Miniflare(
    {
      host: '127.0.0.1',
      port: o.port ?? 0,
      ...logging,
      workers: [broker],
    } as ConstructorParameters<typeof Miniflare>[0],
  )
  let url: URL
  try {
    url = await mf.ready
  } catch (e) {
    await mf.dispose().catch(() => {})
    throw e
  } finally {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const l of proc?.listeners(signal) ?? []) {
        if (!before.has(l)) proc?.removeListener(signal, l)
      }
    }
  }
  let disposed: Promise<void> | undefined
  return {
    mf,
    url: url.origin,
    dispose: () => disposed ??= mf.dispose().catch(() => {}),
  }
}

/**
 * A private JWK with a kid, as JSON: P-256 (a `RUN_TOKEN_SIGNING_KEY`) or, with `alg: 'RS256'`,
 * RSA 2048 (an `AZURE_FEDERATED_SIGNING_KEY`: Entra documents RS256 for federated issuers).
 */
export async function generateRunTokenKey(
  kid = `run-${new Date().toISOString().slice(0, 10)}-${crypto.randomUUID().slice(0, 8)}`,
  alg: 'ES256' | 'RS256' = 'ES256',
): Promise<{ privateJwk: string; publicJwk: JsonWebKey & { kid: string } }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const priv = { ...(await exportJWK(privateKey)), kid, alg }
  const pub = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { privateJwk: JSON.stringify(priv), publicJwk: pub as JsonWebKey & { kid: string } }
}

/** A new API key (`abk_` + 32 random bytes, base64url) and the SHA-256 hex stored for it. */
export async function generateApiKey(): Promise<{ key: string; sha256: string }> {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  const key = 'abk_' +
    btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(key)))
  return { key, sha256: Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('') }
}

/** The resource local JWT callers ask the emulator for. */
export const DEMO_BROKER_RESOURCE = 'api://aml-token-broker'
/** The subject the broker's federated assertions carry in `--federated` mode. */
export const DEMO_FEDERATED_SUBJECT = 'aml-token-broker-local'
/** The app the broker signs in as in `--federated` mode. */
export const DEMO_FEDERATED_CLIENT_ID = 'f3d2c1b0-a9e8-4d7c-8b6a-5f4e3d2c1b0a'

/** What {@linkcode demoSetup} produces. */
export interface DemoSetup {
  /** The broker's bindings. */
  bindings: Record<string, string>
  /** The demo API key (print once). */
  apiKey: string
  /** The run-token key's public JWK. */
  publicJwk: JsonWebKey & { kid: string }
}

/**
 * Bindings that point the broker at a running emulator: the demo app as upstream identity (client
 * secret, or a federated credential trusting the broker's own key), a demo API key, the
 * emulator's tenant as a trusted JWT issuer, a generated run-token key, an encrypted KV tier.
 *
 * @param emulator the running emulator
 * @param brokerUrl the broker's origin (its issuer)
 * @param options `federated` to sign in with the broker's own assertion
 * @returns bindings and the generated secrets
 */
export async function demoSetup(
  emulator: RunningEmulator,
  brokerUrl: string,
  options: { federated?: boolean } = {},
): Promise<DemoSetup> {
  const runKey = await generateRunTokenKey()
  const api = await generateApiKey()
  emulator.register({ resources: ['https://storage.azure.com', DEMO_BROKER_RESOURCE] })
  const issuer = `${emulator.origin}/${DEMO.tenantId}/v2.0`
  const w = DEMO.workspace
  const bindings: Record<string, string> = {
    BROKER_ISSUER: brokerUrl,
    AZURE_TENANT_ID: DEMO.tenantId,
    AZURE_AUTHORITY_HOST: emulator.origin,
    CALLER_API_KEYS: JSON.stringify({ demo: api.sha256 }),
    CALLER_ISSUERS: JSON.stringify([{
      issuer,
      jwksUrl: `${emulator.origin}/${DEMO.tenantId}/discovery/v2.0/keys`,
      audience: [DEMO_BROKER_RESOURCE],
      algorithms: ['RS256'],
    }]),
    POLICY: JSON.stringify({
      rules: [
        {
          name: 'demo-key',
          apiKey: 'demo',
          audiences: ['ARM', 'AZUREML'],
          scopes: ['https://storage.azure.com/.default'],
          runTokens: [{
            subscriptionId: w.subscriptionId,
            resourceGroupName: w.resourceGroupName,
            workspaceName: w.workspaceName,
          }],
        },
        {
          name: 'demo-app',
          issuer,
          subject: DEMO.clientObjectId,
          audiences: ['AZUREML'],
          runTokens: [{
            subscriptionId: w.subscriptionId,
            resourceGroupName: w.resourceGroupName,
            workspaceName: w.workspaceName,
            experimentName: w.experimentName,
          }],
        },
      ],
    }),
    RUN_TOKEN_SIGNING_KEY: runKey.privateJwk,
    TOKEN_CACHE_KEY: btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))),
  }
  if (options.federated) {
    emulator.register({
      clients: [{
        clientId: DEMO_FEDERATED_CLIENT_ID,
        tenantId: DEMO.tenantId,
        displayName: 'aml-token-broker (federated)',
        federatedCredentials: [{
          issuer: brokerUrl,
          subject: DEMO_FEDERATED_SUBJECT,
          jwks: { keys: [runKey.publicJwk] },
        }],
      }],
    })
    bindings.AZURE_CLIENT_ID = DEMO_FEDERATED_CLIENT_ID
    bindings.AZURE_FEDERATED_SUBJECT = DEMO_FEDERATED_SUBJECT
  } else {
    bindings.AZURE_CLIENT_ID = DEMO.clientId
    bindings.AZURE_CLIENT_SECRET = DEMO.clientSecret
  }
  return { bindings, apiKey: api.key, publicJwk: runKey.publicJwk }
}

/** A free TCP port on 127.0.0.1: `preferred` when it is free, else one the OS picks. */
export function freePort(preferred?: number): number {
  for (const port of preferred ? [preferred, 0] : [0]) {
    try {
      const l = Deno.listen({ hostname: '127.0.0.1', port })
      const p = (l.addr as Deno.NetAddr).port
      l.close()
      return p
    } catch {
      // taken: fall through to a free port
    }
  }
  throw new Error('no free port on 127.0.0.1')
}

function flag(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === name || a.startsWith(name + '='))
  if (i < 0) return undefined
  const a = args[i]!
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1]
}

function portArg(args: string[], name: string, fallback: number): number {
  const v = flag(args, name)
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`${name} must be a port number (0 for any free port)`)
    Deno.exit(2)
  }
  return n
}

async function start(args: string[]): Promise<void> {
  const brokerPort = portArg(args, '--port', 8787)
  const federated = args.includes('--federated')
  const port = brokerPort === 0 ? freePort() : freePort(brokerPort)
  if (brokerPort !== 0 && port !== brokerPort) {
    console.log(`port ${brokerPort} is busy; using ${port}`)
  }
  const brokerUrl = `http://127.0.0.1:${port}`
  const scriptPath = `${REPO_ROOT}/.wrangler/token-broker-dev/index.js`
  await bundleBroker(scriptPath)
  const emulator = await startEmulator({ port: portArg(args, '--emulator-port', 0) })
  let broker: WorkerdBroker | undefined
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    console.log('\nstopping the token broker and the emulator…')
    await broker?.dispose()
    await emulator.stop().catch(() => {})
    Deno.exit(0)
  }
  Deno.addSignalListener('SIGINT', stop)
  Deno.addSignalListener('SIGTERM', stop)
  try {
    const demo = await demoSetup(emulator, brokerUrl, { federated })
    broker = await startBrokerInWorkerd({ scriptPath, bindings: demo.bindings, port, kv: true })
    const w = DEMO.workspace
    const runBody = JSON.stringify({
      subscriptionId: w.subscriptionId,
      resourceGroupName: w.resourceGroupName,
      workspaceName: w.workspaceName,
      experimentName: w.experimentName,
      runId: w.runId,
    })
    console.log(`
aml-edge-auth token broker, running locally in workerd (Miniflare)
  broker      ${broker.url}   (bundle: ${scriptPath})
  emulator    ${emulator.origin}   (Entra ID, tenant ${DEMO.tenantId})
  identity    ${
      federated
        ? `app ${DEMO_FEDERATED_CLIENT_ID}, federated assertion signed by the broker`
        : `app ${DEMO.clientId}, client secret`
    }
  demo API key (shown once; it exists only in this process):
    ${demo.apiKey}

Get an Azure ML token:
  curl -s -X POST ${broker.url}/token -H 'X-API-Key: ${demo.apiKey}' -H 'Content-Type: application/json' -d '{"audience":"AZUREML"}'

Mint a run token, then refresh it through the SPEC 5 route:
  curl -s -X POST ${broker.url}/run-tokens -H 'X-API-Key: ${demo.apiKey}' -H 'Content-Type: application/json' -d '${runBody}'
  curl -s ${broker.url}/history/v1.0/subscriptions/${w.subscriptionId}/resourceGroups/${w.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${w.workspaceName}/experiments/${w.experimentName}/runs/${w.runId}/token -H "Authorization: Bearer <token>"

Public keys: ${broker.url}/.well-known/jwks.json   Health: ${broker.url}/healthz
`)
    console.log(`Token broker ready at ${broker.url} (Ctrl-C to stop)`)
  } catch (e) {
    console.error(`could not start: ${e instanceof Error ? e.message : String(e)}`)
    await broker?.dispose()
    await emulator.stop().catch(() => {})
    Deno.exit(1)
  }
}

async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args
  if (command === 'keygen') {
    const rsa = rest.includes('--rsa')
    const kid = rest.find((a) => !a.startsWith('--'))
    const k = await generateRunTokenKey(kid, rsa ? 'RS256' : 'ES256')
    const name = rsa ? 'AZURE_FEDERATED_SIGNING_KEY' : 'RUN_TOKEN_SIGNING_KEY'
    console.log(`${name} (private; wrangler secret put ${name}):`)
    console.log(k.privateJwk)
    console.log('\npublic JWK (what /.well-known/jwks.json will publish):')
    console.log(JSON.stringify(k.publicJwk))
    return
  }
  if (command === 'apikey') {
    const id = rest[0] ?? ''
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
      console.error('usage: dev.ts apikey <id>   (id: 1-64 letters, digits, . _ -)')
      Deno.exit(2)
    }
    const k = await generateApiKey()
    console.log(`API key for "${id}" (give it to the caller; it is not stored anywhere):`)
    console.log(k.key)
    console.log(`\nCALLER_API_KEYS entry (add it to the secret's JSON object):`)
    console.log(JSON.stringify({ [id]: k.sha256 }))
    return
  }
  await start(args)
}

if (import.meta.main) await main(Deno.args)
