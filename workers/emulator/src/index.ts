/**
 * A local identity emulator for Azure authentication: Entra ID (v2 and v1 token endpoints,
 * device code, authorization code with PKCE, discovery, JWKS), every managed-identity source,
 * ARM subscriptions and Azure ML run-token refresh, plus control and fault injection. Web-standard
 * only: it runs in Deno (see `../serve.ts`), in Cloudflare Workers and anywhere `fetch` handlers run.
 *
 * @example In-process, without a socket
 * ```ts
 * import { createEmulator, DEMO } from './index.ts'
 * const { fetch } = createEmulator()
 * const res = await fetch(new Request(`http://emulator/${DEMO.tenantId}/oauth2/v2.0/token`, {
 *   method: 'POST',
 *   body: new URLSearchParams({
 *     grant_type: 'client_credentials',
 *     client_id: DEMO.clientId,
 *     client_secret: DEMO.clientSecret,
 *     scope: 'https://management.core.windows.net//.default',
 *   }),
 * }))
 * console.log((await res.json()).token_type) // "Bearer"
 * ```
 *
 * @module
 */
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import type { EmulatorConfig } from './config.ts'
import { registerArmRoutes } from './arm.ts'
import { createControl, type EmulatorControl, registerControlRoutes } from './control.ts'
import { registerEntraRoutes } from './entra.ts'
import { registerManagedIdentityRoutes } from './managed_identity.ts'
import { registerRunHistoryRoutes } from './run_history.ts'
import { EmulatorCore } from './state.ts'
import { json } from './util.ts'

/** Options that are functions (not JSON configuration). */
export interface EmulatorOptions {
  /** Writes an Azure Arc key file (path, contents). Default: keep it in memory only (see `arcKey()`). */
  writeKeyFile?: (path: string, contents: string) => void | Promise<void>
  /** Clock, epoch milliseconds (default `Date.now`). */
  now?: () => number
}

/** An emulator: the Hono app, its `fetch` and the control handle. */
export interface Emulator {
  /** The Hono app. */
  app: Hono
  /** `app.fetch`, bound: `(request) => Promise<Response>`. */
  fetch: (request: Request) => Promise<Response>
  /** The typed control surface. */
  control: EmulatorControl
}

/**
 * Creates an emulator.
 *
 * @param config Registrations and settings; the {@link DEMO} values are registered unless `demo: false`.
 * @param options Hooks that cannot be JSON.
 * @returns The app, its fetch handler and the control handle.
 * @throws {TypeError | RangeError} For a malformed configuration, naming the field.
 */
export function createEmulator(
  config: EmulatorConfig = {},
  options: EmulatorOptions = {},
): Emulator {
  const core = new EmulatorCore(config, options)
  const control = createControl(core)
  const app = new Hono()
  app.use('*', cors({ origin: '*', exposeHeaders: ['www-authenticate', 'retry-after'] }))
  registerControlRoutes(app, core, control)
  registerEntraRoutes(app, core)
  registerManagedIdentityRoutes(app, core)
  registerArmRoutes(app, core)
  registerRunHistoryRoutes(app, core)
  app.notFound((c) => {
    const url = new URL(c.req.url)
    const entry = core.log.record(c.req.raw, url, null, null, core.now())
    entry.status = 404
    return json({
      error: 'not_found',
      error_description: `No emulated endpoint at ${url.pathname}`,
    }, 404)
  })
  app.onError((err) => {
    return json({ error: 'server_error', error_description: `Emulator error: ${err.name}` }, 500)
  })
  const fetch = async (request: Request): Promise<Response> => await app.fetch(request)
  return { app, fetch, control }
}

/** Bindings of the deployed worker. */
export interface EmulatorBindings {
  /** JSON {@link EmulatorConfig}. */
  EMULATOR_CONFIG?: string
  /** Bearer token required by `/__emulator/*` (a Worker secret). */
  EMULATOR_CONTROL_TOKEN?: string
}

let workerEmulator: Emulator | undefined

/** The worker entry: one emulator per isolate, configured from the bindings on first request. */
const worker: { fetch(request: Request, env?: EmulatorBindings): Promise<Response> } = {
  fetch(request, env = {}) {
    if (!workerEmulator) {
      const config: EmulatorConfig = env.EMULATOR_CONFIG ? JSON.parse(env.EMULATOR_CONFIG) : {}
      if (env.EMULATOR_CONTROL_TOKEN) config.controlToken = env.EMULATOR_CONTROL_TOKEN
      workerEmulator = createEmulator(config)
    }
    return workerEmulator.fetch(request)
  },
}
export default worker

export type { DeviceCodeInfo, EmulatorControl, MintAccessTokenOptions } from './control.ts'
export {
  ARM_AUDIENCES,
  defaultSettings,
  DEMO,
  demoRegistrations,
  KNOWN_RESOURCES,
} from './config.ts'
export type {
  AzureMlExpiresOnFormat,
  ClientConfig,
  DeviceCodeSettings,
  EmulatorConfig,
  EmulatorSettings,
  FederatedCredentialConfig,
  IdentityConfig,
  ManagedIdentitySettings,
  Registrations,
  ResourceConfig,
  SettingsPatch,
  SubscriptionConfig,
  TenantConfig,
  UserConfig,
} from './config.ts'
export { emulatorEnv, ENV_SOURCES } from './client_env.ts'
export type { EmulatorEnvOptions, EmulatorEnvSource } from './client_env.ts'
export { FAULT_KINDS, ROUTE_NAMES } from './faults.ts'
export type { ArmedFault, FaultKind, FaultSpec, RouteName } from './faults.ts'
export { MI_PATHS } from './managed_identity.ts'
export { REDACTED } from './request_log.ts'
export type { RequestLogEntry } from './request_log.ts'
export type { RunScope } from './state.ts'
export { RUN_TOKEN_AUDIENCE, RUN_TOKEN_ISSUER } from './tokens.ts'
export type { RunToken } from './tokens.ts'
export type { PublicJwk } from './keys.ts'
export type { DemoValues } from './config.ts'
