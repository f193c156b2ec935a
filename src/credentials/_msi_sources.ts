// Managed-identity sources (SPEC 3) as data: one table row per source (endpoint and secret
// variables, secret header, api-version, id parameters), plus detection, endpoint validation, the
// request builder, the IMDS retry set and the Azure Arc key-file steps. No I/O of their own:
// `MsiAuthentication` sends what they build through the one HTTP layer, and the Arc key file is
// read through the reader it is given.
import type { Env, FileReader } from '../env.ts'
import { AmlAuthError, CredentialUnavailableError } from '../errors.ts'
import { _retryStandard, type HttpResponse, type RetryPredicate } from '../http.ts'
import { _checkEndpoint, _isLoopback } from '../_validate.ts'

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

/** The kinds of user-assigned id, in the order of {@linkcode _SourceSpec.ids}. */
export const _ID_KINDS: readonly _IdKind[] = ['clientId', 'objectId', 'resourceId']

/** What each source needs and sends. */
export interface _SourceSpec {
  /** Endpoint name for messages. */
  what: string
  /**
   * Environment variables that must all be set (non-empty) for the source: the endpoint URL
   * first, then (for sources with a `header`) the secret. IMDS needs none.
   */
  vars: readonly string[]
  /** The header the secret variable (`vars[1]`) is sent in, if any. */
  header?: string
  /** The `api-version` query parameter; none for Cloud Shell, which takes a form POST. */
  api?: string
  /** Query parameter of a user-assigned clientId, objectId, resourceId; missing: unsupported. */
  ids?: readonly string[]
}

/** The id parameters of App Service and Service Fabric. */
const APP_IDS = ['client_id', 'object_id', 'mi_res_id']

/**
 * The table of SPEC 3, in detection order (first match wins; IMDS, needing nothing, matches
 * last). Every source but App Service and Service Fabric (which authenticate with
 * IDENTITY_HEADER alone) also sends `Metadata: true`.
 */
export const _SOURCE_SPECS: Readonly<Record<ManagedIdentitySource, _SourceSpec>> = {
  'service-fabric': {
    what: 'the Service Fabric managed identity endpoint',
    vars: ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT'],
    header: 'secret',
    api: '2019-07-01-preview',
    ids: APP_IDS,
  },
  'app-service': {
    what: 'the App Service managed identity endpoint',
    vars: ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER'],
    header: 'X-IDENTITY-HEADER',
    api: '2019-08-01',
    ids: APP_IDS,
  },
  'azure-arc': {
    what: 'the Azure Arc managed identity endpoint',
    vars: ['IDENTITY_ENDPOINT', 'IMDS_ENDPOINT'],
    api: '2020-06-01',
  },
  'azure-ml': {
    what: 'the Azure ML managed identity endpoint',
    vars: ['MSI_ENDPOINT', 'MSI_SECRET'],
    header: 'secret',
    api: '2017-09-01',
    ids: ['clientid'],
  },
  'cloud-shell': { what: 'the Cloud Shell managed identity endpoint', vars: ['MSI_ENDPOINT'] },
  imds: {
    what: 'the IMDS managed identity endpoint',
    vars: [],
    api: '2018-02-01',
    ids: ['client_id', 'object_id', 'msi_res_id'],
  },
}

/** Every source, in detection order (first match wins). */
export const _MSI_SOURCES: readonly ManagedIdentitySource[] = /* @__PURE__ */ Object.keys(
  _SOURCE_SPECS,
) as ManagedIdentitySource[]

/** The IMDS host when `AZURE_POD_IDENTITY_AUTHORITY_HOST` is not set. */
const IMDS_HOST = 'http://169.254.169.254'
/** The IMDS token path. */
const IMDS_PATH = '/metadata/identity/oauth2/token'

function has(env: Env, name: string): boolean {
  return !!env[name]?.trim()
}

/** The source the environment points at (SPEC 3 order; IMDS when nothing else matches). */
export function _detectSource(env: Env): ManagedIdentitySource {
  return _MSI_SOURCES.find((s) => _SOURCE_SPECS[s].vars.every((v) => has(env, v)))!
}

/** The query parameter of a user-assigned id for a source, or `undefined` if unsupported. */
export function _idParam(source: ManagedIdentitySource, kind: _IdKind): string | undefined {
  return _SOURCE_SPECS[source].ids?.[_ID_KINDS.indexOf(kind)]
}

/**
 * The endpoint of a source from the environment as `[url]`, or `[undefined, why]` when the
 * source cannot be used. The URL must parse, carry no user info, and use `https:`, or `http:`
 * only on loopback or the IMDS address 169.254.169.254 (real endpoints are plain http there).
 */
export function _resolveEndpoint(
  source: ManagedIdentitySource,
  env: Env,
): [url: string, why?: undefined] | [url: undefined, why: string] {
  const vars = _SOURCE_SPECS[source].vars
  const missing = vars.filter((v) => !has(env, v))
  if (missing.length) {
    return [undefined, `Set ${missing.join(', ')} for managed identity source ${source}`]
  }
  const name = vars[0] ?? 'AZURE_POD_IDENTITY_AUTHORITY_HOST'
  const raw = vars[0]
    ? env[name]!.trim()
    : (env[name]?.trim() || IMDS_HOST).replace(/\/+$/, '') + IMDS_PATH
  try {
    _checkEndpoint(raw, name, /^http:\/\/169\.254\.169\.254(?=[:/?#]|$)/i.test(raw))
  } catch (e) {
    // The shared message names loopback only; managed identity also accepts the IMDS address.
    const why = (e as Error).message.replace('loopback hosts', 'loopback hosts and 169.254.169.254')
    return [undefined, why + '; fix the environment variable']
  }
  const url = new URL(raw)
  // The Arc agent listens on 127.0.0.1 only; `localhost` may resolve to ::1 first.
  if (source === 'azure-arc' && url.hostname === 'localhost') url.hostname = '127.0.0.1'
  return [url.href]
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
  const { vars, header, api } = _SOURCE_SPECS[source]
  const headers: Record<string, string> = {}
  if (header) headers[header] = secret ?? ''
  if (vars[1] !== 'IDENTITY_HEADER') headers.Metadata = 'true'
  if (!api) return { method: 'POST', url: endpoint, headers, form: { resource } }
  const url = new URL(endpoint)
  url.searchParams.set('api-version', api)
  url.searchParams.set('resource', resource)
  if (id) url.searchParams.set(_idParam(source, id.kind)!, id.value)
  return { method: 'GET', url: url.href, headers }
}

/** How long IMDS keeps answering 410 while it is updated: retry at least this long. */
export const _IMDS_GONE_MS = 70_000

/**
 * The IMDS retry set: 404 (identity not yet available), 408, 429 and 5xx while retries remain;
 * 410 (IMDS being updated) for at least 70 s since the first attempt, whatever the retry count
 * (at most 100 attempts, against a server asking for zero-delay retries). Every other source
 * uses {@linkcode _retryStandard}: 408, 429 and 5xx.
 */
export function _retryImds(status: number, s: Parameters<RetryPredicate>[1]): boolean {
  if (status === 410) return s.elapsedMs < _IMDS_GONE_MS && s.attempt < 100
  return (status === 404 && s.attempt <= s.maxRetries) || _retryStandard(status, s)
}

/** The folders the Azure Arc agent writes its key files to. */
export const _ARC_KEY_DIRS: Readonly<{ linux: string; windows: string }> = {
  linux: '/var/opt/azcmagent/tokens',
  windows: 'C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens',
}

/** The key-file path from an Arc challenge (`WWW-Authenticate: Basic realm=<path>`), if any. */
export function _arcRealm(header: string | null): string | undefined {
  const m = /^\s*Basic\s+realm\s*=\s*(?:"([^"]*)"|(.*?))\s*$/i.exec(header ?? '')
  return m?.[1] || m?.[2] || undefined
}

/**
 * Why an Arc key-file path is refused, or `undefined` when it may be read: it must name a
 * `.key` file directly inside the agent's token folder (`dir`, or the Linux/Windows default
 * matching the path's shape), with no `.` or `..` segments and no control characters.
 */
export function _arcKeyPathProblem(path: string, dir?: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f]/.test(path)) return 'its path holds control characters'
  const windows = /^[A-Za-z]:[\\/]|^\\\\/.test(path)
  const parts = path.split(windows ? /[\\/]/ : '/')
  if (parts.some((p) => p === '.' || p === '..')) return 'its path has . or .. segments'
  if (!/.\.key$/.test(parts.pop()!)) return 'its name does not end in .key'
  const allowed = dir ?? _ARC_KEY_DIRS[windows ? 'windows' : 'linux']
  const norm = (p: string) =>
    windows ? p.replace(/\//g, '\\').replace(/\\+$/, '').toLowerCase() : p.replace(/\/+$/, '')
  if (norm(parts.join(windows ? '\\' : '/')) !== norm(allowed)) {
    return `it is not directly inside ${allowed}`
  }
}

/**
 * Azure Arc's second step: the key from the file its 401 challenge names, read with `readFile`
 * once the path passed {@linkcode _arcKeyPathProblem}. The key must be 1 to 4096 printable ASCII
 * characters (it goes into a header).
 *
 * @throws {AmlAuthError} `ERR_RESPONSE_INVALID` for a missing challenge or a refused file;
 * {CredentialUnavailableError} when the file cannot be read
 */
export async function _arcKey(
  res: HttpResponse,
  dir: string | undefined,
  readFile: FileReader,
): Promise<string> {
  const path = _arcRealm(res.headers.get('www-authenticate'))
  const problem = path === undefined
    ? 'the 401 has no WWW-Authenticate: Basic realm=<file>'
    : _arcKeyPathProblem(path, dir)
  if (problem === undefined) {
    let text: unknown
    try {
      text = await readFile(path!)
    } catch (e) {
      throw new CredentialUnavailableError(
        'Cannot read the Azure Arc key file; run as a member of the himds group (Windows: as an administrator) or pass readFile',
        { cause: e },
      )
    }
    const key = typeof text === 'string' ? text.trim() : ''
    if (/^[\x21-\x7e]{1,4096}$/.test(key)) return key
  }
  throw new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `Refused the Azure Arc key file: ${
      problem ?? 'it must hold 1 to 4096 printable ASCII characters'
    }; check IDENTITY_ENDPOINT and arcKeyDirectory`,
    { status: 401 },
  )
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
