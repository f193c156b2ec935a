import { assertEquals, assertInstanceOf } from '@std/assert'
import { denoCommandRunner, resolveEnv, runtimeEnv } from '../src/env.ts'

Deno.test('resolveEnv() prefers the env option over the runtime', () => {
  assertEquals(resolveEnv({ A: '1' }), { A: '1' })
})

Deno.test('runtimeEnv() reads Deno.env when permission is granted', () => {
  Deno.env.set('AML_EDGE_TEST_VAR', 'yes')
  assertEquals(runtimeEnv().AML_EDGE_TEST_VAR, 'yes')
  Deno.env.delete('AML_EDGE_TEST_VAR')
})

Deno.test('denoCommandRunner() runs a program without a shell', async () => {
  const run = denoCommandRunner()
  assertInstanceOf(run, Function)
  const out = await run!('echo', ['a b', '$HOME'], {})
  assertEquals(out.code, 0)
  assertEquals(out.stdout, 'a b $HOME\n')
})
