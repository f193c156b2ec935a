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

/** The command, for messages. */
const AZ = 'az account get-access-token'

/**
 * Parses `expiresOn` as the Azure CLI prints it, `YYYY-MM-DD HH:MM:SS[.ffffff]`, in the local
 * time zone of this runtime (the zone the CLI wrote it in when both run on one machine).
 * Epoch seconds in `expires_on` (Azure CLI 2.54+) are preferred whenever present.
 */
export function _parseCliLocalDate(value: string): number | undefined {
  const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(value.trim())
  if (!m) return undefined
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, ...number[]]
  // Microseconds to ms: Date truncates the fraction.
  const t = new Date(y, mo! - 1, d, h, mi, s, Number((m[7] ?? '').padEnd(6, '0')) / 1000)
  return Number.isNaN(t.getTime()) ? undefined : Math.floor(t.getTime() / 1000)
}

/**
 * Reads the JSON `az account get-access-token` prints (never quoting it: it holds the token):
 * `accessToken`, and the expiry from `expires_on` (epoch seconds), else `expiresOn` (local
 * time), else the token's own `exp` claim.
 */
export function _parseCliOutput(stdout: string): AccessToken {
  let body: Record<string, unknown> | undefined
  try {
    body = JSON.parse(stdout)
  } catch {
    // reported as "no readable accessToken" below
  }
  const token = body?.accessToken
  if (typeof token !== 'string' || !token) throw invalidOutput('accessToken')
  const on = body!.expiresOn
  let exp = _parseExpiresOn(body!.expires_on) ??
    (typeof on === 'string' ? _parseCliLocalDate(on) ?? _parseExpiresOn(on) : undefined)
  if (exp === undefined) {
    try {
      const claim = _decodeJwt(token).exp
      if (Number.isFinite(claim)) exp = claim as number
    } catch {
      // not a JWT
    }
  }
  if (exp === undefined) throw invalidOutput('expires_on or expiresOn')
  return new AccessToken(token, exp)
}

function invalidOutput(field: string): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `${AZ} printed no readable ${field}; update the Azure CLI (2.30 or later)`,
  )
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
    const { tenantId, runCommand } = options
    if (tenantId !== undefined) _checkTenantId(tenantId)
    if (runCommand !== undefined && typeof runCommand !== 'function') {
      throw new TypeError('runCommand must be a function (program, args, options)')
    }
    this.tenantId = tenantId
    this.#timeoutMs = _checkPositive(options.processTimeoutMs, 'processTimeoutMs') ?? 30_000
    this.#runner = runCommand
    this.#allowed = _checkAllowedTenants(
      options.additionallyAllowedTenants,
      'additionallyAllowedTenants',
    )
    const e = this._env
    // Who `az` answers as: its config folder (AZURE_CONFIG_DIR, else the home folder's .azure).
    this.#who = runCommand
      ? undefined
      : [tenantId, e.AZURE_CONFIG_DIR, e.HOME ?? e.USERPROFILE].join('\n')
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

  /**
   * Runs `az account get-access-token` for the one requested scope, through the command runner,
   * and stops it after `processTimeoutMs` (without waiting for its pipes to close).
   */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1) {
      throw new AmlAuthError(
        'ERR_UNSUPPORTED_AUDIENCE',
        'AzureCliAuthentication takes one scope per request; call getToken once per scope',
      )
    }
    const resource = _resourceOf(request.scopes[0]!)
    if (!/^[\w.:/-]+$/.test(resource) || resource.startsWith('-')) {
      throw new TypeError(
        'scopes must be made of letters, digits and - _ . : / (not starting with -) for az',
      )
    }
    if (request.claims !== undefined) {
      throw new CredentialUnavailableError(
        'A claims challenge needs a new Azure CLI sign-in: run `az login --claims-challenge <base64 claims>`',
      )
    }
    const run = this.#runner ?? denoCommandRunner()
    if (!run) {
      throw new CredentialUnavailableError(
        'This runtime cannot run az (no Deno.Command); pass runCommand, or use ServicePrincipalAuthentication or MsiAuthentication',
      )
    }
    const tenant = request.tenantId ?? this.tenantId
    const args = ['account', 'get-access-token', '--resource', resource, '--output', 'json']
    if (tenant !== undefined) args.push('--tenant', tenant)
    // Deno.Command takes only set variables: a JSON round trip drops the undefined ones.
    const env = JSON.parse(JSON.stringify(this._env))
    const controller = new AbortController()
    let timer: ReturnType<typeof setTimeout> | undefined
    const out = await new Promise<CommandResult>((resolve, reject) => {
      timer = setTimeout(() => {
        controller.abort()
        reject(
          new AmlAuthError(
            'ERR_TIMEOUT',
            `${AZ} did not finish within ${this.#timeoutMs} ms; try it in a terminal, or raise processTimeoutMs`,
          ),
        )
      }, this.#timeoutMs)
      // A runner that throws at once is handled like one that rejects.
      Promise.resolve().then(() => run('az', args, { signal: controller.signal, env }))
        .then(resolve, (e) => reject(spawnError(e)))
    }).finally(() => clearTimeout(timer))
    if (out.code === 0) return _parseCliOutput(out.stdout)
    const line = out.stderr.split('\n').map((l) => l.trim()).find(Boolean)
      ?.replace(/^ERROR:\s*/, '').slice(0, 300)
    throw /az login|az account set|AADSTS\d+/i.test(out.stderr)
      ? new CredentialUnavailableError(
        `The Azure CLI is not signed in or its sign-in expired${
          line ? ` (${line})` : ''
        }; run \`az login${tenant !== undefined ? ` --tenant ${tenant}` : ''}\``,
      )
      : new AuthenticationError(
        `${AZ} failed with exit code ${out.code}${
          line ? `: ${line}` : ''
        }; run it in a terminal to see why`,
        { status: 0 },
      )
  }
}

function spawnError(e: unknown): AmlAuthError {
  const name = (e as { name?: unknown } | null)?.name
  return new CredentialUnavailableError(
    name === 'NotFound'
      ? 'The Azure CLI (az) was not found on PATH; install it (https://aka.ms/azure-cli) and run `az login`'
      : name === 'NotCapable' || name === 'PermissionDenied'
      ? 'Deno may not run the Azure CLI; grant --allow-run=az'
      : 'Could not start the Azure CLI (az); the cause says why',
    { cause: e },
  )
}
