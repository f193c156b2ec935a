/**
 * Minting: access tokens (app-only, delegated, managed identity), ID tokens and Azure ML run
 * tokens, all RS256 JWTs signed by the emulator's key.
 *
 * @module
 */
import type { EmulatorCore, Identity, RunScope, User } from './state.ts'
import { base64url } from 'jose'
import { digest, randomToken, utf8 } from './util.ts'

/** Who a token is for. */
export type Principal =
  | { kind: 'app'; appId: string; objectId: string; roles: string[]; acr: '0' | '1' | '2' }
  | { kind: 'user'; appId: string; user: User; scp: string; acr: '0' | '1' | '2' }
  | { kind: 'mi'; identity: Identity }

/** What to mint. */
export interface AccessTokenRequest {
  /** Origin the issuer is built from. */
  origin: string
  tenantId: string
  /** The `aud` claim. */
  audience: string
  /** 1: `iss` `{origin}/{tid}/`, `appid`; 2: `iss` `{origin}/{tid}/v2.0`, `azp`. */
  version: 1 | 2
  /** Seconds; zero or negative mints an already expired token. */
  lifetimeSeconds: number
  principal: Principal
  /** Allow `tokenReuseSeconds` to hand out an identical earlier token (default true). */
  reuse?: boolean
}

/** A minted token and its times (epoch seconds). */
export interface MintedToken {
  token: string
  iat: number
  exp: number
}

/** Issuer of tokens of a version. */
export function issuerFor(origin: string, tenantId: string, version: 1 | 2): string {
  return version === 1 ? `${origin}/${tenantId}/` : `${origin}/${tenantId}/v2.0`
}

async function pairwiseSub(oid: string, appId: string): Promise<string> {
  return base64url.encode(await digest('SHA-256', utf8(`${oid}|${appId}`))).slice(0, 43)
}

/** Mints an access token (reusing an identical one when `tokenReuseSeconds` allows). */
export async function mintAccessToken(
  core: EmulatorCore,
  req: AccessTokenRequest,
): Promise<MintedToken> {
  const nowMs = core.now()
  const reuseFor = core.settings.tokenReuseSeconds
  let reuseKey: string | undefined
  if (reuseFor > 0 && req.reuse !== false) {
    const p = req.principal
    const who = p.kind === 'mi'
      ? `mi:${p.identity.clientId}`
      : p.kind === 'app'
      ? `app:${p.appId}:${p.roles.join(' ')}:${p.acr}`
      : `user:${p.appId}:${p.user.objectId}:${p.scp}:${p.acr}`
    reuseKey = [req.origin, req.tenantId, req.audience, req.version, req.lifetimeSeconds, who].join(
      '\u0000',
    )
    const hit = core.reuse.get(reuseKey)
    if (hit && nowMs < (hit.iat + reuseFor) * 1000 && nowMs < hit.exp * 1000) return hit
  }
  const exp = Math.floor(nowMs / 1000) + Math.round(req.lifetimeSeconds)
  const iat = Math.min(Math.floor(nowMs / 1000), exp - 1)
  const p = req.principal
  const iss = issuerFor(req.origin, req.tenantId, req.version)
  const claims: Record<string, unknown> = { aud: req.audience, iss, iat, nbf: iat, exp }
  const appId = p.kind === 'mi' ? p.identity.clientId : p.appId
  const acr = p.kind === 'mi' ? '2' : p.acr
  if (p.kind === 'user') {
    claims.amr = ['pwd']
    if (req.version === 1) {
      claims.appid = appId
      claims.appidacr = acr
      claims.name = p.user.name
      claims.upn = p.user.username
      claims.unique_name = p.user.username
    } else {
      claims.azp = appId
      claims.azpacr = acr
      claims.name = p.user.name
      claims.preferred_username = p.user.username
    }
    claims.oid = p.user.objectId
    claims.scp = p.scp
    claims.sub = await pairwiseSub(p.user.objectId, appId)
    claims.idtyp = 'user'
  } else {
    if (req.version === 1) {
      claims.appid = appId
      claims.appidacr = acr
      claims.idp = issuerFor(req.origin, req.tenantId, 1)
    } else {
      claims.azp = appId
      claims.azpacr = acr
    }
    const oid = p.kind === 'mi' ? p.identity.objectId : p.objectId
    claims.oid = oid
    if (p.kind === 'app' && p.roles.length) claims.roles = p.roles
    claims.sub = oid
    claims.idtyp = 'app'
    if (p.kind === 'mi') claims.xms_mirid = p.identity.resourceId
  }
  claims.rh = `0.${randomToken(12)}.`
  claims.tid = req.tenantId
  claims.uti = randomToken(16)
  claims.ver = req.version === 1 ? '1.0' : '2.0'
  const minted = { token: await core.keys.sign(claims), iat, exp }
  if (reuseKey) core.reuse.set(reuseKey, minted)
  return minted
}

/** Mints an OpenID Connect ID token (v2). */
export async function mintIdToken(
  core: EmulatorCore,
  opts: { origin: string; tenantId: string; clientId: string; user: User; nonce: string | null },
): Promise<string> {
  const iat = Math.floor(core.now() / 1000)
  const claims: Record<string, unknown> = {
    aud: opts.clientId,
    iss: issuerFor(opts.origin, opts.tenantId, 2),
    iat,
    nbf: iat,
    exp: iat + 3600,
    name: opts.user.name,
    oid: opts.user.objectId,
    preferred_username: opts.user.username,
    rh: `0.${randomToken(12)}.`,
    sub: await pairwiseSub(opts.user.objectId, opts.clientId),
    tid: opts.tenantId,
    uti: randomToken(16),
    ver: '2.0',
  }
  if (opts.nonce) claims.nonce = opts.nonce
  return await core.keys.sign(claims)
}

/** `iss` of Azure ML run tokens. */
export const RUN_TOKEN_ISSUER = 'azureml-emulator'
/** `aud` of Azure ML run tokens. */
export const RUN_TOKEN_AUDIENCE = 'AzureML'

/** A minted run token. */
export interface RunToken {
  /** The JWT. */
  token: string
  /** Expiry as ISO 8601 UTC, as the run-history service returns it. */
  expiryTimeUtc: string
  /** Expiry, epoch seconds. */
  expiresOn: number
}

/** Validates a run scope, throwing `TypeError` naming the field. */
export function validateRunScope(scope: unknown): RunScope {
  if (typeof scope !== 'object' || scope === null) throw new TypeError('scope must be an object')
  const s = scope as Record<string, unknown>
  for (const k of ['subscriptionId', 'resourceGroupName', 'workspaceName', 'runId']) {
    if (typeof s[k] !== 'string' || !s[k]) {
      throw new TypeError(`scope.${k} must be a non-empty string`)
    }
  }
  if (typeof s.experimentName !== 'string' && typeof s.experimentId !== 'string') {
    throw new TypeError('scope.experimentName or scope.experimentId is required')
  }
  const out: RunScope = {
    subscriptionId: s.subscriptionId as string,
    resourceGroupName: s.resourceGroupName as string,
    workspaceName: s.workspaceName as string,
    runId: s.runId as string,
  }
  if (typeof s.experimentName === 'string') out.experimentName = s.experimentName
  if (typeof s.experimentId === 'string') out.experimentId = s.experimentId
  return out
}

/** Mints a run token for one run scope. */
export async function mintRunToken(
  core: EmulatorCore,
  scope: RunScope,
  lifetimeSeconds?: number,
): Promise<RunToken> {
  const life = lifetimeSeconds ?? core.settings.runTokenLifetimeSeconds
  if (!(life > 0)) throw new RangeError('lifetimeSeconds must be a positive number')
  const iat = Math.floor(core.now() / 1000)
  const exp = iat + Math.round(life)
  const token = await core.keys.sign({
    iss: RUN_TOKEN_ISSUER,
    aud: RUN_TOKEN_AUDIENCE,
    sub: scope.runId,
    iat,
    nbf: iat,
    exp,
    jti: crypto.randomUUID(),
    run: { ...scope },
  })
  return { token, expiresOn: exp, expiryTimeUtc: new Date(exp * 1000).toISOString() }
}
