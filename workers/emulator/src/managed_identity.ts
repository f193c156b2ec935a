/**
 * Managed identity, one route per source, each with its real contract (headers, api-version,
 * parameter names, response shape, errors): IMDS, App Service 2019, Azure ML / App Service 2017,
 * Cloud Shell, Azure Arc and Service Fabric.
 *
 * @module
 */
import type { Hono } from 'hono'
import type { RouteName } from './faults.ts'
import { type Incoming, route } from './http.ts'
import type { EmulatorCore, Identity } from './state.ts'
import { mintAccessToken, type Principal } from './tokens.ts'
import { constantTimeEqual, json, randomHex, usDate12, usDate24 } from './util.ts'
import { DEMO } from './config.ts'
import {
  guarded,
  MiError,
  type MiFailure,
  type MiRule,
  oauthFail,
  recoded,
  rejectUserAssigned,
  requireMiQuery,
  requireParam,
  type Selector,
  selector,
  type SelectorNames,
} from './mi_request.ts'

/** Path of each managed-identity source on the emulator's origin. */
export const MI_PATHS: {
  readonly imds: string
  readonly appService: string
  readonly azureml: string
  readonly cloudShell: string
  readonly arc: string
  readonly arcImds: string
  readonly serviceFabric: string
} = Object.freeze({
  imds: '/metadata/identity/oauth2/token',
  appService: '/msi/app-service/token',
  azureml: '/msi/azureml/token',
  cloudShell: '/msi/cloud-shell/token',
  arc: '/msi/arc/metadata/identity/oauth2/token',
  arcImds: '/msi/arc',
  serviceFabric: '/msi/service-fabric/token',
})

function resolveIdentity(core: EmulatorCore, sel: Selector, notFound: string): Identity {
  if (sel) {
    const found = core.findIdentity(sel.by, sel.value)
    if (!found) throw new MiError(400, 'invalid_request', notFound)
    return found
  }
  const system = core.systemIdentity()
  if (system) return system
  const users = [...core.identities.values()]
  if (users.length === 1) return users[0]!
  if (users.length > 1) {
    throw new MiError(
      400,
      'invalid_request',
      'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request',
    )
  }
  throw new MiError(400, 'invalid_request', notFound)
}

const NOT_INSTALLED =
  ' This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.'

/** Mints a token for `resource`, refused (`invalid_resource`) when the emulator does not know it. */
async function mintFor(
  core: EmulatorCore,
  r: Incoming,
  resource: string,
  grant: { tenantId: string; lifetimeSeconds: number; principal: Principal },
  detail: string,
) {
  const known = core.findResource(resource)
  if (!known) {
    throw new MiError(
      400,
      'invalid_resource',
      `AADSTS500011: The resource principal named ${resource} was not found in the tenant named ${
        core.tenants.get(grant.tenantId)?.displayName ?? grant.tenantId
      }.${detail}`,
    )
  }
  const minted = await mintAccessToken(core, {
    origin: r.origin,
    audience: resource,
    version: known.tokenVersion,
    ...grant,
  })
  return { ...minted, expiresIn: minted.exp - Math.floor(core.now() / 1000) }
}

function mint(core: EmulatorCore, r: Incoming, identity: Identity, resource: string) {
  const lifetimeSeconds = identity.tokenLifetimeSeconds ??
    core.settings.managedIdentity.tokenLifetimeSeconds
  const principal: Principal = { kind: 'mi', identity }
  return mintFor(
    core,
    r,
    resource,
    { tenantId: identity.tenantId, lifetimeSeconds, principal },
    NOT_INSTALLED,
  )
}

function imdsShape(
  m: { token: string; iat: number; exp: number; expiresIn: number },
  resource: string,
  clientId: string,
): Record<string, string> {
  return {
    access_token: m.token,
    client_id: clientId,
    expires_in: String(m.expiresIn),
    expires_on: String(m.exp),
    ext_expires_in: String(m.expiresIn),
    not_before: String(m.iat),
    resource,
    token_type: 'Bearer',
  }
}

const appServiceFail = (e: MiError) =>
  json({ statusCode: e.status, message: e.message, correlationId: crypto.randomUUID() }, e.status)
const sfFail = (e: MiError) =>
  json(
    { error: { correlationId: crypto.randomUUID(), code: e.code, message: e.message } },
    e.status,
  )

/** A GET source: where it is, how it renders errors, what it requires. */
interface MiSource extends MiRule {
  readonly path: string
  readonly name: RouteName
  readonly fail: (e: MiError) => Response
  /** The refusal when the `resource` query parameter is missing. */
  readonly resource: MiFailure
}

const AZUREML_SECRET_REFUSED: MiFailure = [
  401,
  'invalid_client',
  "The 'secret' header is missing or not valid.",
]
const QUERY_RESOURCE_MISSING: MiFailure = [
  400,
  'invalid_request',
  "Required query variable 'resource' is missing",
]
const MI_RES_ID_SELECTORS: SelectorNames = {
  clientId: 'client_id',
  objectId: 'object_id',
  resourceId: 'mi_res_id',
}

/** Each GET source's request contract (Cloud Shell, a POST with a form, has its own). */
const SOURCES = {
  imds: {
    path: MI_PATHS.imds,
    name: 'mi.imds',
    fail: oauthFail,
    metadata: true,
    minApiVersion: '2018-02-01',
    resource: QUERY_RESOURCE_MISSING,
  },
  appService: {
    path: MI_PATHS.appService,
    name: 'mi.app-service',
    fail: appServiceFail,
    secretHeader: {
      name: 'x-identity-header',
      missing: [400, 'invalid_request', 'The X-IDENTITY-HEADER header is missing.'],
      invalid: [401, 'unauthorized', 'The X-IDENTITY-HEADER header is not valid.'],
    },
    exactApiVersion: { version: '2019-08-01', code: 'invalid_request' },
    resource: [400, 'invalid_request', "The 'resource' query parameter is required."],
  },
  azureml: {
    path: MI_PATHS.azureml,
    name: 'mi.azureml',
    fail: oauthFail,
    secretHeader: {
      name: 'secret',
      missing: AZUREML_SECRET_REFUSED,
      invalid: AZUREML_SECRET_REFUSED,
    },
    exactApiVersion: { version: '2017-09-01', code: 'invalid_request' },
    resource: QUERY_RESOURCE_MISSING,
  },
  arc: {
    path: MI_PATHS.arc,
    name: 'mi.arc',
    fail: oauthFail,
    metadata: true,
    minApiVersion: '2020-06-01',
    resource: QUERY_RESOURCE_MISSING,
  },
  serviceFabric: {
    path: MI_PATHS.serviceFabric,
    name: 'mi.service-fabric',
    fail: sfFail,
    secretHeader: {
      name: 'secret',
      missing: [400, 'SecretHeaderNotFound', 'Secret is not found in the request headers.'],
      invalid: [401, 'SecretHeaderMismatch', 'The secret in the request headers is not valid.'],
    },
    exactApiVersion: { version: '2019-07-01-preview', code: 'InvalidApiVersion' },
    resource: [400, 'ArgumentNullOrEmpty', "The parameter 'resource' is null or empty."],
  },
} as const satisfies Record<string, MiSource>

/** Registers the managed-identity routes. */
export function registerManagedIdentityRoutes(app: Hono, core: EmulatorCore): void {
  /** A GET source: its contract checked, then `handler` with the query and the resource. */
  const serve = (
    source: MiSource,
    handler: (r: Incoming, q: URLSearchParams, resource: string) => Promise<Response>,
  ) =>
    app.get(
      source.path,
      route(
        core,
        source.name,
        guarded(source.fail, (r) => {
          const q = requireMiQuery(r, source, core.settings.managedIdentity.secret)
          return handler(r, q, requireParam(q, 'resource', source.resource))
        }),
      ),
    )

  // IMDS (Azure VMs, VM scale sets, AKS pod identity)
  serve(SOURCES.imds, async (r, q, resource) => {
    const sel = selector(q, {
      clientId: 'client_id',
      objectId: 'object_id',
      resourceId: 'msi_res_id',
    })
    const identity = resolveIdentity(core, sel, 'Identity not found')
    const m = await mint(core, r, identity, resource)
    return json(imdsShape(m, resource, identity.clientId))
  })

  // App Service / Functions / Container Apps, 2019-08-01
  serve(SOURCES.appService, async (r, q, resource) => {
    const sel = selector(q, MI_RES_ID_SELECTORS)
    const identity = resolveIdentity(core, sel, 'Unable to load the proper Managed Identity.')
    const m = await mint(core, r, identity, resource)
    return json({
      access_token: m.token,
      expires_on: String(m.exp),
      resource,
      token_type: 'Bearer',
      client_id: identity.clientId,
    })
  })

  // Azure ML compute / App Service 2017-09-01
  serve(SOURCES.azureml, async (r, q, resource) => {
    const identity = resolveIdentity(
      core,
      selector(q, { clientId: 'clientid' }),
      'Identity not found',
    )
    const m = await mint(core, r, identity, resource)
    const format = core.settings.managedIdentity.azuremlExpiresOnFormat
    const expiresOn = format === 'epoch'
      ? m.exp
      : format === 'date12h'
      ? usDate12(m.exp * 1000)
      : usDate24(m.exp * 1000)
    return json({
      access_token: m.token,
      expires_on: expiresOn,
      resource,
      token_type: 'Bearer',
      client_id: identity.clientId,
    })
  })

  // Cloud Shell: the signed-in user's token
  app.post(
    MI_PATHS.cloudShell,
    route(
      core,
      'mi.cloud-shell',
      guarded(oauthFail, async (r) => {
        requireMiQuery(r, { metadata: true }, core.settings.managedIdentity.secret)
        rejectUserAssigned(
          new URLSearchParams([...r.url.searchParams, ...r.form]),
          'User assigned identities are not supported in Cloud Shell',
        )
        const resource = requireParam(r.form, 'resource', [
          400,
          'invalid_request',
          "Required form field 'resource' is missing",
        ])
        const user = core.defaultUser()
        if (!user) throw new MiError(400, 'invalid_request', 'No user is signed in to Cloud Shell')
        const m = await mintFor(core, r, resource, {
          tenantId: user.tenantId,
          lifetimeSeconds: core.settings.tokenLifetimeSeconds,
          principal: {
            kind: 'user',
            appId: DEMO.publicClientId,
            user,
            scp: 'user_impersonation',
            acr: '0',
          },
        }, '')
        return json(imdsShape(m, resource, DEMO.publicClientId))
      }),
    ),
  )

  // Azure Arc (himds): challenge with a key file, then Basic auth with its contents
  serve(SOURCES.arc, async (r, q, resource) => {
    rejectUserAssigned(
      q,
      'User assigned identities are not supported by Azure Arc. Remove client_id, object_id and msi_res_id.',
    )
    const auth = r.request.headers.get('authorization')
    if (!auth) {
      const dir = core.settings.managedIdentity.arcKeyDir.replace(/[\\/]+$/, '')
      const sep = dir.includes('\\') && !dir.includes('/') ? '\\' : '/'
      const path = `${dir}${sep}${crypto.randomUUID()}.key`
      const key = randomHex(32)
      await core.writeKeyFile(path, key)
      core.arcKeys.set(path, { key, expiresAt: core.now() + 600_000 })
      core.sweep()
      return json(
        { error: 'unauthorized_client', error_description: 'Authorization header is missing.' },
        401,
        { 'www-authenticate': `Basic realm=${path}` },
      )
    }
    const m = /^basic\s+(.+)$/i.exec(auth.trim())
    const presented = m?.[1]?.trim() ?? ''
    const now = core.now()
    let ok = false
    for (const k of core.arcKeys.values()) {
      if (k.expiresAt >= now && constantTimeEqual(k.key, presented)) ok = true
    }
    if (!ok) {
      throw new MiError(401, 'unauthorized_client', 'The Authorization key is not valid.')
    }
    const identity = core.systemIdentity()
    if (!identity) throw new MiError(400, 'invalid_request', 'Identity not found')
    const minted = await mint(core, r, identity, resource)
    return json(imdsShape(minted, resource, identity.clientId))
  })

  // Service Fabric, 2019-07-01-preview
  serve(SOURCES.serviceFabric, async (r, q, resource) => {
    const sel = await recoded('InvalidParameter', () => selector(q, MI_RES_ID_SELECTORS))
    const identity = await recoded(
      'ManagedIdentityNotFound',
      () => resolveIdentity(core, sel, 'The managed identity was not found.'),
    )
    const m = await recoded('InvalidResource', () => mint(core, r, identity, resource))
    return json({ token_type: 'Bearer', access_token: m.token, expires_on: m.exp, resource })
  })
}
