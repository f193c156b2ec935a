import { assert, assertEquals, assertExists } from '@std/assert'
import { DEMO, startEmulator } from '../../../workers/emulator/serve.ts'
import {
  caCertPath,
  caCertPem,
  localhostCertPem,
  localhostKeyPem,
  rsa2048CertPem,
  rsa2048KeyPem,
} from '../../_fixtures/certs.ts'
import { ARM_SCOPE, thumbprints, verifyToken } from './_helpers.ts'

const CERT_CLIENT = 'f1f1f1f1-0000-4000-8000-0000000000c1'

Deno.test({
  name:
    '@azure/msal-node gets tokens from the emulator over https (secret, certificate, device code, managed identity)',
  async fn() {
    await using emu = await startEmulator({
      tls: { cert: localhostCertPem, key: localhostKeyPem },
      config: {
        clients: [{ clientId: CERT_CLIENT, certificates: [rsa2048CertPem] }],
        deviceCode: { intervalSeconds: 1, autoApproveAfterPolls: 1 },
      },
    })
    assert(emu.origin.startsWith('https://127.0.0.1:'))
    const host = new URL(emu.origin).host
    const input = {
      authority: `${emu.origin}/${DEMO.tenantId}`,
      host,
      clientId: DEMO.clientId,
      clientSecret: DEMO.clientSecret,
      certClientId: CERT_CLIENT,
      certThumbprintSha256: Array.from(
        atob(
          (await thumbprints(rsa2048CertPem)).x5tS256.replace(/-/g, '+').replace(/_/g, '/') + '=',
        ),
        (c) => c.charCodeAt(0).toString(16).padStart(2, '0'),
      ).join(''),
      certKeyPem: rsa2048KeyPem,
      publicClientId: DEMO.publicClientId,
      scope: ARM_SCOPE,
      miResource: 'https://management.azure.com/',
    }
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        'run',
        '--allow-env',
        '--allow-net=127.0.0.1',
        '--allow-read',
        '--allow-sys',
        '--cert',
        caCertPath,
        new URL('./_msal_client.ts', import.meta.url).pathname,
        JSON.stringify(input),
      ],
      env: { ...emu.env('app-service'), NO_COLOR: '1' },
      clearEnv: false,
      stdout: 'piped',
      stderr: 'piped',
    }).output()
    const out = new TextDecoder().decode(stdout)
    const err = new TextDecoder().decode(stderr)
    assertEquals(code, 0, err)
    using client = Deno.createHttpClient({ caCerts: [caCertPem] })
    const r = JSON.parse(out.trim().split('\n').at(-1)!)
    for (
      const k of ['secretError', 'certificateError', 'deviceCodeError', 'managedIdentityError']
    ) {
      assertEquals(r[k], undefined, `${k}: ${r[k]}`)
    }

    const secret = await verifyToken(emu, r.secret.accessToken, DEMO.tenantId, {
      audience: 'https://management.core.windows.net/',
      client,
    })
    assertEquals(secret.appid, DEMO.clientId)
    assertEquals(r.secretCached, true)

    const cert = await verifyToken(emu, r.certificate.accessToken, DEMO.tenantId, { client })
    assertEquals(cert.appid, CERT_CLIENT)
    assertEquals(cert.appidacr, '2')
    const assertionEntry = emu.requests({ route: 'entra.token' }).find((e) => e.assertion)
    assertExists(assertionEntry)
    assertEquals(assertionEntry.assertion!.header.alg, 'PS256')
    assertExists(assertionEntry.assertion!.header['x5t#S256'])

    assertEquals(r.deviceCode.username, DEMO.user.username)
    assert(String(r.deviceCodeMessage).includes('/devicelogin'))
    const user = await verifyToken(emu, r.deviceCode.accessToken, DEMO.tenantId, { client })
    assertEquals(user.oid, DEMO.user.objectId)
    const silent = await verifyToken(emu, r.silent.accessToken, DEMO.tenantId, { client })
    assertEquals(silent.aud, 'https://ml.azure.com')

    assertEquals(r.miSource, 'AppService')
    const mi = await verifyToken(emu, r.managedIdentity.accessToken, DEMO.tenantId, { client })
    assertEquals(mi.oid, DEMO.systemIdentity.objectId)

    const discovery = emu.requests({ route: 'entra.openid-configuration' })
    assert(discovery.length > 0, 'msal-node fetched the OpenID configuration from the emulator')
    assertEquals(
      emu.requests({ route: 'mi.app-service' }).at(-1)?.headers['x-identity-header'],
      '[redacted]',
    )
  },
})
