// Bundle-size entry (c): a serverless handler on an Azure host that uses only managed identity,
// imported from the package root.
import { MsiAuthentication } from '../../../mod.ts'

/** Returns an ARM bearer header from the host's managed identity. */
export function armHeader(
  env: Record<string, string | undefined>,
): Promise<{ Authorization: string }> {
  return new MsiAuthentication({ env }).getAuthenticationHeader()
}
