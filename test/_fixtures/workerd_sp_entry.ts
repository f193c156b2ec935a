// A tiny Worker for the workerd test of ServicePrincipalAuthentication: it holds a certificate
// credential built from its bindings and answers GET /token?scope=... with a token. Bundled with
// `deno bundle --platform browser` and run inside Miniflare (workerd), where Node's
// `createPrivateKey` does not exist: only Web Crypto signs the client assertion.
import {
  clientCertificate,
  ServicePrincipalAuthentication,
} from '../../src/credentials/service_principal.ts'

interface Bindings {
  TENANT_ID: string
  CLIENT_ID: string
  PRIVATE_KEY: string
  CERTIFICATE: string
  AUTHORITY_HOST: string
  SEND_CHAIN?: string
}

let auth: ServicePrincipalAuthentication | undefined

export default {
  async fetch(request: Request, env: Bindings): Promise<Response> {
    try {
      auth ??= new ServicePrincipalAuthentication({
        tenantId: env.TENANT_ID,
        servicePrincipalId: env.CLIENT_ID,
        certificate: clientCertificate({
          privateKey: env.PRIVATE_KEY,
          certificate: env.CERTIFICATE,
          sendCertificateChain: env.SEND_CHAIN === 'true',
        }),
        authorityHost: env.AUTHORITY_HOST,
        env: {},
      })
      const scope = new URL(request.url).searchParams.get('scope') ?? undefined
      const token = await auth.getToken(scope)
      return Response.json({
        token: token.token,
        expiresOn: token.expiresOn,
        userAgent: navigator.userAgent,
        hasDeno: 'Deno' in globalThis,
      })
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string }
      return Response.json({ name: err.name, code: err.code, message: err.message }, {
        status: 500,
      })
    }
  },
}
