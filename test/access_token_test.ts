import { assert, assertEquals, assertThrows } from '@std/assert'
import { AccessToken, Audience } from '@aml-edge/auth'

Deno.test('AccessToken exposes seconds and the @azure/core-auth fields', () => {
  const t = new AccessToken('tok', 1_900_000_000, 1_899_000_000_000)
  assertEquals(t.expiresOn, 1_900_000_000)
  assertEquals(t.expiresOnTimestamp, 1_900_000_000_000)
  assertEquals(t.refreshAfterTimestamp, 1_899_000_000_000)
  assertEquals(t.tokenType, 'Bearer')
  assert(Object.isFrozen(t))
})

Deno.test('AccessToken never shows its token in JSON, toString or inspect', () => {
  const t = new AccessToken('SECRET-TOKEN', 1_900_000_000)
  for (const s of [JSON.stringify(t), String(t), Deno.inspect(t)]) assert(!s.includes('SECRET'), s)
})

Deno.test('AccessToken validates its arguments', () => {
  assertThrows(() => new AccessToken('', 1), TypeError)
  assertThrows(() => new AccessToken('x', NaN), TypeError)
})

Deno.test('Audience has the Python SDK values', () => {
  assertEquals(Audience.ARM, 'ARM')
  assertEquals(Audience.AZUREML, 'AZUREML')
})
