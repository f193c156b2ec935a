/**
 * The request checks the managed-identity routes share, each route stating its contract as a
 * {@linkcode MiRule}: the `Metadata` or secret header, the api-version, required parameters and
 * the user-assigned selectors. Failures are {@linkcode MiError}s, which each source renders in its
 * own error shape.
 *
 * @module
 */
import type { Incoming } from './http.ts'
import { constantTimeEqual, json } from './util.ts'

/** A source-specific error, rendered by the source's `fail`. */
export class MiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

/** One refusal. */
export type MiFailure = readonly [status: number, code: string, message: string]

/** What a managed-identity route requires before it looks at the identity. */
export interface MiRule {
  /** `Metadata: true` (any case). */
  readonly metadata?: true
  /** A header that must equal the configured secret: its name and the two refusals. */
  readonly secretHeader?: { name: string; missing: MiFailure; invalid: MiFailure }
  /** An api-version (`yyyy-mm-dd`) no older than this one. */
  readonly minApiVersion?: string
  /** Exactly this api-version, else `code`. */
  readonly exactApiVersion?: { version: string; code: string }
}

/** Query-parameter names of the user-assigned selectors of one source. */
export interface SelectorNames {
  readonly clientId?: string
  readonly objectId?: string
  readonly resourceId?: string
}

/** A user-assigned identity selector, or `null` for the default identity. */
export type Selector = { by: 'clientId' | 'objectId' | 'resourceId'; value: string } | null

const METADATA_MISSING: MiFailure = [
  400,
  'invalid_request',
  'Required metadata header not specified',
]

function raise([status, code, message]: MiFailure): never {
  throw new MiError(status, code, message)
}

function apiVersionAtLeast(v: string | null, min: string): boolean {
  return v !== null && /^\d{4}-\d{2}-\d{2}$/.test(v) && v >= min
}

/**
 * Checks the headers and api-version a source requires, in that order.
 *
 * @returns the query parameters
 * @throws {MiError} the first requirement the request does not meet
 */
export function requireMiQuery(r: Incoming, rule: MiRule, secret: string): URLSearchParams {
  const q = r.url.searchParams
  if (rule.metadata && r.request.headers.get('metadata')?.toLowerCase() !== 'true') {
    raise(METADATA_MISSING)
  }
  if (rule.secretHeader) {
    const presented = r.request.headers.get(rule.secretHeader.name)
    if (!presented) raise(rule.secretHeader.missing)
    if (!constantTimeEqual(presented, secret)) raise(rule.secretHeader.invalid)
  }
  const v = q.get('api-version')
  if (rule.minApiVersion !== undefined) {
    if (!v) {
      throw new MiError(400, 'invalid_request', "Required query variable 'api-version' is missing")
    }
    if (!apiVersionAtLeast(v, rule.minApiVersion)) {
      throw new MiError(400, 'invalid_request', `Invalid api-version '${v}'`)
    }
  }
  const exact = rule.exactApiVersion
  if (exact && v !== exact.version) {
    throw new MiError(
      400,
      exact.code,
      `The api-version '${v ?? ''}' is not supported. Use ${exact.version}.`,
    )
  }
  return q
}

/**
 * A parameter that must be present and non-empty.
 *
 * @throws {MiError} `missing` when it is absent or empty
 */
export function requireParam(params: URLSearchParams, name: string, missing: MiFailure): string {
  return params.get(name) || raise(missing)
}

/**
 * Refuses any user-assigned selector (`client_id`, `object_id`, `msi_res_id`, `mi_res_id`).
 *
 * @throws {MiError} 400 `invalid_request` with `message`
 */
export function rejectUserAssigned(params: URLSearchParams, message: string): void {
  for (const name of ['client_id', 'object_id', 'msi_res_id', 'mi_res_id']) {
    if (params.get(name)) throw new MiError(400, 'invalid_request', message)
  }
}

/**
 * The user-assigned selector of a request, by the source's parameter names.
 *
 * @throws {MiError} 400 `invalid_request` when more than one is given
 */
export function selector(q: URLSearchParams, names: SelectorNames): Selector {
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

/**
 * Runs `step`, turning its {@linkcode MiError} into a 400 with `code` and the same message.
 *
 * @returns what `step` returns
 */
export async function recoded<T>(code: string, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (e) {
    if (e instanceof MiError) throw new MiError(400, code, e.message)
    throw e
  }
}

/** Renders an {@linkcode MiError} as an OAuth error (`error`, `error_description`). */
export function oauthFail(e: MiError): Response {
  return json({ error: e.code, error_description: e.message }, e.status)
}

/** Wraps a route handler so that its {@linkcode MiError}s are rendered by `fail`. */
export function guarded(
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
