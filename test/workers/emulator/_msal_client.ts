/**
 * Runs @azure/msal-node (an independent client) against the emulator, in its own process so that
 * it can trust the fixture CA (`deno run --cert`). Input: JSON in argv[0]; output: JSON results.
 *
 * @module
 */
import {
  ConfidentialClientApplication,
  ManagedIdentityApplication,
  PublicClientApplication,
} from '@azure/msal-node'

const input = JSON.parse(Deno.args[0]!) as {
  authority: string
  host: string
  clientId: string
  clientSecret: string
  certClientId: string
  certThumbprintSha256: string
  certKeyPem: string
  publicClientId: string
  scope: string
  miResource: string
}
const results: Record<string, unknown> = {}
const common = { authority: input.authority, knownAuthorities: [input.host] }
const noLog = { loggerOptions: { loggerCallback() {}, piiLoggingEnabled: false } }

try {
  const cca = new ConfidentialClientApplication({
    auth: { ...common, clientId: input.clientId, clientSecret: input.clientSecret },
    system: noLog,
  })
  const r = await cca.acquireTokenByClientCredential({ scopes: [input.scope] })
  results.secret = { accessToken: r?.accessToken, expiresOn: r?.expiresOn?.toISOString() }
  const again = await cca.acquireTokenByClientCredential({ scopes: [input.scope] })
  results.secretCached = again?.fromCache === true
} catch (e) {
  results.secretError = String(e)
}

try {
  const cert = new ConfidentialClientApplication({
    auth: {
      ...common,
      clientId: input.certClientId,
      clientCertificate: {
        thumbprintSha256: input.certThumbprintSha256,
        privateKey: input.certKeyPem,
      },
    },
    system: noLog,
  })
  const r = await cert.acquireTokenByClientCredential({ scopes: [input.scope] })
  results.certificate = { accessToken: r?.accessToken }
} catch (e) {
  results.certificateError = String(e)
}

try {
  const pca = new PublicClientApplication({
    auth: { ...common, clientId: input.publicClientId },
    system: noLog,
  })
  const r = await pca.acquireTokenByDeviceCode({
    scopes: [input.scope],
    deviceCodeCallback: (info) => {
      results.deviceCodeMessage = info.message
    },
  })
  results.deviceCode = { accessToken: r?.accessToken, username: r?.account?.username }
  const silent = await pca.acquireTokenSilent({
    account: r!.account!,
    scopes: ['https://ml.azure.com/.default'],
    forceRefresh: true,
  })
  results.silent = { accessToken: silent.accessToken }
} catch (e) {
  results.deviceCodeError = String(e)
}

try {
  const mi = new ManagedIdentityApplication({ system: noLog })
  results.miSource = await mi.getManagedIdentitySource()
  const r = await mi.acquireToken({ resource: input.miResource })
  results.managedIdentity = { accessToken: r.accessToken, expiresOn: r.expiresOn?.toISOString() }
} catch (e) {
  results.managedIdentityError = String(e)
}

// deno-lint-ignore no-console
console.log(JSON.stringify(results))
