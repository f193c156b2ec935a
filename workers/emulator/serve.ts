/**
 * Runs the identity emulator on a loopback socket from Deno, for tests and for `deno task
 * emulator`. This is the Deno-only part: `src/` is web-standard.
 *
 * @example Start on a free port, get a token, stop
 * ```ts
 * import { startEmulator, DEMO } from './serve.ts'
 * await using emu = await startEmulator()
 * const res = await fetch(emu.url(`/${DEMO.tenantId}/oauth2/v2.0/token`), {
 *   method: 'POST',
 *   body: new URLSearchParams({
 *     grant_type: 'client_credentials',
 *     client_id: DEMO.clientId,
 *     client_secret: DEMO.clientSecret,
 *     scope: 'https://management.core.windows.net//.default',
 *   }),
 * })
 * await res.json()
 * ```
 *
 * @module
 */
import {
  createEmulator,
  DEMO,
  type Emulator,
  type EmulatorConfig,
  type EmulatorControl,
  emulatorEnv,
  type EmulatorEnvOptions,
  type EmulatorEnvSource,
  type RunScope,
} from './src/index.ts'

/** Options of {@link startEmulator}. */
export interface StartEmulatorOptions {
  /** Port (default 0: any free port). */
  port?: number
  /** Interface (default `127.0.0.1`). */
  hostname?: string
  /** Registrations and settings. */
  config?: EmulatorConfig
  /** Serve https with this PEM certificate chain and key. */
  tls?: { cert: string; key: string }
  /** Folder for Azure Arc key files (default: a new temporary folder, removed by `stop()`). */
  arcKeyDir?: string
  /** Clock, epoch milliseconds (default `Date.now`). */
  now?: () => number
}

/** A running emulator: its address, the control surface, env helpers and `stop()`. */
export interface RunningEmulator extends EmulatorControl {
  /** `http://127.0.0.1:<port>` (or `https://…`). Use it as the authority host. */
  readonly origin: string
  /** The bound port. */
  readonly port: number
  /** The bound interface. */
  readonly hostname: string
  /** Folder the Azure Arc key files are written to. */
  readonly arcKeyDir: string
  /** The in-process emulator (app, fetch, control). */
  readonly emulator: Emulator
  /** `origin` + `path`. */
  url(path: string): string
  /** The env vars that point a client at this emulator for a source (see `emulatorEnv`). */
  env(source: EmulatorEnvSource, opts?: EmulatorEnvOptions): Record<string, string>
  /**
   * The Azure ML run environment (`AZUREML_RUN_TOKEN`, `AZUREML_RUN_TOKEN_EXPIRY`,
   * `AZUREML_ARM_SUBSCRIPTION`, … `AZUREML_SERVICE_ENDPOINT`) with a fresh run token.
   */
  runEnv(scope?: RunScope, options?: { lifetimeSeconds?: number }): Promise<Record<string, string>>
  /** Stops the server (waits for it) and removes a temporary Arc folder. */
  stop(): Promise<void>
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * Starts the emulator with `Deno.serve` on loopback.
 *
 * @param options Port, interface, configuration, TLS and the Arc key folder.
 * @returns The running emulator; call `stop()` (or `await using`) when done.
 */
export async function startEmulator(options: StartEmulatorOptions = {}): Promise<RunningEmulator> {
  const hostname = options.hostname ?? '127.0.0.1'
  const ownDir = options.arcKeyDir === undefined
  const arcKeyDir = options.arcKeyDir ?? await Deno.makeTempDir({ prefix: 'aml-emulator-arc-' })
  const config: EmulatorConfig = {
    ...options.config,
    managedIdentity: { arcKeyDir, ...options.config?.managedIdentity },
  }
  const emuOptions: Parameters<typeof createEmulator>[1] = {
    writeKeyFile: (path, contents) => Deno.writeTextFile(path, contents, { mode: 0o600 }),
  }
  if (options.now) emuOptions.now = options.now
  const emulator = createEmulator(config, emuOptions)
  await emulator.control.ready()
  const serveOptions = {
    port: options.port ?? 0,
    hostname,
    onListen() {},
    onError() {
      return new Response('Internal Server Error', { status: 500 })
    },
    ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
  }
  const server = Deno.serve(serveOptions, emulator.fetch)
  const addr = server.addr as Deno.NetAddr
  const host = addr.hostname === '0.0.0.0'
    ? '127.0.0.1'
    : addr.hostname.includes(':')
    ? `[${addr.hostname}]`
    : addr.hostname
  const origin = `${options.tls ? 'https' : 'http'}://${host}:${addr.port}`
  let stopped: Promise<void> | undefined
  const stop = () =>
    stopped ??= (async () => {
      await server.shutdown()
      await server.finished
      if (ownDir) await Deno.remove(arcKeyDir, { recursive: true }).catch(() => {})
    })()
  const control = emulator.control
  return {
    ...control,
    origin,
    port: addr.port,
    hostname,
    arcKeyDir,
    emulator,
    url: (path: string) => `${origin}${path.startsWith('/') ? '' : '/'}${path}`,
    env: (source, opts) =>
      emulatorEnv(origin, source, { secret: control.settings().managedIdentity.secret, ...opts }),
    async runEnv(scope = { ...DEMO.workspace }, opts) {
      const t = await control.mintRunToken(scope, opts)
      const env: Record<string, string> = {
        AZUREML_RUN_TOKEN: t.token,
        AZUREML_RUN_TOKEN_EXPIRY: String(t.expiresOn),
        AZUREML_ARM_SUBSCRIPTION: scope.subscriptionId,
        AZUREML_ARM_RESOURCEGROUP: scope.resourceGroupName,
        AZUREML_ARM_WORKSPACE_NAME: scope.workspaceName,
        AZUREML_RUN_ID: scope.runId,
        AZUREML_SERVICE_ENDPOINT: origin,
      }
      if (scope.experimentName) env.AZUREML_ARM_PROJECT_NAME = scope.experimentName
      if (scope.experimentId) env.AZUREML_EXPERIMENT_ID = scope.experimentId
      return env
    },
    stop,
    [Symbol.asyncDispose]: stop,
  }
}

export * from './src/index.ts'
