/**
 * Configuration of the emulator: what is registered (tenants, clients, users, identities,
 * subscriptions, resources) and how it behaves (lifetimes, device-code pacing, paging, faults).
 * Every field is optional; {@link resolveSettings} fills in the defaults.
 *
 * @module
 */
import type { FaultSpec, RouteName } from './faults.ts'

/** A directory (tenant). `id` is a GUID; `domains` are extra names it answers to. */
export interface TenantConfig {
  /** Tenant id (GUID). */
  id: string
  /** Verified domain names, e.g. `contoso.onmicrosoft.com`. */
  domains?: string[]
  /** Display name used in error messages. */
  displayName?: string
}

/** A federated identity credential: trust JWTs from another issuer as client assertions. */
export interface FederatedCredentialConfig {
  /** Expected `iss` of the assertion. */
  issuer: string
  /** Expected `sub` of the assertion. */
  subject: string
  /** Accepted `aud` values (default `["api://AzureADTokenExchange"]`). */
  audiences?: string[]
  /** The issuer's public keys (inline JWKS; the emulator fetches nothing). */
  jwks: { keys: JsonWebKey[] }
}

/** An app registration (and its service principal). */
export interface ClientConfig {
  /** Application (client) id. */
  clientId: string
  /** Home tenant id (default: the first registered tenant). */
  tenantId?: string
  /** When true the app may get tokens in every registered tenant. */
  multiTenant?: boolean
  /** Display name. */
  displayName?: string
  /** Object id of the service principal: the `oid` of app-only tokens (default: derived). */
  objectId?: string
  /** Client secrets. */
  secrets?: string[]
  /** Certificates (PEM; a chain is allowed, its first certificate is the key's). */
  certificates?: string[]
  /** Federated identity credentials. */
  federatedCredentials?: FederatedCredentialConfig[]
  /** A public client sends no credential. Default: true when it has no credential at all. */
  publicClient?: boolean
  /** Allowed redirect URIs. Loopback URIs (`http://localhost`, `http://127.0.0.1`) on any port are always allowed. */
  redirectUris?: string[]
  /** App roles granted to the app: the `roles` claim of app-only tokens. */
  roles?: string[]
  /** Access-token lifetime for this client, in seconds. */
  tokenLifetimeSeconds?: number
}

/** A user who signs in through the authorization-code and device-code flows. */
export interface UserConfig {
  /** Object id (GUID). */
  objectId: string
  /** User principal name, e.g. `ada@emulator.onmicrosoft.com`. */
  username: string
  /** Display name. */
  name?: string
  /** Home tenant (default: the first registered tenant). */
  tenantId?: string
}

/** A managed identity. */
export interface IdentityConfig {
  /** Client id. */
  clientId: string
  /** Object (principal) id. */
  objectId: string
  /** ARM resource id (for user-assigned identities, `.../userAssignedIdentities/<name>`). */
  resourceId: string
  /** Tenant (default: the first registered tenant). */
  tenantId?: string
  /** Token lifetime for this identity, in seconds. */
  tokenLifetimeSeconds?: number
}

/** A subscription listed by ARM. */
export interface SubscriptionConfig {
  /** Subscription id (GUID). */
  subscriptionId: string
  /** Display name. */
  displayName: string
  /** Tenant (default: the first registered tenant). Only tokens of this tenant list it. */
  tenantId?: string
  /** Default `Enabled`. */
  state?: string
}

/** A resource (API) tokens may be issued for. */
export interface ResourceConfig {
  /** Resource id / application id URI, e.g. `api://my-api` or `https://my.example`. */
  id: string
  /** Access-token version: 1 (`iss` `{origin}/{tid}/`, `appid`) or 2 (`iss` `{origin}/{tid}/v2.0`, `azp`). Default 2. */
  tokenVersion?: 1 | 2
}

/** What can be registered at start-up or later through `register()`. */
export interface Registrations {
  /** Tenants. */
  tenants?: TenantConfig[]
  /** App registrations. */
  clients?: ClientConfig[]
  /** Users. */
  users?: UserConfig[]
  /** User-assigned managed identities. */
  identities?: IdentityConfig[]
  /** Subscriptions. */
  subscriptions?: SubscriptionConfig[]
  /** Extra resources (strings default to token version 2). */
  resources?: (string | ResourceConfig)[]
}

/** Format of `expires_on` on the Azure ML / App Service 2017 route. */
export type AzureMlExpiresOnFormat = 'date' | 'date12h' | 'epoch'

/** Device-code flow behaviour. */
export interface DeviceCodeSettings {
  /** `interval` returned to clients, seconds (default 5, as Entra). */
  intervalSeconds: number
  /** `expires_in` of a device code, seconds (default 900). */
  expiresInSeconds: number
  /** Approve as the default user after this many pending polls; `null` waits for an explicit approve (default 1). */
  autoApproveAfterPolls: number | null
  /** Answer `slow_down` to polls that come sooner than `interval` (default false). */
  enforceInterval: boolean
}

/** Managed-identity behaviour. */
export interface ManagedIdentitySettings {
  /** Secret expected in `X-IDENTITY-HEADER` (App Service), `secret` (Azure ML, Service Fabric). */
  secret: string
  /** Token lifetime, seconds (default 86399, about 24 h as real managed identities). */
  tokenLifetimeSeconds: number
  /** `expires_on` format of the Azure ML / 2017 route (default `date`). */
  azuremlExpiresOnFormat: AzureMlExpiresOnFormat
  /** Folder the Azure Arc key files are written to (the realm of the challenge). */
  arcKeyDir: string
  /** Identity served when no user-assigned one is asked for; `null` = no system-assigned identity. */
  systemIdentity: IdentityConfig | null
}

/** Behaviour settings, all with defaults. */
export interface EmulatorSettings {
  /** Entra access-token lifetime, seconds (default 3599). */
  tokenLifetimeSeconds: number
  /** Refresh-token lifetime, seconds (default 90 days). */
  refreshTokenLifetimeSeconds: number
  /** Authorization-code lifetime, seconds (default 600). */
  authorizationCodeLifetimeSeconds: number
  /** Run-token lifetime when none is given, seconds (default 3600). */
  runTokenLifetimeSeconds: number
  /** Clock skew allowed on client assertions, seconds (default 300). */
  clockSkewSeconds: number
  /** Reuse an identical access token for this many seconds instead of signing a new one (0 = off, default). */
  tokenReuseSeconds: number
  /** Username or object id of the user who approves authorize / device-code requests. */
  defaultUser: string
  /** Device-code flow. */
  deviceCode: DeviceCodeSettings
  /** Managed identity. */
  managedIdentity: ManagedIdentitySettings
  /** ARM: subscriptions per page (default 2, so that clients must follow `nextLink`). */
  armPageSize: number
  /** Latency added to each route, milliseconds (`*` = every route). */
  latency: Partial<Record<RouteName | '*', number>>
  /** Maximum kept request-log entries (default 1000). */
  requestLogLimit: number
  /** When set, `/__emulator/*` requires `Authorization: Bearer <controlToken>`. */
  controlToken: string | null
}

/** A partial update of {@link EmulatorSettings}. */
export type SettingsPatch =
  & Partial<Omit<EmulatorSettings, 'deviceCode' | 'managedIdentity'>>
  & {
    deviceCode?: Partial<DeviceCodeSettings>
    managedIdentity?: Partial<ManagedIdentitySettings>
  }

/** The whole configuration: registrations, settings, initial faults and the signing key. */
export interface EmulatorConfig extends Registrations, SettingsPatch {
  /** Register the {@link DEMO} tenants, clients, user, identities and subscriptions (default true). */
  demo?: boolean
  /** Faults armed at start (and after every reset). */
  faults?: FaultSpec[]
  /** A fixed RS256 signing key (PKCS#8 PEM) so tokens verify across restarts; default: generated. */
  signingKey?: { privateKeyPem: string; kid?: string }
}

/** Resources every emulator accepts: ARM audiences and Azure ML resource ids of the three clouds, and Graph. */
export const KNOWN_RESOURCES: readonly string[] = Object.freeze([
  'https://management.core.windows.net/',
  'https://management.core.chinacloudapi.cn/',
  'https://management.core.usgovcloudapi.net/',
  'https://management.azure.com/',
  'https://management.chinacloudapi.cn/',
  'https://management.usgovcloudapi.net/',
  'https://ml.azure.com',
  'https://ml.azure.cn',
  'https://ml.azure.us',
  'https://graph.microsoft.com',
])

/** Audiences ARM accepts (with and without the trailing slash). */
export const ARM_AUDIENCES: readonly string[] = Object.freeze([
  'https://management.core.windows.net/',
  'https://management.core.chinacloudapi.cn/',
  'https://management.core.usgovcloudapi.net/',
  'https://management.azure.com/',
  'https://management.chinacloudapi.cn/',
  'https://management.usgovcloudapi.net/',
])

/** Shape of {@link DEMO}. */
export interface DemoValues {
  readonly tenantId: string
  readonly tenantDomain: string
  readonly secondTenantId: string
  readonly secondTenantDomain: string
  readonly clientId: string
  readonly clientSecret: string
  readonly clientObjectId: string
  readonly publicClientId: string
  readonly user: { readonly objectId: string; readonly username: string; readonly name: string }
  readonly msiSecret: string
  readonly systemIdentity: {
    readonly clientId: string
    readonly objectId: string
    readonly resourceId: string
  }
  readonly userIdentity: {
    readonly clientId: string
    readonly objectId: string
    readonly resourceId: string
  }
  readonly serviceFabricThumbprint: string
  readonly subscriptions: readonly {
    readonly subscriptionId: string
    readonly displayName: string
  }[]
  readonly workspace: {
    readonly subscriptionId: string
    readonly resourceGroupName: string
    readonly workspaceName: string
    readonly experimentName: string
    readonly experimentId: string
    readonly runId: string
  }
}

/** Well-known demo values, registered unless `demo: false`. */
export const DEMO: DemoValues = Object.freeze({
  tenantId: '8d3e0f4a-7c1b-4e2d-9a6f-0e5b1c2d3a4f',
  tenantDomain: 'emulator.onmicrosoft.com',
  secondTenantId: '5b0c2e9d-3f4a-4b6c-8d7e-1f2a3b4c5d6e',
  secondTenantDomain: 'fabrikam-emulator.onmicrosoft.com',
  clientId: '0d5e6f7a-8b9c-4d0e-a1f2-b3c4d5e6f7a8',
  clientSecret: 'emulator-client-secret~not-a-real-secret',
  clientObjectId: '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f',
  publicClientId: '04b07795-8ddb-461a-bbee-02f9e1bf7b46',
  user: Object.freeze({
    objectId: '6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d',
    username: 'ada@emulator.onmicrosoft.com',
    name: 'Ada Lovelace',
  }),
  msiSecret: 'emulator-msi-secret',
  systemIdentity: Object.freeze({
    clientId: '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b',
    objectId: '1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9',
    resourceId:
      '/subscriptions/2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d/resourceGroups/emulator-rg/providers/Microsoft.Compute/virtualMachines/emulator-vm',
  }),
  userIdentity: Object.freeze({
    clientId: '4d5c6b7a-8f9e-4d0c-9b1a-2f3e4d5c6b7a',
    objectId: '7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d',
    resourceId:
      '/subscriptions/2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d/resourcegroups/emulator-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/emulator-identity',
  }),
  serviceFabricThumbprint: '0123456789ABCDEF0123456789ABCDEF01234567',
  subscriptions: Object.freeze([
    Object.freeze({
      subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
      displayName: 'Emulator Subscription 1',
    }),
    Object.freeze({
      subscriptionId: '3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e',
      displayName: 'Emulator Subscription 2',
    }),
    Object.freeze({
      subscriptionId: '4c5d6e7f-8a9b-4cad-9e1f-3a4b5c6d7e8f',
      displayName: 'Emulator Subscription 3',
    }),
  ]),
  workspace: Object.freeze({
    subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
    resourceGroupName: 'emulator-rg',
    workspaceName: 'emulator-ws',
    experimentName: 'emulator-experiment',
    experimentId: '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9',
    runId: 'emulator-run-1',
  }),
})

/** The registrations behind {@link DEMO}. */
export function demoRegistrations(): Registrations {
  return {
    tenants: [
      { id: DEMO.tenantId, domains: [DEMO.tenantDomain], displayName: 'Emulator' },
      { id: DEMO.secondTenantId, domains: [DEMO.secondTenantDomain], displayName: 'Fabrikam' },
    ],
    clients: [
      {
        clientId: DEMO.clientId,
        tenantId: DEMO.tenantId,
        displayName: 'emulator-demo-app',
        objectId: DEMO.clientObjectId,
        secrets: [DEMO.clientSecret],
        multiTenant: true,
      },
      {
        clientId: DEMO.publicClientId,
        tenantId: DEMO.tenantId,
        displayName: 'Microsoft Azure CLI',
        publicClient: true,
        multiTenant: true,
      },
    ],
    users: [{ ...DEMO.user, tenantId: DEMO.tenantId }],
    identities: [{ ...DEMO.userIdentity, tenantId: DEMO.tenantId }],
    subscriptions: DEMO.subscriptions.map((s) => ({ ...s, tenantId: DEMO.tenantId })),
  }
}

/** The default settings. */
export function defaultSettings(): EmulatorSettings {
  return {
    tokenLifetimeSeconds: 3599,
    refreshTokenLifetimeSeconds: 90 * 24 * 3600,
    authorizationCodeLifetimeSeconds: 600,
    runTokenLifetimeSeconds: 3600,
    clockSkewSeconds: 300,
    tokenReuseSeconds: 0,
    defaultUser: DEMO.user.username,
    deviceCode: {
      intervalSeconds: 5,
      expiresInSeconds: 900,
      autoApproveAfterPolls: 1,
      enforceInterval: false,
    },
    managedIdentity: {
      secret: DEMO.msiSecret,
      tokenLifetimeSeconds: 86399,
      azuremlExpiresOnFormat: 'date',
      arcKeyDir: '/var/opt/azcmagent/tokens',
      systemIdentity: { ...DEMO.systemIdentity, tenantId: DEMO.tenantId },
    },
    armPageSize: 2,
    latency: {},
    requestLogLimit: 1000,
    controlToken: null,
  }
}

/** Applies a patch to settings (nested objects merged), validating numbers. */
export function applySettings(base: EmulatorSettings, patch: SettingsPatch): EmulatorSettings {
  const next: EmulatorSettings = {
    ...base,
    deviceCode: { ...base.deviceCode },
    managedIdentity: { ...base.managedIdentity },
    latency: { ...base.latency },
  }
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) continue
    if (k === 'deviceCode' || k === 'managedIdentity' || k === 'latency') {
      if (typeof v !== 'object' || v === null) {
        throw new TypeError(`settings.${k} must be an object`)
      }
      Object.assign(next[k], v)
    } else if (k in next) {
      ;(next as unknown as Record<string, unknown>)[k] = v
    }
  }
  for (
    const [name, value] of [
      ['tokenLifetimeSeconds', next.tokenLifetimeSeconds],
      ['refreshTokenLifetimeSeconds', next.refreshTokenLifetimeSeconds],
      ['authorizationCodeLifetimeSeconds', next.authorizationCodeLifetimeSeconds],
      ['runTokenLifetimeSeconds', next.runTokenLifetimeSeconds],
      ['managedIdentity.tokenLifetimeSeconds', next.managedIdentity.tokenLifetimeSeconds],
      ['deviceCode.expiresInSeconds', next.deviceCode.expiresInSeconds],
    ] as const
  ) {
    if (typeof value !== 'number' || !(value > 0)) {
      throw new RangeError(`settings.${name} must be a positive number`)
    }
  }
  if (!(next.armPageSize >= 1)) throw new RangeError('settings.armPageSize must be at least 1')
  if (!(next.deviceCode.intervalSeconds >= 0)) {
    throw new RangeError('settings.deviceCode.intervalSeconds must be zero or more')
  }
  if (!['date', 'date12h', 'epoch'].includes(next.managedIdentity.azuremlExpiresOnFormat)) {
    throw new RangeError(
      'settings.managedIdentity.azuremlExpiresOnFormat must be date, date12h or epoch',
    )
  }
  return next
}

/** Settings from a configuration: defaults, then the config's settings fields. */
export function resolveSettings(config: EmulatorConfig): EmulatorSettings {
  const {
    tenants: _t,
    clients: _c,
    users: _u,
    identities: _i,
    subscriptions: _s,
    resources: _r,
    demo: _d,
    faults: _f,
    signingKey: _k,
    ...settings
  } = config
  return applySettings(defaultSettings(), settings)
}
