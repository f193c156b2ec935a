import { assertEquals, assertThrows } from '@std/assert'
import { AmlAuthError } from '../src/errors.ts'
import { _parseExpiry, _parseRefreshAfter } from '../src/token_response.ts'
import { _parseExpiresOn } from '../src/_expires_on.ts'

Deno.test('_parseExpiresOn() reads every expires_on shape', () => {
  assertEquals(_parseExpiresOn(1_900_000_000), 1_900_000_000)
  assertEquals(_parseExpiresOn('1900000000'), 1_900_000_000)
  assertEquals(_parseExpiresOn(1_900_000_000_000), 1_900_000_000)
  assertEquals(
    _parseExpiresOn('06/20/2026 14:30:05 +00:00'),
    Date.UTC(2026, 5, 20, 14, 30, 5) / 1000,
  )
  assertEquals(
    _parseExpiresOn('6/2/2026 2:30:05 PM +00:00'),
    Date.UTC(2026, 5, 2, 14, 30, 5) / 1000,
  )
  assertEquals(_parseExpiresOn('6/2/2026 12:00:00 AM +00:00'), Date.UTC(2026, 5, 2, 0, 0, 0) / 1000)
  assertEquals(
    _parseExpiresOn('6/2/2026 12:00:00 PM +02:00'),
    Date.UTC(2026, 5, 2, 10, 0, 0) / 1000,
  )
  assertEquals(_parseExpiresOn('2026-06-20T14:30:05Z'), Date.UTC(2026, 5, 20, 14, 30, 5) / 1000)
  assertEquals(
    _parseExpiresOn('2026-06-20T14:30:05.123+01:00'),
    Date.UTC(2026, 5, 20, 13, 30, 5) / 1000,
  )
})

Deno.test('_parseExpiresOn() refuses zone-less and garbage dates', () => {
  assertEquals(_parseExpiresOn('2026-06-20T14:30:05'), undefined)
  assertEquals(_parseExpiresOn('tomorrow'), undefined)
  assertEquals(_parseExpiresOn('13/45/2026 99:00:00 PM +00:00'), undefined)
  assertEquals(_parseExpiresOn({}), undefined)
})

Deno.test('_parseExpiry() falls back to expires_in; _parseRefreshAfter() reads refresh_in', () => {
  assertEquals(_parseExpiry({ expires_in: 3600 }, 1_000_000, 'x'), 1000 + 3600)
  assertEquals(_parseExpiry({ expires_in: '3599' }, 1_000_000, 'x'), 1000 + 3599)
  assertEquals(_parseRefreshAfter({ refresh_in: 1800 }, 1_000_000), 1_000_000 + 1_800_000)
  assertEquals(_parseRefreshAfter({ refresh_on: 1900 }, 0), 1_900_000)
  assertEquals(_parseRefreshAfter({}, 0), undefined)
})

Deno.test('_parseExpiry() reads numbers by default and dates only with _parseExpiresOn', () => {
  const body = { expires_on: '06/20/2026 14:30:05 +00:00' }
  assertEquals(_parseExpiry({ expires_on: '1900000000' }, 0, 'x'), 1_900_000_000)
  assertEquals(_parseExpiry({ expires_on: 1_900_000_000_000 }, 0, 'x'), 1_900_000_000)
  assertThrows(() => _parseExpiry(body, 0, 'x'), AmlAuthError, 'expires_on')
  assertEquals(_parseExpiry(body, 0, 'x', _parseExpiresOn), Date.UTC(2026, 5, 20, 14, 30, 5) / 1000)
})
