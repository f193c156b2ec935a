import { assert, assertEquals, assertInstanceOf } from '@std/assert'
import { AmlAuthError, AuthenticationError, CredentialUnavailableError } from '@aml-edge/auth'
import { _redact } from '../src/errors.ts'

Deno.test('AmlAuthError subclasses carry stable codes', () => {
  const u = new CredentialUnavailableError('AZURE_CLIENT_ID is not set')
  assertInstanceOf(u, AmlAuthError)
  assertEquals(u.code, 'ERR_CREDENTIAL_UNAVAILABLE')
  assertEquals(u.name, 'CredentialUnavailableError')
  const a = new AuthenticationError('refused', {
    status: 400,
    error: 'invalid_grant',
    errorCodes: [70000],
  })
  assertEquals(a.code, 'ERR_AUTHENTICATION')
  assertEquals(a.status, 400)
})

Deno.test('AuthenticationError keeps the raw response out of JSON and keys', () => {
  const response = new Response('{"error":"x"}', { status: 400 })
  const a = new AuthenticationError('refused', { status: 400, error: 'x', response })
  assert(a.response === response)
  assert(!Object.keys(a).includes('response'))
  const json = JSON.parse(JSON.stringify(a))
  assertEquals(json.code, 'ERR_AUTHENTICATION')
  assertEquals(json.error, 'x')
  assertEquals('response' in json, false)
})

Deno.test('AuthenticationError carries only the named service fields', () => {
  const details = { status: 400, error: 'invalid_grant', traceId: undefined, extra: 'held-token' }
  const e = new AuthenticationError('refused', details as never)
  assertEquals(Object.keys(e), ['name', 'code', 'status', 'error'])
  assert(!JSON.stringify(e).includes('held-token'))
  assert(!Deno.inspect(e).includes('held-token') && !Deno.inspect(e).includes('traceId'))
})

Deno.test('_redact() removes secrets echoed by a server', () => {
  assertEquals(
    _redact('bad secret abcd1234 given', ['abcd1234', undefined]),
    'bad secret [redacted] given',
  )
  assertEquals(_redact('short ab', ['ab']), 'short ab')
})
