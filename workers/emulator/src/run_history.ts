/**
 * Azure ML run history's run-token refresh: a valid run token for exactly this run scope buys a
 * new one.
 *
 * @module
 */
import type { Hono } from 'hono'
import { type Incoming, route } from './http.ts'
import type { EmulatorCore, RunScope } from './state.ts'
import { mintRunToken, RUN_TOKEN_AUDIENCE, RUN_TOKEN_ISSUER } from './tokens.ts'
import { json } from './util.ts'

const PREFIX =
  '/history/v1.0/subscriptions/:sub/resourceGroups/:rg/providers/Microsoft.MachineLearningServices/workspaces/:ws'

function amlError(status: number, code: string, message: string): Response {
  return json(
    { error: { code: 'UserError', message, innerError: { code } } },
    status,
    status === 401 ? { 'www-authenticate': 'Bearer' } : undefined,
  )
}

/** The parameters of a refresh route. */
type RunPath =
  & { sub: string; rg: string; ws: string; runId: string }
  & ({ experimentName: string } | { experimentId: string })

const same = (a: unknown, b: string) => typeof a === 'string' && a.toLowerCase() === b.toLowerCase()

async function refresh(
  core: EmulatorCore,
  r: Incoming,
  path: RunPath,
): Promise<Response> {
  const header = r.request.headers.get('authorization')
  const m = header ? /^bearer\s+(\S+)$/i.exec(header.trim()) : null
  if (!m) return amlError(401, 'AuthenticationFailed', 'A bearer run token is required.')
  let claims: Record<string, unknown>
  try {
    claims = await core.keys.verify(m[1]!, core.now())
  } catch (e) {
    const expired = (e as { code?: string }).code === 'ERR_JWT_EXPIRED'
    return amlError(
      401,
      expired ? 'TokenExpired' : 'InvalidToken',
      expired ? 'The run token has expired.' : 'The run token is not valid.',
    )
  }
  const run = claims.run as Partial<RunScope> | undefined
  if (claims.iss !== RUN_TOKEN_ISSUER || claims.aud !== RUN_TOKEN_AUDIENCE || !run) {
    return amlError(401, 'InvalidToken', 'The bearer token is not a run token.')
  }
  const scopeOk = same(run.subscriptionId, path.sub) && same(run.resourceGroupName, path.rg) &&
    same(run.workspaceName, path.ws) && run.runId === path.runId &&
    ('experimentName' in path
      ? run.experimentName === path.experimentName
      : same(run.experimentId, path.experimentId))
  if (!scopeOk) {
    return amlError(401, 'InvalidTokenScope', 'The run token was not issued for this run.')
  }
  const lifetime = typeof claims.exp === 'number' && typeof claims.iat === 'number'
    ? claims.exp - claims.iat
    : undefined
  const minted = await mintRunToken(core, run as RunScope, lifetime)
  return json({ token: minted.token, expiryTimeUtc: minted.expiryTimeUtc })
}

/** Registers the run-history routes (by experiment name and by experiment id). */
export function registerRunHistoryRoutes(app: Hono, core: EmulatorCore): void {
  for (const experiment of ['experiments/:experimentName', 'experimentids/:experimentId']) {
    app.get(
      `${PREFIX}/${experiment}/runs/:runId/token`,
      // The route's parameters: sub, rg, ws, runId and one of experimentName and experimentId.
      route(core, 'run-history.token', (c, r) => refresh(core, r, c.req.param() as RunPath)),
    )
  }
}
