/**
 * `AzureCliAuthentication`: tokens from the Azure CLI the developer is signed in to, by running
 * `az account get-access-token` (no shell, arguments as an array, a timeout).
 *
 * @module
 */
import { AccessToken } from '../access_token.ts'
import { _resourceOf } from '../clouds.ts'
import { type CommandResult, type CommandRunner, denoCommandRunner } from '../env.ts'
import { AmlAuthError, AuthenticationError, CredentialUnavailableError } from '../errors.ts'
import { _decodeJwt } from '../jwt.ts'
import { _parseExpiresOn } from '../_expires_on.ts'
import { _checkAllowedTenants, _checkPositive, _checkTenantId } from '../_validate.ts'
import {
  _switchTenant,
  _uniqueIdentity,
  AbstractAuthentication,
  type CredentialOptions,
  type TokenRequest,
} from './abstract.ts'

export type { CommandResult, CommandRunner } from '../env.ts'

/** Options of {@linkcode AzureCliAuthentication}. */
export interface AzureCliAuthenticationOptions extends CredentialOptions {
  /** Tenant to get tokens from (`--tenant`); default the CLI's current account's tenant. */
  tenantId?: string
  /** Tenants besides `tenantId` that `getToken(…, { tenantId })` may ask for (`*` for any). */
  additionallyAllowedTenants?: readonly string[]
  /** How long `az` may run, in ms (default 30 000). */
  processTimeoutMs?: number
  /**
   * Runs `az` (default: `Deno.Command` where it exists). Pass one built on `child_process`
   * `execFile` to use this credential on Node; never pass one that goes through a shell.
   */
  runCommand?: CommandRunner
}

let processNonce: string | undefined

/**
 * A random id of this process, made on first use: Workers refuse random values at global scope,
 * so a module-level `crypto.randomUUID()` would stop any Worker that imports this package.
 */
function _processNonce(): string {
  return processNonce ??= crypto.randomUUID()
}
const RESOURCE_RE = /^[0-9a-zA-Z-_.:/]+$/
const NOT_SIGNED_IN = /az login|az account set|AADSTS\d+/i

function firstLine(stderr: string): string {
  const line = stderr.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? ''
  return line.replace(/^ERROR:\s*/, '').slice(0, 300)
}

/**
 * Parses `expiresOn` as the Azure CLI prints it, `YYYY-MM-DD HH:MM:SS[.ffffff]`, in the local
 * time zone of this runtime (the zone the CLI wrote it in when both run on one machine).
 * Epoch seconds in `expires_on` (Azure CLI 2.54+) are preferred whenever present.
 */
export function _parseCliLocalDate(value: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/.exec(
    value.trim(),
  )
  if (!m) return undefined
  const [, y, mo, d, h, mi, s, frac] = m
  const ms = frac === undefined ? 0 : Math.floor(Number(frac.padEnd(6, '0')) / 1000)
  const t = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms)
  return Number.isNaN(t.getTime()) ? undefined : Math.floor(t.getTime() / 1000)
}

function invalidOutput(detail: string): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `az account get-access-token printed output without ${detail}; update the Azure CLI (2.30 or later)`,
  )
}

/** Reads the JSON `az account get-access-token` prints (never quoting it: it holds the token). */
export function _parseCliOutput(stdout: string): AccessToken {
  let body: Record<string, unknown>
  try {
    const v = JSON.parse(stdout)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error()
    body = v
  } catch {
    throw invalidOutput('a JSON object')
  }
  const token = body.accessToken
  if (typeof token !== 'string' || token === '') throw invalidOutput('accessToken')
  let exp = body.expires_on === undefined ? undefined : _parseExpiresOn(body.expires_on)
  if (exp === undefined && typeof body.expiresOn === 'string') {
    exp = _parseCliLocalDate(body.expiresOn) ?? _parseExpiresOn(body.expiresOn)
  }
  if (exp === undefined) {
    try {
      const claim = _decodeJwt(token).exp
      if (typeof claim === 'number' && Number.isFinite(claim)) exp = claim
    } catch {
      // not a JWT
    }
  }
  if (exp === undefined) throw invalidOutput('a readable expires_on or expiresOn')
  return new AccessToken(token, exp)
}

/**
 * A credential for the account the Azure CLI is signed in to (`az login`): each token comes from
 * `az account get-access-token --resource <resource> --output json` (plus `--tenant`), run
 * without a shell, with a timeout. One scope per request; the resource is the scope without
 * `/.default`. Tokens are cached like every other credential's, so `az` runs about once an hour
 * per resource. Note that `az` uses its own cloud (`az cloud set`), not this object's `cloud`.
 *
 * Where `Deno.Command` does not exist (Workers, browsers, Node), construction still succeeds (so
 * chains work) and `getToken` fails with `ERR_CREDENTIAL_UNAVAILABLE`, unless `runCommand` is
 * given. In Deno the program needs `--allow-run=az`.
 *
 * @example Use the developer's Azure CLI sign-in
 * ```ts
 * import { AzureCliAuthentication } from '@aml-edge/auth'
 *
 * const auth = new AzureCliAuthentication({ processTimeoutMs: 20_000 })
 * async function subscriptions() {
 *   return await auth.listSubscriptions() // runs `az account get-access-token` once
 * }
 * ```
 */
export class AzureCliAuthentication extends AbstractAuthentication {
  /** The tenant given to `az --tenant`, when one was set. */
  readonly tenantId: string | undefined
  readonly #timeoutMs: number
  readonly #runner: CommandRunner | undefined
  readonly #allowed: ReadonlySet<string>
  /** Who `az` answers as (undefined: a custom runner, never shared). */
  readonly #who: string | undefined
  #identity: string | undefined = undefined

  /**
   * Checks the options; runs nothing (a missing `az` shows at token time).
   *
   * @param options tenant, timeout, command runner and the common options
   * @throws {TypeError} for a malformed `tenantId` or `runCommand`; {RangeError} for a bad timeout
   */
  constructor(options: AzureCliAuthenticationOptions = {}) {
    super(options)
    if (options.tenantId !== undefined) _checkTenantId(options.tenantId, 'tenantId')
    this.tenantId = options.tenantId
    this.#timeoutMs = _checkPositive(options.processTimeoutMs, 'processTimeoutMs') ?? 30_000
    if (options.runCommand !== undefined && typeof options.runCommand !== 'function') {
      throw new TypeError('runCommand must be a function (program, args, options) => result')
    }
    this.#runner = options.runCommand
    this.#allowed = _checkAllowedTenants(
      options.additionallyAllowedTenants,
      'additionallyAllowedTenants',
    )
    const e = this._env
    // Who `az` answers as: its config folder (AZURE_CONFIG_DIR, else the home folder's .azure).
    this.#who = options.runCommand !== undefined
      ? undefined
      : [this.tenantId ?? '', e.AZURE_CONFIG_DIR ?? '', e.HOME ?? e.USERPROFILE ?? ''].join('\n')
  }

  /**
   * Who `az` answers as: tenant and config folder, so instances in this process share tokens; on
   * this machine only (the process nonce keeps a shared cache tier from mixing machines). Made on
   * first use, since Workers refuse random values at global scope.
   */
  protected _cacheIdentity(): string {
    return this.#identity ??= this.#who === undefined
      ? _uniqueIdentity('azure-cli')
      : 'azure-cli\n' + _processNonce() + '\n' + this.#who
  }

  /** Allows `tenantId`, `additionallyAllowedTenants`, or any tenant when no `tenantId` was set. */
  protected override _resolveTenant(tenantId: string): string | undefined {
    _checkTenantId(tenantId, 'tenantId')
    return _switchTenant(tenantId, this.tenantId, this.#allowed, 'additionallyAllowedTenants')
  }

  /** The tenant; never a token. */
  protected override _describe(): Record<string, unknown> {
    return { tenantId: this.tenantId }
  }

  /** Runs `az account get-access-token` for the one requested scope. */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1) {
      throw new AmlAuthError(
        'ERR_UNSUPPORTED_AUDIENCE',
        'AzureCliAuthentication gets a token for one scope at a time; request the scopes separately',
      )
    }
    const resource = _resourceOf(request.scopes[0]!)
    if (!RESOURCE_RE.test(resource) || resource.startsWith('-')) {
      throw new TypeError(
        'scopes must be a resource URI or <resource>/.default made of letters, digits and - _ . : / (not starting with -)',
      )
    }
    const tenant = request.tenantId ?? this.tenantId
    if (request.claims !== undefined) {
      throw new CredentialUnavailableError(
        'A claims challenge needs a new Azure CLI sign-in: run `az logout`, then `az login --claims-challenge <the base64 claims>`',
      )
    }
    const run = this.#runner ?? denoCommandRunner()
    if (run === undefined) {
      throw new CredentialUnavailableError(
        'AzureCliAuthentication runs the az program, which this runtime cannot do (no Deno.Command: Workers, browsers, Node); use ServicePrincipalAuthentication, MsiAuthentication or TokenAuthentication here, or pass runCommand',
      )
    }
    const args = ['account', 'get-access-token', '--resource', resource, '--output', 'json']
    if (tenant !== undefined) args.push('--tenant', tenant)
    const out = await this.#run(run, args)
    if (out.code !== 0) throw this.#failure(out, tenant)
    return _parseCliOutput(out.stdout)
  }

  async #run(run: CommandRunner, args: string[]): Promise<CommandResult> {
    const controller = new AbortController()
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(this._env)) if (v !== undefined) env[k] = v
    let timer: ReturnType<typeof setTimeout> | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort()
        reject(
          new AmlAuthError(
            'ERR_TIMEOUT',
            `az account get-access-token did not finish within ${this.#timeoutMs} ms; check that it works in a terminal, or raise processTimeoutMs`,
          ),
        )
      }, this.#timeoutMs)
    })
    timedOut.catch(() => {})
    try {
      let running: Promise<CommandResult>
      try {
        running = Promise.resolve(run('az', args, { signal: controller.signal, env }))
      } catch (e) {
        running = Promise.reject(e)
      }
      // The process is killed on timeout; the caller does not wait for its pipes to close.
      running.catch(() => {})
      return await Promise.race([
        running.catch((e) => {
          throw controller.signal.aborted ? e : spawnError(e)
        }),
        timedOut,
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  #failure(out: CommandResult, tenant: string | undefined): AmlAuthError {
    const line = firstLine(out.stderr)
    if (NOT_SIGNED_IN.test(out.stderr)) {
      return new CredentialUnavailableError(
        `The Azure CLI is not signed in or its sign-in expired${
          line ? ` (${line})` : ''
        }; run \`az login${tenant !== undefined ? ` --tenant ${tenant}` : ''}\``,
      )
    }
    return new AuthenticationError(
      `az account get-access-token failed with exit code ${out.code}${
        line ? `: ${line}` : ''
      }; run it in a terminal to see why`,
      { status: 0 },
    )
  }
}

function spawnError(e: unknown): AmlAuthError {
  const name = (e as { name?: unknown } | null)?.name
  if (name === 'NotFound') {
    return new CredentialUnavailableError(
      'The Azure CLI (az) was not found on PATH; install it (https://aka.ms/azure-cli) and run `az login`, or use another credential',
    )
  }
  if (name === 'NotCapable' || name === 'PermissionDenied') {
    return new CredentialUnavailableError(
      'Deno may not run the Azure CLI; grant --allow-run=az to this program',
    )
  }
  return new CredentialUnavailableError('Could not start the Azure CLI (az); the cause says why', {
    cause: e,
  })
}
