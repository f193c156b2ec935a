/**
 * Managed identity, one route per source, each with its real contract (headers, api-version,
 * parameter names, response shape, errors): IMDS, App Service 2019, Azure ML / App Service 2017,
 * Cloud Shell, Azure Arc and Service Fabric.
 *
 * @module
 */
import type { Hono } from 'hono'
import { type Incoming, route } from './http.ts'
import type { EmulatorCore, Identity } from './state.ts'
import { mintAccessToken } from './tokens.ts'
import { constantTimeEqual, json, randomHex, usDate12, usDate24 } from './util.ts'
import { DEMO } from './config.ts'

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

/** A source-specific error, rendered by the source's `fail`. */
class MiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

type Selector = { by: 'clientId' | 'objectId' | 'resourceId'; value: string } | null

function selector(
  q: URLSearchParams,
  names: { clientId?: string; objectId?: string; resourceId?: string },
): Selector {
  const found: NonNullable<Selector>[] = []
  for (const by of ['clientId', 'objectId', 'resourceId'] as const) {
    const name = names[by]
    const v = name ? q.get(name) : null
    if (v) found.push({ by, value: v })
  }
  if (found.length > 1) {
    throw new MiError(
      400,
      'invalid_request',
      'Only one of client_id, object_id or resource id may be given',
    )
  }
  return found[0] ?? null
}

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

async function mint(core: EmulatorCore, r: Incoming, identity: Identity, resource: string) {
  const known = core.findResource(resource)
  if (!known) {
    throw new MiError(
      400,
      'invalid_resource',
      `AADSTS500011: The resource principal named ${resource} was not found in the tenant named ${
        core.tenants.get(identity.tenantId)?.displayName ?? identity.tenantId
      }. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
    )
  }
  const lifetime = identity.tokenLifetimeSeconds ??
    core.settings.managedIdentity.tokenLifetimeSeconds
  const minted = await mintAccessToken(core, {
    origin: r.origin,
    tenantId: identity.tenantId,
    audience: resource,
    version: known.tokenVersion,
    lifetimeSeconds: lifetime,
    principal: { kind: 'mi', identity },
  })
  return { ...minted, expiresIn: minted.exp - Math.floor(core.now() / 1000) }
}

function metadataHeader(r: Incoming): boolean {
  return r.request.headers.get('metadata')?.toLowerCase() === 'true'
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

function oauthFail(e: MiError): Response {
  return json({ error: e.code, error_description: e.message }, e.status)
}

function guarded(
  fail: (e: MiError) => Response,
  handler: (r: Incoming) => Promise<Response>,
): (c: unknown, r: Incoming) => Promise<Response> {
  return async (_c, r) => {
    try {
      return await handler(r)
    } catch (e) {
      if (e instanceof MiError) return fail(e)
      throw e
    }
  }
}

function apiVersionAtLeast(v: string | null, min: string): boolean {
  return v !== null && /^\d{4}-\d{2}-\d{2}$/.test(v) && v >= min
}

/** Registers the managed-identity routes. */
export function registerManagedIdentityRoutes(app: Hono, core: EmulatorCore): void {
  // IMDS (Azure VMs, VM scale sets, AKS pod identity)
  app.get(
    MI_PATHS.imds,
    route(
      core,
      'mi.imds',
      guarded(oauthFail, async (r) => {
        const q = r.url.searchParams
        if (!metadataHeader(r)) {
          throw new MiError(400, 'invalid_request', 'Required metadata header not specified')
        }
        const v = q.get('api-version')
        if (!v) {
          throw new MiError(
            400,
            'invalid_request',
            "Required query variable 'api-version' is missing",
          )
        }
        if (!apiVersionAtLeast(v, '2018-02-01')) {
          throw new MiError(400, 'invalid_request', `Invalid api-version '${v}'`)
        }
        const resource = q.get('resource')
        if (!resource) {
          throw new MiError(400, 'invalid_request', "Required query variable 'resource' is missing")
        }
        const sel = selector(q, {
          clientId: 'client_id',
          objectId: 'object_id',
          resourceId: 'msi_res_id',
        })
        const identity = resolveIdentity(core, sel, 'Identity not found')
        const m = await mint(core, r, identity, resource)
        return json(imdsShape(m, resource, identity.clientId))
      }),
    ),
  )

  // App Service / Functions / Container Apps, 2019-08-01
  const appServiceFail = (e: MiError) =>
    json({ statusCode: e.status, message: e.message, correlationId: crypto.randomUUID() }, e.status)
  app.get(
    MI_PATHS.appService,
    route(
      core,
      'mi.app-service',
      guarded(appServiceFail, async (r) => {
        const q = r.url.searchParams
        const header = r.request.headers.get('x-identity-header')
        if (!header) {
          throw new MiError(400, 'invalid_request', 'The X-IDENTITY-HEADER header is missing.')
        }
        if (!constantTimeEqual(header, core.settings.managedIdentity.secret)) {
          throw new MiError(401, 'unauthorized', 'The X-IDENTITY-HEADER header is not valid.')
        }
        const v = q.get('api-version')
        if (v !== '2019-08-01') {
          throw new MiError(
            400,
            'invalid_request',
            `The api-version '${v ?? ''}' is not supported. Use 2019-08-01.`,
          )
        }
        const resource = q.get('resource')
        if (!resource) {
          throw new MiError(400, 'invalid_request', "The 'resource' query parameter is required.")
        }
        const sel = selector(q, {
          clientId: 'client_id',
          objectId: 'object_id',
          resourceId: 'mi_res_id',
        })
        const identity = resolveIdentity(core, sel, 'Unable to load the proper Managed Identity.')
        const m = await mint(core, r, identity, resource)
        return json({
          access_token: m.token,
          expires_on: String(m.exp),
          resource,
          token_type: 'Bearer',
          client_id: identity.clientId,
        })
      }),
    ),
  )

  // Azure ML compute / App Service 2017-09-01
  app.get(
    MI_PATHS.azureml,
    route(
      core,
      'mi.azureml',
      guarded(oauthFail, async (r) => {
        const q = r.url.searchParams
        const secret = r.request.headers.get('secret')
        if (!secret || !constantTimeEqual(secret, core.settings.managedIdentity.secret)) {
          throw new MiError(401, 'invalid_client', "The 'secret' header is missing or not valid.")
        }
        const v = q.get('api-version')
        if (v !== '2017-09-01') {
          throw new MiError(
            400,
            'invalid_request',
            `The api-version '${v ?? ''}' is not supported. Use 2017-09-01.`,
          )
        }
        const resource = q.get('resource')
        if (!resource) {
          throw new MiError(400, 'invalid_request', "Required query variable 'resource' is missing")
        }
        const sel = selector(q, { clientId: 'clientid' })
        const identity = resolveIdentity(core, sel, 'Identity not found')
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
      }),
    ),
  )

  // Cloud Shell: the signed-in user's token
  app.post(
    MI_PATHS.cloudShell,
    route(
      core,
      'mi.cloud-shell',
      guarded(oauthFail, async (r) => {
        if (!metadataHeader(r)) {
          throw new MiError(400, 'invalid_request', 'Required metadata header not specified')
        }
        const q = new URLSearchParams([...r.url.searchParams, ...r.form])
        if (q.get('client_id') || q.get('object_id') || q.get('msi_res_id') || q.get('mi_res_id')) {
          throw new MiError(
            400,
            'invalid_request',
            'User assigned identities are not supported in Cloud Shell',
          )
        }
        const resource = r.form.get('resource')
        if (!resource) {
          throw new MiError(400, 'invalid_request', "Required form field 'resource' is missing")
        }
        const user = core.defaultUser()
        if (!user) throw new MiError(400, 'invalid_request', 'No user is signed in to Cloud Shell')
        const known = core.findResource(resource)
        if (!known) {
          throw new MiError(
            400,
            'invalid_resource',
            `AADSTS500011: The resource principal named ${resource} was not found in the tenant named ${
              core.tenants.get(user.tenantId)?.displayName ?? user.tenantId
            }.`,
          )
        }
        const minted = await mintAccessToken(core, {
          origin: r.origin,
          tenantId: user.tenantId,
          audience: resource,
          version: known.tokenVersion,
          lifetimeSeconds: core.settings.tokenLifetimeSeconds,
          principal: {
            kind: 'user',
            appId: DEMO.publicClientId,
            user,
            scp: 'user_impersonation',
            acr: '0',
          },
        })
        const m = { ...minted, expiresIn: minted.exp - Math.floor(core.now() / 1000) }
        return json(imdsShape(m, resource, DEMO.publicClientId))
      }),
    ),
  )

  // Azure Arc (himds): challenge with a key file, then Basic auth with its contents
  app.get(
    MI_PATHS.arc,
    route(
      core,
      'mi.arc',
      guarded(oauthFail, async (r) => {
        const q = r.url.searchParams
        if (!metadataHeader(r)) {
          throw new MiError(400, 'invalid_request', 'Required metadata header not specified')
        }
        const v = q.get('api-version')
        if (!v) {
          throw new MiError(
            400,
            'invalid_request',
            "Required query variable 'api-version' is missing",
          )
        }
        if (!apiVersionAtLeast(v, '2020-06-01')) {
          throw new MiError(400, 'invalid_request', `Invalid api-version '${v}'`)
        }
        const resource = q.get('resource')
        if (!resource) {
          throw new MiError(400, 'invalid_request', "Required query variable 'resource' is missing")
        }
        if (q.get('client_id') || q.get('object_id') || q.get('msi_res_id') || q.get('mi_res_id')) {
          throw new MiError(
            400,
            'invalid_request',
            'User assigned identities are not supported by Azure Arc. Remove client_id, object_id and msi_res_id.',
          )
        }
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
      }),
    ),
  )

  // Service Fabric, 2019-07-01-preview
  const sfFail = (e: MiError) =>
    json(
      { error: { correlationId: crypto.randomUUID(), code: e.code, message: e.message } },
      e.status,
    )
  app.get(
    MI_PATHS.serviceFabric,
    route(
      core,
      'mi.service-fabric',
      guarded(sfFail, async (r) => {
        const q = r.url.searchParams
        const secret = r.request.headers.get('secret')
        if (!secret) {
          throw new MiError(
            400,
            'SecretHeaderNotFound',
            'Secret is not found in the request headers.',
          )
        }
        if (!constantTimeEqual(secret, core.settings.managedIdentity.secret)) {
          throw new MiError(
            401,
            'SecretHeaderMismatch',
            'The secret in the request headers is not valid.',
          )
        }
        const v = q.get('api-version')
        if (v !== '2019-07-01-preview') {
          throw new MiError(
            400,
            'InvalidApiVersion',
            `The api-version '${v ?? ''}' is not supported. Use 2019-07-01-preview.`,
          )
        }
        const resource = q.get('resource')
        if (!resource) {
          throw new MiError(
            400,
            'ArgumentNullOrEmpty',
            "The parameter 'resource' is null or empty.",
          )
        }
        let sel: Selector
        try {
          sel = selector(q, {
            clientId: 'client_id',
            objectId: 'object_id',
            resourceId: 'mi_res_id',
          })
        } catch (e) {
          if (e instanceof MiError) throw new MiError(400, 'InvalidParameter', e.message)
          throw e
        }
        let identity: Identity
        try {
          identity = resolveIdentity(core, sel, 'The managed identity was not found.')
        } catch (e) {
          if (e instanceof MiError) throw new MiError(400, 'ManagedIdentityNotFound', e.message)
          throw e
        }
        let m
        try {
          m = await mint(core, r, identity, resource)
        } catch (e) {
          if (e instanceof MiError) throw new MiError(400, 'InvalidResource', e.message)
          throw e
        }
        return json({ token_type: 'Bearer', access_token: m.token, expires_on: m.exp, resource })
      }),
    ),
  )
}
