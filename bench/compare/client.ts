// One phase of the head-to-head comparison on Deno, for one library, in a fresh process:
//   deno run -A --cert <ca> bench/compare/client.ts <ours|azure> <phase> '<json input>'
// prints one JSON line. Ours is `mod.ts` from source (what a Deno/JSR user loads);
// @azure/identity is its Node build through Deno's npm support. See main.ts.
// deno-lint-ignore-file no-console
import { ClientCertificateCredential, ClientSecretCredential } from '@azure/identity'
import { clientCertificate, createTokenCache, ServicePrincipalAuthentication } from '../../mod.ts'
import { type Credentials, type Phase, type PhaseInput, runPhase } from './phases.ts'

/** The two libraries. */
export type Lib = 'ours' | 'azure'

const ours: Credentials = {
  secret(input, now) {
    const c = new ServicePrincipalAuthentication({
      tenantId: input.tenantId,
      servicePrincipalId: input.clientId,
      servicePrincipalPassword: input.clientSecret,
      authorityHost: input.origin,
      env: {},
      cache: createTokenCache(),
      ...(now ? { now } : {}),
    })
    return () => c.getToken(input.scope)
  },
  certificate(input) {
    const c = new ServicePrincipalAuthentication({
      tenantId: input.tenantId,
      servicePrincipalId: input.certClientId,
      certificate: clientCertificate({ privateKey: input.certKeyPem, certificate: input.certPem }),
      authorityHost: input.origin,
      env: {},
      cache: createTokenCache(),
    })
    return () => c.getToken(input.scope)
  },
}

const azure: Credentials = {
  secret(input, now) {
    if (now) throw new Error('@azure/identity has no clock option')
    const c = new ClientSecretCredential(input.tenantId, input.clientId, input.clientSecret, {
      authorityHost: input.origin,
      disableInstanceDiscovery: true,
    })
    return () => c.getToken(input.scope)
  },
  certificate(input) {
    const c = new ClientCertificateCredential(input.tenantId, input.certClientId, {
      certificate: `${input.certKeyPem}\n${input.certPem}`,
    }, { authorityHost: input.origin, disableInstanceDiscovery: true })
    return () => c.getToken(input.scope)
  },
}

if (import.meta.main) {
  const [lib, phase, json] = Deno.args as [Lib, Phase, string]
  try {
    const result = await runPhase(
      lib === 'ours' ? ours : azure,
      phase,
      JSON.parse(json) as PhaseInput,
    )
    console.log(JSON.stringify({ ok: true, ...result }))
  } catch (e) {
    const err = e as { name?: string; message?: string }
    console.log(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}` }))
  }
  // @azure/identity's keep-alive sockets would hold the process open.
  Deno.exit(0)
}
