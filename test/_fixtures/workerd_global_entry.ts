// A Worker that imports the whole package and builds every credential at global scope, where
// workerd refuses random values (and timers, and I/O): importing the package and constructing a
// credential must do none of them. Tokens are then asked for inside the handler. Bundled with
// `deno bundle --platform browser` and run inside Miniflare by test/mod_workerd_test.ts.
import * as lib from '../../mod.ts'

const SECRET = 'emulator-client-secret~not-a-real-secret'
const built: Record<string, lib.AbstractAuthentication> = {}
let failure: string | undefined
try {
  const common = { env: {}, cache: lib.createTokenCache() }
  built.token = new lib.TokenAuthentication(
    () => ({ token: 'callback-token', expiresOn: 4102444800 }),
    common,
  )
  built.arm = new lib.ArmTokenAuthentication('arm-token', { ...common, expiresOn: 4102444800 })
  built.run = lib.AzureMLTokenAuthentication.create({
    ...common,
    azuremlAccessToken: 'run-token',
    expiryTime: 4102444800,
    host: 'https://westus2.api.azureml.ms',
    subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
    resourceGroupName: 'rg',
    workspaceName: 'ws',
    experimentName: 'exp',
    runId: 'workerd-global-run',
  })
  built.interactive = new lib.InteractiveLoginAuthentication({
    ...common,
    force: true,
    disableAutomaticAuthentication: true,
  })
  built.cli = new lib.AzureCliAuthentication(common)
  built.msi = new lib.MsiAuthentication(common)
  // The default authority: the test's outbound service sends login.microsoftonline.com to the
  // emulator.
  built.sp = new lib.ServicePrincipalAuthentication({
    ...common,
    tenantId: '8d3e0f4a-7c1b-4e2d-9a6f-0e5b1c2d3a4f',
    servicePrincipalId: '0d5e6f7a-8b9c-4d0e-a1f2-b3c4d5e6f7a8',
    servicePrincipalPassword: SECRET,
  })
} catch (e) {
  failure = String(e)
}

export default {
  async fetch(): Promise<Response> {
    if (failure !== undefined) return Response.json({ failure }, { status: 500 })
    const results: Record<string, { token?: string; code?: string }> = {}
    for (const [name, auth] of Object.entries(built)) {
      try {
        results[name] = { token: (await auth.getAuthenticationHeader()).Authorization }
      } catch (e) {
        results[name] = { code: (e as { code?: string }).code ?? String(e) }
      }
    }
    return Response.json(results)
  },
}
