/**
 * Control and fault injection: the typed in-process handle ({@link EmulatorControl}) and the same
 * operations over HTTP under `/__emulator/`.
 *
 * @module
 */
import type { Context, Hono } from 'hono'
import type { EmulatorSettings, Registrations, SettingsPatch } from './config.ts'
import { applySettings, ARM_AUDIENCES, DEMO } from './config.ts'
import { approveDeviceCode, denyDeviceCode } from './entra.ts'
import { emulatorEnv, type EmulatorEnvSource, ENV_SOURCES } from './client_env.ts'
import type { ArmedFault, FaultSpec, RouteName } from './faults.ts'
import { ROUTE_NAMES } from './faults.ts'
import type { PublicJwk } from './keys.ts'
import type { RequestLogEntry } from './request_log.ts'
import type { EmulatorCore, RunScope } from './state.ts'
import { mintAccessToken, mintRunToken, type RunToken, validateRunScope } from './tokens.ts'
import { constantTimeEqual, isRecord, json } from './util.ts'

/** Options of {@link EmulatorControl.mintAccessToken}. */
export interface MintAccessTokenOptions {
  /** `aud`; default `https://management.core.windows.net/`. */
  resource?: string
  /** Tenant; default the principal's tenant. */
  tenantId?: string
  /** App-only token for this client (default {@link DEMO}.clientId) unless `user` or `identity` is given. */
  clientId?: string
  /** Delegated token for this user (username or object id), issued to `clientId`. */
  user?: string
  /** Managed-identity token for this identity (client id). */
  identity?: string
  /** Lifetime in seconds (may be negative for an already expired token). */
  lifetimeSeconds?: number
  /** Origin used in `iss` (default `http://localhost`). */
  origin?: string
}

/** A device-code grant as listed by {@link EmulatorControl.deviceCodes}. */
export interface DeviceCodeInfo {
  /** The code the user types. */
  userCode: string
  /** The client that asked. */
  clientId: string
  /** The scope asked for. */
  scope: string
  /** Where the grant stands. */
  status: 'pending' | 'approved' | 'declined' | 'redeemed'
  /** Token-endpoint polls so far. */
  polls: number
  /** Expiry, epoch seconds. */
  expiresOn: number
}

/** The typed control surface (also served over HTTP at `/__emulator/`). */
export interface EmulatorControl {
  /** Resolves once the signing key exists. */
  ready(): Promise<void>
  /** Adds tenants, clients, users, identities, subscriptions or resources. */
  register(registrations: Registrations): void
  /** Current settings (a copy). */
  settings(): EmulatorSettings
  /** Changes settings (nested objects merged); returns the new settings. */
  updateSettings(patch: SettingsPatch): EmulatorSettings
  /** Arms a fault: the next `count` responses of `route` fail as described. */
  failNext(fault: FaultSpec): void
  /** The armed faults. */
  faults(): ArmedFault[]
  /** Disarms every fault. */
  clearFaults(): void
  /** Adds `ms` of latency to a route (`*` = all); 0 removes it. */
  setLatency(route: RouteName | '*', ms: number): void
  /** The request log (secrets redacted), optionally of one route. */
  requests(filter?: { route?: RouteName | null }): RequestLogEntry[]
  /** Empties the request log. */
  clearRequests(): void
  /** Back to the start configuration: registrations, settings, faults, grants, log, clock. */
  reset(): void
  /** Mints an Azure ML run token for a run scope. */
  mintRunToken(scope: RunScope, options?: { lifetimeSeconds?: number }): Promise<RunToken>
  /** Mints an access token directly (no flow), e.g. an expired ARM token for a test. */
  mintAccessToken(
    options?: MintAccessTokenOptions,
  ): Promise<{ accessToken: string; expiresOn: number }>
  /** Approves a pending device code by its user code; false if there is no such pending code. */
  approveDeviceCode(userCode: string, options?: { user?: string }): boolean
  /** Declines a pending device code; false if there is no such pending code. */
  denyDeviceCode(userCode: string): boolean
  /** Device-code grants. */
  deviceCodes(): DeviceCodeInfo[]
  /** Makes every issued refresh token expired (AADSTS700082 on use); returns how many. */
  expireRefreshTokens(): number
  /** Moves the emulator clock forward (negative: back). */
  advanceClock(seconds: number): void
  /** The emulator clock, epoch milliseconds. */
  now(): number
  /** The key written for an Azure Arc challenge realm (path), if still valid. */
  arcKey(path: string): string | undefined
  /** The JWKS (public signing keys). */
  jwks(): Promise<{ keys: PublicJwk[] }>
}

/** Builds the control handle over the core. */
export function createControl(core: EmulatorCore): EmulatorControl {
  return {
    ready: () => core.keys.ready(),
    register: (reg) => core.register(reg),
    settings: () => structuredClone(core.settings),
    updateSettings(patch) {
      core.settings = applySettings(core.settings, patch)
      core.settingsChanged()
      return structuredClone(core.settings)
    },
    failNext: (fault) => core.faults.add(fault),
    faults: () => core.faults.list(),
    clearFaults: () => core.faults.clear(),
    setLatency(route, ms) {
      if (route !== '*' && !ROUTE_NAMES.includes(route)) {
        throw new RangeError(`route must be '*' or one of: ${ROUTE_NAMES.join(', ')}`)
      }
      if (!(ms >= 0)) throw new RangeError('latency must be zero or more milliseconds')
      const latency = { ...core.settings.latency }
      if (ms === 0) delete latency[route]
      else latency[route] = ms
      core.settings = { ...core.settings, latency }
    },
    requests: (filter) => core.log.list(filter),
    clearRequests: () => core.log.clear(),
    reset: () => core.reset(),
    mintRunToken: (scope, options) =>
      mintRunToken(core, validateRunScope(scope), options?.lifetimeSeconds),
    async mintAccessToken(o = {}) {
      const resource = o.resource ?? ARM_AUDIENCES[0]!
      const found = core.findResource(resource)
      const version = found?.tokenVersion ?? 2
      const lifetime = o.lifetimeSeconds ?? core.settings.tokenLifetimeSeconds
      const origin = o.origin ?? 'http://localhost'
      let principal
      let tenantId: string
      if (o.identity) {
        const identity = core.findIdentity('clientId', o.identity)
        if (!identity) throw new TypeError(`no identity with client id ${o.identity}`)
        principal = { kind: 'mi' as const, identity }
        tenantId = o.tenantId ?? identity.tenantId
      } else {
        const client = core.clients.get((o.clientId ?? DEMO.clientId).toLowerCase())
        if (!client) throw new TypeError(`no client ${o.clientId ?? DEMO.clientId}`)
        if (o.user) {
          const user = core.findUser(o.user)
          if (!user) throw new TypeError(`no user ${o.user}`)
          principal = {
            kind: 'user' as const,
            appId: client.clientId,
            user,
            scp: 'user_impersonation',
            acr: '0' as const,
          }
          tenantId = o.tenantId ?? user.tenantId
        } else {
          principal = {
            kind: 'app' as const,
            appId: client.clientId,
            objectId: client.objectId,
            roles: client.roles,
            acr: '1' as const,
          }
          tenantId = o.tenantId ?? client.tenantId
        }
      }
      const m = await mintAccessToken(core, {
        origin,
        tenantId,
        audience: resource,
        version,
        lifetimeSeconds: lifetime,
        principal,
        reuse: false,
      })
      return { accessToken: m.token, expiresOn: m.exp }
    },
    approveDeviceCode: (userCode, options) => approveDeviceCode(core, userCode, options?.user),
    denyDeviceCode: (userCode) => denyDeviceCode(core, userCode),
    deviceCodes: () =>
      [...core.deviceCodes.values()].map((g) => ({
        userCode: g.userCode,
        clientId: g.clientId,
        scope: g.scope,
        status: g.status,
        polls: g.polls,
        expiresOn: Math.floor(g.expiresAt / 1000),
      })),
    expireRefreshTokens() {
      const now = core.now()
      for (const g of core.refreshTokens.values()) g.expiresAt = now
      return core.refreshTokens.size
    },
    advanceClock(seconds) {
      if (!Number.isFinite(seconds)) throw new RangeError('seconds must be a finite number')
      core.clockOffsetMs += seconds * 1000
    },
    now: () => core.now(),
    arcKey(path) {
      const k = core.arcKeys.get(path)
      return k && k.expiresAt >= core.now() ? k.key : undefined
    },
    jwks: () => core.keys.jwks(),
  }
}

function bad(message: string, status = 400): Response {
  return json({ error: 'invalid_request', error_description: message }, status)
}

async function body(c: Context): Promise<Record<string, unknown> | Response> {
  let parsed: unknown
  try {
    const text = await c.req.text()
    parsed = text ? JSON.parse(text) : {}
  } catch {
    return bad('The body must be JSON.')
  }
  if (!isRecord(parsed) && !Array.isArray(parsed)) return bad('The body must be a JSON object.')
  return parsed as Record<string, unknown>
}

function attempt(fn: () => Response | Promise<Response>): Promise<Response> {
  return Promise.resolve().then(fn).catch((e) => {
    if (e instanceof TypeError || e instanceof RangeError) return bad(e.message)
    throw e
  })
}

/** Registers `/__emulator/*`. */
export function registerControlRoutes(
  app: Hono,
  core: EmulatorCore,
  control: EmulatorControl,
): void {
  app.use('/__emulator/*', async (c, next) => {
    const token = core.settings.controlToken
    if (token) {
      const h = c.req.header('authorization') ?? ''
      const m = /^bearer\s+(.+)$/i.exec(h.trim())
      if (!m || !constantTimeEqual(m[1]!, token)) {
        return json({
          error: 'unauthorized',
          error_description: 'A valid control token is required.',
        }, 401)
      }
    }
    await next()
  })
  app.get('/__emulator', (c) =>
    json({
      name: 'aml-edge-auth identity emulator',
      origin: new URL(c.req.url).origin,
      routes: ROUTE_NAMES,
      envSources: ENV_SOURCES,
      demo: DEMO,
    }))
  app.get('/__emulator/config', () => {
    const s = structuredClone(core.settings)
    s.managedIdentity.secret = '[redacted]'
    if (s.controlToken) s.controlToken = '[redacted]'
    return json({
      settings: s,
      tenants: [...core.tenants.values()],
      clients: [...core.clients.values()].map((cl) => ({
        clientId: cl.clientId,
        tenantId: cl.tenantId,
        displayName: cl.displayName,
        objectId: cl.objectId,
        multiTenant: cl.multiTenant,
        publicClient: cl.publicClient,
        secrets: cl.secrets.length,
        certificates: cl.certificates.length,
        federatedCredentials: cl.federatedCredentials.length,
        redirectUris: cl.redirectUris,
        roles: cl.roles,
      })),
      users: [...core.users.values()],
      identities: [...core.identities.values()],
      subscriptions: core.subscriptions,
      resources: [...core.resources.values()],
    })
  })
  app.post('/__emulator/register', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      control.register(b as Registrations)
      return json({ ok: true })
    }))
  app.get('/__emulator/settings', () => json(control.settings()))
  app.patch('/__emulator/settings', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      return json(control.updateSettings(b as SettingsPatch))
    }))
  app.get('/__emulator/faults', () => json({ faults: control.faults() }))
  app.post('/__emulator/faults', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      const list = Array.isArray(b) ? b : [b]
      for (const f of list) control.failNext(f as FaultSpec)
      return json({ faults: control.faults() }, 201)
    }))
  app.delete('/__emulator/faults', () => {
    control.clearFaults()
    return json({ faults: [] })
  })
  app.put('/__emulator/latency', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      for (const [route, ms] of Object.entries(b)) {
        control.setLatency(route as RouteName, Number(ms))
      }
      return json({ latency: control.settings().latency })
    }))
  app.get('/__emulator/requests', (c) => {
    const route = c.req.query('route')
    const limit = Number(c.req.query('limit') ?? 0)
    let list = control.requests(route ? { route: route as RouteName } : undefined)
    if (limit > 0) list = list.slice(-limit)
    return json({ requests: list })
  })
  app.delete('/__emulator/requests', () => {
    control.clearRequests()
    return json({ requests: [] })
  })
  app.post('/__emulator/reset', () => {
    control.reset()
    return json({ ok: true })
  })
  app.post('/__emulator/run-tokens', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      const lifetime = b.lifetimeSeconds
      if (lifetime !== undefined && typeof lifetime !== 'number') {
        return bad('lifetimeSeconds must be a number')
      }
      const opts = lifetime === undefined ? undefined : { lifetimeSeconds: lifetime }
      return json(await control.mintRunToken(b.scope as RunScope, opts), 201)
    }))
  app.post('/__emulator/access-tokens', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      const o = { origin: new URL(c.req.url).origin, ...b } as MintAccessTokenOptions
      return json(await control.mintAccessToken(o), 201)
    }))
  app.get('/__emulator/device-codes', () => json({ deviceCodes: control.deviceCodes() }))
  app.post('/__emulator/device-codes/approve', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      if (typeof b.userCode !== 'string') return bad('userCode must be a string')
      const opts = typeof b.user === 'string' ? { user: b.user } : undefined
      return control.approveDeviceCode(b.userCode, opts)
        ? json({ ok: true })
        : bad('No pending device code has that user code.', 404)
    }))
  app.post('/__emulator/device-codes/deny', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      if (typeof b.userCode !== 'string') return bad('userCode must be a string')
      return control.denyDeviceCode(b.userCode)
        ? json({ ok: true })
        : bad('No pending device code has that user code.', 404)
    }))
  app.post(
    '/__emulator/refresh-tokens/expire',
    () => json({ expired: control.expireRefreshTokens() }),
  )
  app.post('/__emulator/clock', (c) =>
    attempt(async () => {
      const b = await body(c)
      if (b instanceof Response) return b
      if (typeof b.advanceSeconds !== 'number') return bad('advanceSeconds must be a number')
      control.advanceClock(b.advanceSeconds)
      return json({ now: new Date(control.now()).toISOString() })
    }))
  app.get('/__emulator/arc-key', (c) => {
    const key = control.arcKey(c.req.query('path') ?? '')
    return key === undefined
      ? bad('No valid Azure Arc key at that path.', 404)
      : new Response(key, {
        headers: { 'content-type': 'text/plain', 'cache-control': 'no-store' },
      })
  })
  app.get(
    '/__emulator/env/:source',
    (c) =>
      attempt(() =>
        json(emulatorEnv(new URL(c.req.url).origin, c.req.param('source') as EmulatorEnvSource, {
          secret: core.settings.managedIdentity.secret,
        }))
      ),
  )
}
