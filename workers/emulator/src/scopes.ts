/**
 * Parsing of v2 `scope` strings into OpenID scopes plus one resource and its permissions.
 *
 * @module
 */
import { entraErrors } from './entra_errors.ts'
import { normalizeResource } from './util.ts'

/** OpenID Connect scopes. */
export const OIDC_SCOPES: ReadonlySet<string> = new Set([
  'openid',
  'profile',
  'email',
  'offline_access',
])

/** Microsoft Graph, the resource of bare permissions such as `User.Read`. */
export const GRAPH = 'https://graph.microsoft.com'

/** A parsed scope string. */
export interface ParsedScopes {
  raw: string
  /** OpenID scopes present. */
  oidc: Set<string>
  /** The resource the other scopes name, or `null` when there are only OpenID scopes. */
  resource: string | null
  /** Permissions on that resource (`.default`, `User.Read`, …). */
  permissions: string[]
}

/** Parses a scope string; throws Entra's invalid-scope errors. */
export function parseScopes(raw: string): ParsedScopes {
  const oidc = new Set<string>()
  let resource: string | null = null
  const permissions: string[] = []
  const parts = raw.split(/\s+/).filter(Boolean)
  if (parts.length === 0) throw entraErrors.invalidScope(raw)
  for (const part of parts) {
    if (OIDC_SCOPES.has(part.toLowerCase())) {
      oidc.add(part.toLowerCase())
      continue
    }
    if (/[\s"<>\\^`{|}]/.test(part)) throw entraErrors.invalidScope(part)
    let res: string
    let perm: string
    const scheme = part.indexOf('://')
    const slash = part.lastIndexOf('/')
    if (scheme >= 0) {
      if (slash <= scheme + 2) throw entraErrors.invalidScope(part)
      res = part.slice(0, slash)
      perm = part.slice(slash + 1)
      if (!/^[a-z][a-z0-9+.-]*:\/\/[^/]/i.test(res)) throw entraErrors.invalidScope(part)
    } else if (slash >= 0) {
      res = part.slice(0, slash)
      perm = part.slice(slash + 1)
    } else {
      res = GRAPH
      perm = part
    }
    if (!perm || !res) throw entraErrors.invalidScope(part)
    if (resource === null) resource = res
    else if (normalizeResource(resource) !== normalizeResource(res)) {
      throw entraErrors.multipleResources(raw)
    }
    permissions.push(perm)
  }
  return { raw, oidc, resource, permissions }
}

/** The `scp` claim for delegated permissions. */
export function delegatedScp(resource: string, permissions: string[]): string {
  const explicit = permissions.filter((p) => p !== '.default')
  if (explicit.length) return [...new Set(explicit)].join(' ')
  return normalizeResource(resource) === GRAPH ? 'User.Read' : 'user_impersonation'
}
