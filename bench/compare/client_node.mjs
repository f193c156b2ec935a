// One phase of the head-to-head comparison on Node, for one library, in a fresh process:
//   node bench/compare/client_node.mjs <ours|azure> <phase> '<json input>' <aml-edge-auth.mjs> <phases.mjs>
// prints one JSON line. Ours is the ESM build of mod.ts (`deno bundle --platform browser`);
// @azure/identity is the package from node_modules. phases.mjs is bench/compare/phases.ts bundled,
// so Deno and Node run the same phase code. TLS trust: NODE_EXTRA_CA_CERTS. See main.ts.
import process from 'node:process'
import { pathToFileURL } from 'node:url'

const [lib, phase, json, oursPath, phasesPath] = process.argv.slice(2)
const { runPhase } = await import(pathToFileURL(phasesPath).href)

async function credentials() {
  if (lib === 'ours') {
    const { clientCertificate, createTokenCache, ServicePrincipalAuthentication } = await import(
      pathToFileURL(oursPath).href
    )
    const make = (input, extra) => {
      const c = new ServicePrincipalAuthentication({
        tenantId: input.tenantId,
        authorityHost: input.origin,
        env: {},
        cache: createTokenCache(),
        ...extra,
      })
      return () => c.getToken(input.scope)
    }
    return {
      secret: (input, now) =>
        make(input, {
          servicePrincipalId: input.clientId,
          servicePrincipalPassword: input.clientSecret,
          ...(now ? { now } : {}),
        }),
      certificate: (input) =>
        make(input, {
          servicePrincipalId: input.certClientId,
          certificate: clientCertificate({
            privateKey: input.certKeyPem,
            certificate: input.certPem,
          }),
        }),
    }
  }
  const { ClientCertificateCredential, ClientSecretCredential } = await import('@azure/identity')
  const options = (input) => ({ authorityHost: input.origin, disableInstanceDiscovery: true })
  return {
    secret(input, now) {
      if (now) throw new Error('@azure/identity has no clock option')
      const c = new ClientSecretCredential(
        input.tenantId,
        input.clientId,
        input.clientSecret,
        options(input),
      )
      return () => c.getToken(input.scope)
    },
    certificate(input) {
      const c = new ClientCertificateCredential(input.tenantId, input.certClientId, {
        certificate: `${input.certKeyPem}\n${input.certPem}`,
      }, options(input))
      return () => c.getToken(input.scope)
    },
  }
}

try {
  const result = await runPhase(await credentials(), phase, JSON.parse(json))
  process.stdout.write(JSON.stringify({ ok: true, ...result }) + '\n')
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: `${e?.name}: ${e?.message}` }) + '\n')
}
// @azure/identity's keep-alive sockets would hold the process open.
process.exit(0)
