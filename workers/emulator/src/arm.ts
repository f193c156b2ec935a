/**
 * Azure Resource Manager, the part the credential library needs: `GET /subscriptions` (paged with
 * `nextLink`), `GET /subscriptions/{id}` and `GET /tenants`, behind a bearer token the emulator
 * issued for an ARM audience. Errors use ARM's `{ error: { code, message } }` shape.
 *
 * @module
 */
import type { Context, Hono } from 'hono'
import { ARM_AUDIENCES, type SubscriptionConfig } from './config.ts'
import type { RouteName } from './faults.ts'
import { type Incoming, route } from './http.ts'
import type { EmulatorCore } from './state.ts'
import { json, normalizeResource } from './util.ts'

const ARM_AUDIENCE_SET = new Set(ARM_AUDIENCES.map(normalizeResource))

function armError(status: number, code: string, message: string, challenge?: string): Response {
  const headers: Record<string, string> = { 'x-ms-failure-cause': 'gateway' }
  if (challenge) {
    headers['www-authenticate'] =
      `Bearer authorization_uri="${challenge}", error="invalid_token", error_description="${message}"`
  }
  return json({ error: { code, message } }, status, headers)
}

/** Verifies the ARM bearer token; returns its claims or the ARM error response. */
async function authenticate(
  core: EmulatorCore,
  r: Incoming,
): Promise<Record<string, unknown> | Response> {
  const authz = r.origin
  const header = r.request.headers.get('authorization')
  if (!header) {
    return armError(
      401,
      'AuthenticationFailed',
      "Authentication failed. The 'Authorization' header is missing.",
      authz,
    )
  }
  const m = /^bearer\s+(\S+)$/i.exec(header.trim())
  if (!m) {
    return armError(
      401,
      'AuthenticationFailedInvalidHeader',
      "Authentication failed. The 'Authorization' header is provided in an invalid format.",
      authz,
    )
  }
  let claims: Record<string, unknown>
  try {
    claims = await core.keys.verify(m[1]!, core.now())
  } catch (e) {
    if (e instanceof Error && (e as { code?: string }).code === 'ERR_JWT_EXPIRED') {
      return armError(
        401,
        'ExpiredAuthenticationToken',
        `The access token expiry UTC time is earlier than current UTC time '${
          new Date(core.now()).toISOString()
        }'.`,
        authz,
      )
    }
    return armError(401, 'InvalidAuthenticationToken', 'The access token is invalid.', authz)
  }
  const aud = typeof claims.aud === 'string' ? claims.aud : ''
  if (!ARM_AUDIENCE_SET.has(normalizeResource(aud))) {
    return armError(
      401,
      'InvalidAuthenticationTokenAudience',
      `The access token has been obtained for wrong audience or resource '${aud}'. It should ` +
        `exactly match with one of the allowed audiences '${ARM_AUDIENCES.join("','")}'.`,
      authz,
    )
  }
  if (typeof claims.tid !== 'string') {
    return armError(401, 'InvalidAuthenticationToken', 'The access token is invalid.', authz)
  }
  return claims
}

function requireApiVersion(r: Incoming): Response | null {
  if (r.url.searchParams.get('api-version')) return null
  return armError(
    400,
    'MissingApiVersionParameter',
    'The api-version query parameter (?api-version=) is required for all requests.',
  )
}

function subscriptionItem(s: SubscriptionConfig) {
  return {
    id: `/subscriptions/${s.subscriptionId}`,
    authorizationSource: 'RoleBased',
    managedByTenants: [],
    subscriptionId: s.subscriptionId,
    tenantId: s.tenantId,
    displayName: s.displayName,
    state: s.state ?? 'Enabled',
    subscriptionPolicies: {
      locationPlacementId: 'Public_2014-09-01',
      quotaId: 'PayAsYouGo_2014-09-01',
      spendingLimit: 'Off',
    },
  }
}

/** Registers the ARM routes. */
export function registerArmRoutes(app: Hono, core: EmulatorCore): void {
  /** A GET route that needs an api-version and an ARM bearer token, then runs `handler`. */
  const serve = (
    path: string,
    name: RouteName,
    handler: (c: Context, r: Incoming, claims: Record<string, unknown>) => Response,
  ) =>
    app.get(
      path,
      route(core, name, async (c, r) => {
        const bad = requireApiVersion(r)
        if (bad) return bad
        const claims = await authenticate(core, r)
        return claims instanceof Response ? claims : handler(c, r, claims)
      }),
    )

  serve('/subscriptions', 'arm.subscriptions', (_c, r, claims) => {
    const visible = core.subscriptions.filter((s) => s.tenantId === claims.tid)
    const skipParam = r.url.searchParams.get('$skiptoken')
    let offset = 0
    if (skipParam !== null) {
      offset = Number(skipParam)
      if (!Number.isInteger(offset) || offset < 0) {
        return armError(400, 'InvalidSkipToken', 'The $skiptoken query parameter is not valid.')
      }
    }
    const size = core.settings.armPageSize
    const page = visible.slice(offset, offset + size)
    const body: Record<string, unknown> = {
      value: page.map(subscriptionItem),
      count: { type: 'Total', value: visible.length },
    }
    if (offset + size < visible.length) {
      const next = new URL(`${r.origin}/subscriptions`)
      next.searchParams.set('api-version', r.url.searchParams.get('api-version')!)
      next.searchParams.set('$skiptoken', String(offset + size))
      body.nextLink = next.href
    }
    return json(body)
  })
  serve('/subscriptions/:id', 'arm.subscriptions', (c, _r, claims) => {
    const id = c.req.param('id')!.toLowerCase()
    const sub = core.subscriptions.find((s) => s.subscriptionId === id && s.tenantId === claims.tid)
    if (!sub) {
      return armError(404, 'SubscriptionNotFound', `The subscription '${id}' could not be found.`)
    }
    return json(subscriptionItem(sub))
  })
  serve('/tenants', 'arm.tenants', (_c, _r, claims) => {
    const t = core.tenants.get(claims.tid as string)
    const value = t
      ? [{
        id: `/tenants/${t.id}`,
        tenantId: t.id,
        tenantCategory: 'Home',
        displayName: t.displayName,
        domains: t.domains,
      }]
      : []
    return json({ value, count: { type: 'Total', value: value.length } })
  })
}
