// Shared by the three runtime drivers: the emulator they run against, the JSON part of the smoke
// env, bundling with `deno bundle`, and the assertion that every smoke check ran and passed.
import { assert, assertEquals } from '@std/assert'
import { DEMO, type RunningEmulator, startEmulator } from '../../workers/emulator/serve.ts'
import { rsa2048CertPem, rsa2048KeyPem } from '../_fixtures/certs.ts'
import { CHECKS, type RuntimeName, type SmokeEnv, type SmokeResult } from './smoke.ts'

/** The certificate client the emulator registers for the smoke suite. */
export const CERT_CLIENT = '6f1e2d3c-4b5a-4697-8887-1a2b3c4d5e99'

/** The public API entry every runtime loads: `mod.ts`, as users import it. */
export const PUBLIC_API: string = new URL('../../mod.ts', import.meta.url).pathname

/** The smoke suite module. */
export const SMOKE: string = new URL('./smoke.ts', import.meta.url).pathname

/** Starts the emulator on 127.0.0.1:0 with the certificate client registered. */
export function startSmokeEmulator(): Promise<RunningEmulator> {
  return startEmulator({
    config: {
      clients: [{ clientId: CERT_CLIENT, tenantId: DEMO.tenantId, certificates: [rsa2048CertPem] }],
      requestLogLimit: 10_000,
      // The device-code check polls without waiting; the code is approved on the second poll.
      deviceCode: { autoApproveAfterPolls: 1 },
    },
  })
}

/** The smoke env without `lib` (JSON-serialisable, so it can cross into workerd or Node). */
export type SmokeEnvData = Omit<SmokeEnv, 'lib'>

/** The smoke env for a runtime, pointing at the emulator (with a fresh Azure ML run token). */
export async function smokeEnvData(
  emu: RunningEmulator,
  runtime: RuntimeName,
): Promise<SmokeEnvData> {
  const runEnv = await emu.runEnv({
    ...DEMO.workspace,
    runId: `smoke-${runtime}-${crypto.randomUUID()}`,
  })
  return {
    runtime,
    origin: emu.origin,
    tenantId: DEMO.tenantId,
    clientId: DEMO.clientId,
    clientSecret: DEMO.clientSecret,
    certClientId: CERT_CLIENT,
    certKeyPem: rsa2048KeyPem,
    certPem: rsa2048CertPem,
    appServiceEnv: emu.env('app-service'),
    imdsEnv: emu.env('imds'),
    systemIdentityClientId: DEMO.systemIdentity.clientId,
    managedIdentity: runtime === 'workerd' ? 'refused' : 'token',
    runEnv,
    herd: 200,
  }
}

/** `deno bundle --platform browser --format esm -o out entry`: no Deno or Node API can sneak in. */
export async function bundle(entry: string, out: string): Promise<string> {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ['bundle', '--quiet', '--platform', 'browser', '--format', 'esm', '-o', out, entry],
    stdout: 'piped',
    stderr: 'piped',
  }).output()
  assert(res.success, `deno bundle ${entry} failed: ${new TextDecoder().decode(res.stderr)}`)
  const code = await Deno.readTextFile(out)
  assert(!/\bfrom\s*['"]node:|\bimport\(\s*['"]node:/.test(code), `${out} imports no Node module`)
  return code
}

/** Every check of the suite ran, in order, and passed; failures are listed with their details. */
export function assertSmoke(results: SmokeResult[]): void {
  const failed = results.filter((r) => !r.ok)
  assertEquals(
    failed,
    [],
    `failed checks:\n${failed.map((r) => `- ${r.name}: ${r.detail}`).join('\n')}`,
  )
  assertEquals(results.map((r) => r.name), [...CHECKS])
}
