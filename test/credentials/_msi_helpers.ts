// Shared fixtures of the MsiAuthentication tests.
import { assert, assertEquals } from '@std/assert'
import { createTokenCache } from '@aml-edge/auth'
import { MsiAuthentication, type MsiAuthenticationOptions } from '../../src/credentials/msi.ts'
import type { SeenRequest } from '../_fixtures/loopback.ts'

/** Secrets each source sends; none may ever appear in an error. */
export const SECRETS = Object.freeze({
  header: 'identity-header-secret-7f3a9c',
  msi: 'msi-secret-value-2b8d41',
  arc: 'arcKeySecret0123456789abcdef',
})

/** The ARM resource the default scope maps to. */
export const ARM = 'https://management.core.windows.net/'
/** The ARM scope. */
export const ARM_SCOPE = 'https://management.core.windows.net//.default'
/** A future expiry (2030-03-17T08:15:30Z) in epoch seconds. */
export const EXP = Date.UTC(2030, 2, 17, 8, 15, 30) / 1000

/** A GUID for user-assigned tests. */
export const CLIENT_ID = '4d5c6b7a-8f9e-4d0c-9b1a-2f3e4d5c6b7a'
/** Another GUID. */
export const OBJECT_ID = '7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d'
/** An ARM resource id of a user-assigned identity. */
export const RESOURCE_ID =
  '/subscriptions/2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1'

/** A credential with its own cache (tests never share tokens). */
export function msi(options: MsiAuthenticationOptions = {}): MsiAuthentication {
  return new MsiAuthentication({ cache: createTokenCache(), env: {}, ...options })
}

/** A token response. */
export function tokenResponse(
  fields: Record<string, unknown> = {},
  init: ResponseInit = {},
): Response {
  return Response.json({ access_token: 'mi-token', token_type: 'Bearer', ...fields }, init)
}

/** Env for each source against a loopback origin, with the test secrets. */
export function sourceEnv(origin: string): Record<string, Record<string, string>> {
  return {
    'service-fabric': {
      IDENTITY_ENDPOINT: `${origin}/sf/token`,
      IDENTITY_HEADER: SECRETS.header,
      IDENTITY_SERVER_THUMBPRINT: '0123456789ABCDEF0123456789ABCDEF01234567',
    },
    'app-service': { IDENTITY_ENDPOINT: `${origin}/msi/token`, IDENTITY_HEADER: SECRETS.header },
    'azure-arc': {
      IDENTITY_ENDPOINT: `${origin}/metadata/identity/oauth2/token`,
      IMDS_ENDPOINT: origin,
    },
    'azure-ml': { MSI_ENDPOINT: `${origin}/MSI/auth`, MSI_SECRET: SECRETS.msi },
    'cloud-shell': { MSI_ENDPOINT: `${origin}/oauth2/token` },
    imds: { AZURE_POD_IDENTITY_AUTHORITY_HOST: origin },
  }
}

/** The query of a seen request as a plain object. */
export function query(r: SeenRequest): Record<string, string> {
  return Object.fromEntries(r.url.searchParams)
}

/** Asserts that no secret shows in an error's message, string, JSON, inspection or cause. */
export function assertNoSecret(e: unknown, extra: readonly string[] = []): void {
  assert(e instanceof Error, 'expected an Error')
  const texts = [
    e.message,
    String(e),
    JSON.stringify(e),
    Deno.inspect(e, { depth: 10 }),
    e.cause === undefined ? '' : Deno.inspect(e.cause, { depth: 10 }),
    e.stack ?? '',
  ]
  for (const secret of [...Object.values(SECRETS), ...extra]) {
    for (const t of texts) assert(!t.includes(secret), `secret leaked in: ${t}`)
  }
}

/** Asserts the code of an error and that it holds no secret. */
export function assertCode(e: unknown, code: string, extra: readonly string[] = []): void {
  assertEquals((e as { code?: string }).code, code, String(e))
  assertNoSecret(e, extra)
}
