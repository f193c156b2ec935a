// Managed-identity sources (SPEC 3): detection from the environment, endpoint validation, one
// request builder per source, the retry sets, and the Azure Arc key-file checks. Pure functions
// without I/O: `MsiAuthentication` sends what they build through the one HTTP layer.
import type { Env } from '../env.ts'
import { _retryStandard, type RetryPredicate } from '../http.ts'
import { _isLoopback } from '../_validate.ts'

/** Where a managed-identity token comes from (SPEC 3), in detection order last to first. */
export type ManagedIdentitySource =
  | 'imds'
  | 'app-service'
  | 'azure-arc'
  | 'azure-ml'
  | 'cloud-shell'
  | 'service-fabric'

/**
 * Which identity to use: a user-assigned identity by client id, object (principal) id or ARM
 * resource id. Leave it out (or pass `{}`) for the resource's system-assigned identity.
 */
export type ManagedIdentityConfig =
  | { clientId: string }
  | { objectId: string }
  | { resourceId: string }

/** Kinds of user-assigned identity ids. */
export type _IdKind = 'clientId' | 'objectId' | 'resourceId'

/** A validated user-assigned identity. */
export interface _Identity {
  kind: _IdKind
  value: string
}

/** Every source, in detection order (first match wins). */
export const _MSI_SOURCES: readonly ManagedIdentitySource[] = /* @__PURE__ */ Object.freeze([
  'service-fabric',
  'app-service',
  'azure-arc',
  'azure-ml',
  'cloud-shell',
  'imds',
])

/** What each source needs and accepts. */
export interface _SourceSpec {
  /** Endpoint name for messages. */
  what: string
  /** Environment variables that must all be set (non-empty) for the source. */
  required: readonly string[]
  /** The variable holding the endpoint URL (IMDS has a default host instead). */
  endpointVar?: string
  /** The variable holding the shared secret sent as a header, if any. */
  secretVar?: string
  /** Query parameter name for each supported kind of user-assigned id. */
  idParams: Partial<Record<_IdKind, string>>
  /** Why user-assigned ids are refused, for sources that take none or only some. */
  idRefusal?: string
}

/** The table of SPEC 3 (read-only by type; a plain literal, so bundlers can drop it). */
export const _SOURCE_SPECS: Readonly<Record<ManagedIdentitySource, _SourceSpec>> = {
  'service-fabric': {
    what: 'the Service Fabric managed identity endpoint',
    required: ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT'],
    endpointVar: 'IDENTITY_ENDPOINT',
    secretVar: 'IDENTITY_HEADER',
    idParams: { clientId: 'client_id', objectId: 'object_id', resourceId: 'mi_res_id' },
  },
  'app-service': {
    what: 'the App Service managed identity endpoint',
    required: ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER'],
    endpointVar: 'IDENTITY_ENDPOINT',
    secretVar: 'IDENTITY_HEADER',
    idParams: { clientId: 'client_id', objectId: 'object_id', resourceId: 'mi_res_id' },
  },
  'azure-arc': {
    what: 'the Azure Arc managed identity endpoint',
    required: ['IDENTITY_ENDPOINT', 'IMDS_ENDPOINT'],
    endpointVar: 'IDENTITY_ENDPOINT',
    idParams: {},
    idRefusal:
      "Azure Arc serves only the machine's system-assigned identity; remove identityConfig",
  },
  'azure-ml': {
    what: 'the Azure ML managed identity endpoint',
    required: ['MSI_ENDPOINT', 'MSI_SECRET'],
    endpointVar: 'MSI_ENDPOINT',
    secretVar: 'MSI_SECRET',
    idParams: { clientId: 'clientid' },
    idRefusal:
      'the Azure ML / App Service 2017 endpoint (MSI_ENDPOINT + MSI_SECRET) accepts a user-assigned identity by clientId only',
  },
  'cloud-shell': {
    what: 'the Cloud Shell managed identity endpoint',
    required: ['MSI_ENDPOINT'],
    endpointVar: 'MSI_ENDPOINT',
    idParams: {},
    idRefusal: "Cloud Shell serves only the signed-in user's identity; remove identityConfig",
  },
  imds: {
    what: 'the IMDS managed identity endpoint',
    required: [],
    idParams: { clientId: 'client_id', objectId: 'object_id', resourceId: 'msi_res_id' },
  },
}

/** The IMDS host when `AZURE_POD_IDENTITY_AUTHORITY_HOST` is not set. */
export const _IMDS_HOST = 'http://169.254.169.254'
/** The IMDS token path. */
export const _IMDS_PATH = '/metadata/identity/oauth2/token'

const API_VERSIONS: Readonly<Record<ManagedIdentitySource, string | undefined>> = {
  'service-fabric': '2019-07-01-preview',
  'app-service': '2019-08-01',
  'azure-arc': '2020-06-01',
  'azure-ml': '2017-09-01',
  'cloud-shell': undefined,
  imds: '2018-02-01',
}

function has(env: Env, name: string): boolean {
  const v = env[name]
  return typeof v === 'string' && v.trim() !== ''
}

/** The source the environment points at (SPEC 3 order; IMDS when nothing else matches). */
export function _detectSource(env: Env): ManagedIdentitySource {
  for (const s of _MSI_SOURCES) {
    const req = _SOURCE_SPECS[s].required
    if (req.length > 0 && req.every((v) => has(env, v))) return s
  }
  return 'imds'
}

/**
 * Why an endpoint URL is unacceptable, or `undefined` when it is fine: it must parse, carry no
 * user info, and use `https:`, or `http:` only on loopback or the IMDS address 169.254.169.254
 * (real managed-identity endpoints are plain http on those hosts).
 */
export function _endpointProblem(value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'is not a valid URL'
  }
  if (url.username || url.password) return 'must not contain credentials'
  if (url.protocol === 'https:') return undefined
  if (
    url.protocol === 'http:' && (_isLoopback(url.hostname) || url.hostname === '169.254.169.254')
  ) {
    return undefined
  }
  return 'must use https (plain http is accepted only for loopback hosts and 169.254.169.254)'
}

/** The endpoint of a source from the environment, or why the source cannot be used. */
export function _resolveEndpoint(
  source: ManagedIdentitySource,
  env: Env,
): { url: string } | { unavailable: string } {
  const spec = _SOURCE_SPECS[source]
  const missing = spec.required.filter((v) => !has(env, v))
  if (missing.length > 0) {
    return {
      unavailable: `Managed identity source ${source} needs the environment variable${
        missing.length > 1 ? 's' : ''
      } ${missing.join(', ')}, which ${
        missing.length > 1 ? 'are' : 'is'
      } not set; run on a host that provides ${source} managed identity or pick another source`,
    }
  }
  let raw: string
  let name: string
  if (spec.endpointVar === undefined) {
    name = 'AZURE_POD_IDENTITY_AUTHORITY_HOST'
    const host = has(env, name) ? env[name]!.trim() : _IMDS_HOST
    raw = host.replace(/\/+$/, '') + _IMDS_PATH
  } else {
    name = spec.endpointVar
    raw = env[name]!.trim()
  }
  const problem = _endpointProblem(raw)
  if (problem !== undefined) {
    return { unavailable: `${name} ${problem}; fix the environment variable` }
  }
  const url = new URL(raw)
  // The Arc agent listens on 127.0.0.1 only; `localhost` may resolve to ::1 first.
  if (source === 'azure-arc' && url.hostname === 'localhost') url.hostname = '127.0.0.1'
  return { url: url.href }
}

/** One managed-identity request, as data. */
export interface _MsiRequest {
  method: 'GET' | 'POST'
  url: string
  headers: Record<string, string>
  form?: Record<string, string>
}

/**
 * Builds the request of a source for one resource. `secret` is the value of the source's secret
 * variable (IDENTITY_HEADER or MSI_SECRET); `id` a user-assigned identity the source supports.
 */
export function _buildMsiRequest(
  source: ManagedIdentitySource,
  endpoint: string,
  resource: string,
  id: _Identity | undefined,
  secret: string | undefined,
): _MsiRequest {
  const url = new URL(endpoint)
  const headers: Record<string, string> = {}
  const idParam = id === undefined ? undefined : _SOURCE_SPECS[source].idParams[id.kind]
  if (id !== undefined && idParam === undefined) {
    throw new TypeError(`identityConfig.${id.kind} is not supported by ${source}`)
  }
  if (source === 'cloud-shell') {
    headers['Metadata'] = 'true'
    return { method: 'POST', url: url.href, headers, form: { resource } }
  }
  url.searchParams.set('api-version', API_VERSIONS[source]!)
  url.searchParams.set('resource', resource)
  if (id !== undefined) url.searchParams.set(idParam!, id.value)
  switch (source) {
    case 'service-fabric':
      headers['secret'] = secret ?? ''
      break
    case 'app-service':
      headers['X-IDENTITY-HEADER'] = secret ?? ''
      break
    case 'azure-ml':
      headers['secret'] = secret ?? ''
      headers['Metadata'] = 'true'
      break
    case 'azure-arc':
    case 'imds':
      headers['Metadata'] = 'true'
      break
  }
  return { method: 'GET', url: url.href, headers }
}

/** How long IMDS keeps answering 410 while it is updated: retry at least this long. */
export const _IMDS_GONE_MS = 70_000
/** A safety bound on 410 attempts, against a server asking for zero-delay retries. */
const MAX_GONE_ATTEMPTS = 100

/**
 * The IMDS retry set: 404 (identity not yet available), 408, 429 and 5xx while retries remain;
 * 410 (IMDS being updated) for at least 70 s since the first attempt, whatever the retry count.
 */
export function _retryImds(status: number, s: Parameters<RetryPredicate>[1]): boolean {
  if (status === 410) return s.elapsedMs < _IMDS_GONE_MS && s.attempt < MAX_GONE_ATTEMPTS
  return s.attempt <= s.maxRetries &&
    (status === 404 || status === 408 || status === 429 || status >= 500)
}

/** Every other source: 408, 429 and 5xx while retries remain. */
export function _retryManagedIdentity(status: number, s: Parameters<RetryPredicate>[1]): boolean {
  return _retryStandard(status, s)
}

/** The retry set of a source. */
export function _retryFor(source: ManagedIdentitySource): RetryPredicate {
  return source === 'imds' ? _retryImds : _retryManagedIdentity
}

/** The folders the Azure Arc agent writes its key files to. */
export const _ARC_KEY_DIRS: Readonly<{ linux: string; windows: string }> = {
  linux: '/var/opt/azcmagent/tokens',
  windows: 'C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens',
}

/** Largest Azure Arc key file accepted, in bytes. */
export const _ARC_KEY_MAX_BYTES = 4096

/** The key-file path from an Arc challenge (`WWW-Authenticate: Basic realm=<path>`), if any. */
export function _arcRealm(header: string | null): string | undefined {
  if (header === null) return undefined
  const m = /^\s*Basic\s+realm\s*=\s*(?:"([^"]*)"|(.*?))\s*$/i.exec(header)
  const path = m?.[1] ?? m?.[2]
  return path ? path : undefined
}

/**
 * Why an Arc key-file path is refused, or `undefined` when it may be read: it must name a
 * `.key` file directly inside the agent's token folder (`dir`, or the Linux/Windows default
 * matching the path's shape), with no `.` or `..` segments and no control characters.
 */
export function _arcKeyPathProblem(path: string, dir?: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f]/.test(path)) return 'its path contains control characters'
  const windows = /^[A-Za-z]:[\\/]/.test(path) || path.startsWith('\\\\')
  const sep = windows ? /[\\/]/ : /\//
  const parts = path.split(sep)
  if (parts.some((p) => p === '.' || p === '..')) return 'its path contains . or .. segments'
  const name = parts[parts.length - 1] ?? ''
  if (!name.endsWith('.key') || name === '.key') return 'the file name does not end in .key'
  const folder = parts.slice(0, -1).join(windows ? '\\' : '/')
  const allowed = dir ?? (windows ? _ARC_KEY_DIRS.windows : _ARC_KEY_DIRS.linux)
  const norm = (p: string) => {
    const s = windows ? p.replace(/\//g, '\\').replace(/\\+$/, '') : p.replace(/\/+$/, '')
    return windows ? s.toLowerCase() : s
  }
  if (norm(folder) !== norm(allowed)) {
    return `it is not directly inside the agent's token folder ${allowed}`
  }
  return undefined
}

/** Whether a URL points at a loopback or link-local host (unreachable from Cloudflare Workers). */
export function _isLocalEndpoint(url: string): boolean {
  let host: string
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase()
  } catch {
    return false
  }
  return _isLoopback(host) || /^169\.254\.\d{1,3}\.\d{1,3}$/.test(host) ||
    /^fe[89ab][0-9a-f]:/.test(host)
}
