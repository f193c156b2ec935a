// Bundle-size entry (a): a Worker-style handler that uses only a secret-based service principal,
// imported from the package root as users do.
import { ServicePrincipalAuthentication } from '../../../mod.ts'

/** Returns an ARM bearer header for the service principal named by the bindings. */
export function armHeader(
  env: { TENANT_ID: string; CLIENT_ID: string; CLIENT_SECRET: string },
): Promise<{ Authorization: string }> {
  return new ServicePrincipalAuthentication({
    tenantId: env.TENANT_ID,
    servicePrincipalId: env.CLIENT_ID,
    servicePrincipalPassword: env.CLIENT_SECRET,
    env: {},
  }).getAuthenticationHeader()
}
