/**
 * The emulator's state: registrations (tenants, clients, users, identities, subscriptions,
 * resources), in-flight grants (authorization codes, device codes, refresh tokens, used assertion
 * ids, Azure Arc keys), settings, the clock, faults and the request log.
 *
 * @module
 */
import type {
  ClientConfig,
  EmulatorConfig,
  EmulatorSettings,
  FederatedCredentialConfig,
  IdentityConfig,
  Registrations,
  ResourceConfig,
  SubscriptionConfig,
  TenantConfig,
  UserConfig,
} from './config.ts'
import { demoRegistrations, KNOWN_RESOURCES, resolveSettings } from './config.ts'
import { entraErrors } from './entra_errors.ts'
import { FaultQueue } from './faults.ts'
import { SigningKeys } from './keys.ts'
import { RequestLog } from './request_log.ts'
import { fromBase64, normalizeResource } from './util.ts'

/** A registered tenant. */
export interface Tenant {
  id: string
  domains: string[]
  displayName: string
}

/** A registered certificate of a client. */
export interface ClientCertificate {
  /** PEM of the first certificate. */
  pem: string
  /** DER bytes of the first certificate. */
  der: Uint8Array<ArrayBuffer>
}

/** A registered client (app). */
export interface Client {
  clientId: string
  tenantId: string
  multiTenant: boolean
  displayName: string
  objectId: string
  secrets: string[]
  certificates: ClientCertificate[]
  federatedCredentials: FederatedCredentialConfig[]
  publicClient: boolean
  redirectUris: string[]
  roles: string[]
  tokenLifetimeSeconds: number | undefined
}

/** A registered user. */
export interface User {
  objectId: string
  username: string
  name: string
  tenantId: string
}

/** A managed identity. */
export interface Identity {
  clientId: string
  objectId: string
  resourceId: string
  tenantId: string
  tokenLifetimeSeconds: number | undefined
  system: boolean
}

/** A resource tokens can be issued for. */
export interface Resource {
  id: string
  tokenVersion: 1 | 2
}

/** A pending authorization code. */
export interface AuthCode {
  clientId: string
  redirectUri: string
  scope: string
  userId: string
  tenantId: string
  codeChallenge: string | null
  codeChallengeMethod: string | null
  nonce: string | null
  expiresAt: number
  redeemed: boolean
}

/** A device-code grant. */
export interface DeviceCodeGrant {
  deviceCode: string
  userCode: string
  clientId: string
  tenantSegment: string
  scope: string
  expiresAt: number
  interval: number
  polls: number
  lastPollAt: number | null
  status: 'pending' | 'approved' | 'declined' | 'redeemed'
  userId: string | null
}

/** A refresh token's grant. */
export interface RefreshGrant {
  clientId: string
  userId: string
  tenantId: string
  scope: string
  issuedAt: number
  expiresAt: number
}

/** The scope of an Azure ML run token. */
export interface RunScope {
  /** Subscription id. */
  subscriptionId: string
  /** Resource group. */
  resourceGroupName: string
  /** Workspace name. */
  workspaceName: string
  /** Experiment name (the `.../experiments/{name}/...` route). */
  experimentName?: string
  /** Experiment id (the `.../experimentids/{id}/...` route). */
  experimentId?: string
  /** Run id. */
  runId: string
}

const TENANT_ALIASES = new Set(['common', 'organizations', 'consumers'])

/** Everything the route modules share. */
export class EmulatorCore {
  readonly keys: SigningKeys
  readonly faults: FaultQueue = new FaultQueue()
  readonly log: RequestLog
  readonly writeKeyFile: (path: string, contents: string) => void | Promise<void>
  settings: EmulatorSettings
  clockOffsetMs = 0

  tenants: Map<string, Tenant> = new Map()
  clients: Map<string, Client> = new Map()
  users: Map<string, User> = new Map()
  identities: Map<string, Identity> = new Map()
  subscriptions: SubscriptionConfig[] = []
  resources: Map<string, Resource> = new Map()

  authCodes: Map<string, AuthCode> = new Map()
  deviceCodes: Map<string, DeviceCodeGrant> = new Map()
  refreshTokens: Map<string, RefreshGrant> = new Map()
  usedJtis: Map<string, number> = new Map()
  arcKeys: Map<string, { key: string; expiresAt: number }> = new Map()
  reuse: Map<string, { token: string; iat: number; exp: number }> = new Map()

  readonly #config: EmulatorConfig
  readonly #baseNow: () => number

  constructor(
    config: EmulatorConfig,
    options: {
      now?: () => number
      writeKeyFile?: (path: string, contents: string) => void | Promise<void>
    } = {},
  ) {
    this.#config = structuredClone(config)
    this.#baseNow = options.now ?? Date.now
    this.writeKeyFile = options.writeKeyFile ?? (() => {})
    this.keys = new SigningKeys(config.signingKey)
    this.settings = resolveSettings(config)
    this.log = new RequestLog(this.settings.requestLogLimit)
    this.#load()
  }

  /** The emulator clock, milliseconds (wall clock plus any `advanceClock`). */
  now(): number {
    return this.#baseNow() + this.clockOffsetMs
  }

  #load(): void {
    if (this.#config.demo !== false) this.register(demoRegistrations())
    this.register(this.#config)
    for (const r of KNOWN_RESOURCES) {
      this.resources.set(normalizeResource(r), { id: r, tokenVersion: 1 })
    }
    for (const f of this.#config.faults ?? []) this.faults.add(f)
    this.#syncSystemIdentity()
  }

  /** Back to the configuration the emulator started with (the signing key is kept). */
  reset(): void {
    this.tenants.clear()
    this.clients.clear()
    this.users.clear()
    this.identities.clear()
    this.subscriptions = []
    this.resources.clear()
    this.authCodes.clear()
    this.deviceCodes.clear()
    this.refreshTokens.clear()
    this.usedJtis.clear()
    this.arcKeys.clear()
    this.reuse.clear()
    this.faults.clear()
    this.log.clear()
    this.clockOffsetMs = 0
    this.settings = resolveSettings(this.#config)
    this.log.limit = this.settings.requestLogLimit
    this.#load()
  }

  /** Re-registers the system-assigned identity from the settings. */
  #syncSystemIdentity(): void {
    for (const [k, v] of this.identities) if (v.system) this.identities.delete(k)
    const sys = this.settings.managedIdentity.systemIdentity
    if (sys) this.#addIdentity(sys, true)
  }

  /** Called after settings change. */
  settingsChanged(): void {
    this.log.limit = this.settings.requestLogLimit
    this.#syncSystemIdentity()
    this.reuse.clear()
  }

  #defaultTenantId(): string {
    const first = this.tenants.values().next()
    if (first.done) throw new TypeError('register a tenant first')
    return first.value.id
  }

  /** Adds registrations (validated; throws `TypeError` naming the bad field). */
  register(reg: Registrations): void {
    for (const t of reg.tenants ?? []) this.#addTenant(t)
    for (const c of reg.clients ?? []) this.#addClient(c)
    for (const u of reg.users ?? []) this.#addUser(u)
    for (const i of reg.identities ?? []) this.#addIdentity(i, false)
    for (const s of reg.subscriptions ?? []) this.#addSubscription(s)
    for (const r of reg.resources ?? []) this.#addResource(r)
    this.reuse.clear()
  }

  #addTenant(t: TenantConfig): void {
    requireString(t?.id, 'tenants[].id')
    const tenant: Tenant = {
      id: t.id.toLowerCase(),
      domains: (t.domains ?? []).map((d) => d.toLowerCase()),
      displayName: t.displayName ?? t.domains?.[0] ?? t.id,
    }
    this.tenants.set(tenant.id, tenant)
  }

  #addClient(c: ClientConfig): void {
    requireString(c?.clientId, 'clients[].clientId')
    const certificates = (c.certificates ?? []).map((pem, i) =>
      parseCertificate(pem, `clients[].certificates[${i}]`)
    )
    const secrets = c.secrets ?? []
    const federated = c.federatedCredentials ?? []
    for (const f of federated) {
      requireString(f?.issuer, 'clients[].federatedCredentials[].issuer')
      requireString(f.subject, 'clients[].federatedCredentials[].subject')
      if (!Array.isArray(f.jwks?.keys)) {
        throw new TypeError('clients[].federatedCredentials[].jwks.keys must be an array')
      }
    }
    const tenantId = (c.tenantId ?? this.#defaultTenantId()).toLowerCase()
    const client: Client = {
      clientId: c.clientId.toLowerCase(),
      tenantId,
      multiTenant: c.multiTenant ?? false,
      displayName: c.displayName ?? c.clientId,
      objectId: c.objectId ?? crypto.randomUUID(),
      secrets,
      certificates,
      federatedCredentials: federated,
      publicClient: c.publicClient ??
        (secrets.length === 0 && certificates.length === 0 && federated.length === 0),
      redirectUris: c.redirectUris ?? [],
      roles: c.roles ?? [],
      tokenLifetimeSeconds: c.tokenLifetimeSeconds,
    }
    this.clients.set(client.clientId, client)
  }

  #addUser(u: UserConfig): void {
    requireString(u?.objectId, 'users[].objectId')
    requireString(u.username, 'users[].username')
    this.users.set(u.objectId.toLowerCase(), {
      objectId: u.objectId.toLowerCase(),
      username: u.username,
      name: u.name ?? u.username,
      tenantId: (u.tenantId ?? this.#defaultTenantId()).toLowerCase(),
    })
  }

  #addIdentity(i: IdentityConfig, system: boolean): void {
    requireString(i?.clientId, 'identities[].clientId')
    requireString(i.objectId, 'identities[].objectId')
    requireString(i.resourceId, 'identities[].resourceId')
    const identity: Identity = {
      clientId: i.clientId.toLowerCase(),
      objectId: i.objectId.toLowerCase(),
      resourceId: i.resourceId,
      tenantId: (i.tenantId ?? this.#defaultTenantId()).toLowerCase(),
      tokenLifetimeSeconds: i.tokenLifetimeSeconds,
      system,
    }
    this.identities.set(identity.clientId, identity)
  }

  #addSubscription(s: SubscriptionConfig): void {
    requireString(s?.subscriptionId, 'subscriptions[].subscriptionId')
    requireString(s.displayName, 'subscriptions[].displayName')
    const sub = {
      ...s,
      subscriptionId: s.subscriptionId.toLowerCase(),
      tenantId: (s.tenantId ?? this.#defaultTenantId()).toLowerCase(),
    }
    this.subscriptions = this.subscriptions.filter((x) => x.subscriptionId !== sub.subscriptionId)
    this.subscriptions.push(sub)
  }

  #addResource(r: string | ResourceConfig): void {
    const res: Resource = typeof r === 'string'
      ? { id: r, tokenVersion: 2 }
      : { id: r.id, tokenVersion: r.tokenVersion ?? 2 }
    requireString(res.id, 'resources[].id')
    this.resources.set(normalizeResource(res.id), res)
  }

  /**
   * Resolves the tenant segment of an Entra path. Returns `null` for `common`, `organizations`
   * and `consumers`; throws the Entra error for a bad or unknown tenant.
   */
  resolveTenant(segment: string, discovery = false): Tenant | null {
    const s = segment.toLowerCase()
    if (TENANT_ALIASES.has(s)) return null
    if (!/^[0-9a-z.-]+$/.test(s)) throw entraErrors.invalidTenantName(segment)
    const byId = this.tenants.get(s)
    if (byId) return byId
    for (const t of this.tenants.values()) if (t.domains.includes(s)) return t
    throw entraErrors.tenantNotFound(segment, discovery)
  }

  /** A user by username or object id. */
  findUser(idOrName: string | null | undefined): User | undefined {
    if (!idOrName) return undefined
    const key = idOrName.toLowerCase()
    const byId = this.users.get(key)
    if (byId) return byId
    for (const u of this.users.values()) if (u.username.toLowerCase() === key) return u
    return undefined
  }

  /** The user who approves interactive requests. */
  defaultUser(): User | undefined {
    return this.findUser(this.settings.defaultUser) ?? this.users.values().next().value
  }

  /** A resource by id, including registered clients' ids and `api://<clientId>`. */
  findResource(resource: string): Resource | undefined {
    const key = normalizeResource(resource)
    const known = this.resources.get(key)
    if (known) return known
    const appId = key.startsWith('api://') ? key.slice(6) : key
    if (this.clients.has(appId)) return { id: resource, tokenVersion: 2 }
    return undefined
  }

  /** A managed identity by one selector. */
  findIdentity(by: 'clientId' | 'objectId' | 'resourceId', value: string): Identity | undefined {
    const v = value.toLowerCase()
    if (by === 'clientId') return this.identities.get(v)
    for (const i of this.identities.values()) {
      if (by === 'objectId' && i.objectId === v) return i
      if (by === 'resourceId' && i.resourceId.toLowerCase() === v) return i
    }
    return undefined
  }

  /** The system-assigned identity, if any. */
  systemIdentity(): Identity | undefined {
    for (const i of this.identities.values()) if (i.system) return i
    return undefined
  }

  /** Remembers an assertion id until `expMs`; false when it was already used. */
  useJti(clientId: string, jti: string, expMs: number): boolean {
    const now = this.now()
    if (this.usedJtis.size > 10_000) {
      for (const [k, v] of this.usedJtis) if (v < now) this.usedJtis.delete(k)
    }
    const key = `${clientId}\u0000${jti}`
    const seen = this.usedJtis.get(key)
    if (seen !== undefined && seen >= now) return false
    this.usedJtis.set(key, expMs + this.settings.clockSkewSeconds * 1000)
    return true
  }

  /** Drops expired codes, device codes and refresh tokens (called now and then). */
  sweep(): void {
    const now = this.now()
    for (const [k, v] of this.authCodes) if (v.expiresAt < now - 3600_000) this.authCodes.delete(k)
    for (const [k, v] of this.deviceCodes) {
      if (v.expiresAt < now - 3600_000) {
        this.deviceCodes.delete(k)
      }
    }
    for (const [k, v] of this.arcKeys) if (v.expiresAt < now) this.arcKeys.delete(k)
  }
}

function requireString(v: unknown, name: string): asserts v is string {
  if (typeof v !== 'string' || v.length === 0) {
    throw new TypeError(`${name} must be a non-empty string`)
  }
}

/** Parses the first certificate of a PEM (chains allowed). */
export function parseCertificate(pem: string, name = 'certificate'): ClientCertificate {
  if (typeof pem !== 'string') throw new TypeError(`${name} must be a PEM string`)
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem)
  if (!m) throw new TypeError(`${name} holds no PEM certificate`)
  let der: Uint8Array<ArrayBuffer>
  try {
    der = fromBase64(m[1]!)
  } catch {
    throw new TypeError(`${name} is not valid base64 PEM`)
  }
  return { pem: m[0], der }
}
