// Runtime matrix, Deno: the portable smoke suite against the emulator, importing the source
// modules directly (as a Deno or JSR user does).
import * as lib from '../../mod.ts'
import { assertSmoke, smokeEnvData, startSmokeEmulator } from './_harness.ts'
import { smoke } from './smoke.ts'

Deno.test('smoke suite passes on Deno (public API against the emulator)', async () => {
  await using emu = await startSmokeEmulator()
  const results = await smoke({ ...await smokeEnvData(emu, 'deno'), lib })
  assertSmoke(results)
})
