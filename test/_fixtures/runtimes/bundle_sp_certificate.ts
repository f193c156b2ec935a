// Bundle-size entry (b): a Worker-style handler that uses only a certificate-based service
// principal (PS256 client assertion with Web Crypto), imported from the package root.
import { clientCertificate, ServicePrincipalAuthentication } from '../../../mod.ts'

/** Returns an ARM bearer header for the certificate credential named by the bindings. */
export function armHeader(
  env: { TENANT_ID: string; CLIENT_ID: string; PRIVATE_KEY: string; CERTIFICATE: string },
): Promise<{ Authorization: string }> {
  return new ServicePrincipalAuthentication({
    tenantId: env.TENANT_ID,
    servicePrincipalId: env.CLIENT_ID,
    certificate: clientCertificate({ privateKey: env.PRIVATE_KEY, certificate: env.CERTIFICATE }),
    env: {},
  }).getAuthenticationHeader()
}
