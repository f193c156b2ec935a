// A bounded fuzz of the token broker's handlers: 500 hostile requests from a fixed seed never
// yield a 500, a stack trace, a non-JSON error or a leaked secret, and each gets one log line.
import { assert, assertEquals } from '@std/assert'
import { createApp } from '../../../workers/token-broker/src/index.ts'
import { fuzzCases } from './_fuzz.ts'
import {
  apiKey,
  brokerEnv,
  CLIENT_SECRET,
  fakeEntra,
  fakeIssuer,
  findLeak,
  logSink,
  runSigningKey,
} from './_helpers.ts'

const SEED = 0x0b10cce5
const CASES = 500

Deno.test('the broker answers 500 fuzzed requests without a 500 or a stack trace', async () => {
  await using entra = fakeEntra()
  await using issuer = await fakeIssuer()
  const key = await apiKey()
  const runKey = await runSigningKey()
  const env = brokerEnv({
    authorityHost: entra.origin,
    runKey: runKey.json,
    apiKeyHash: key.hash,
    issuer,
    extra: { RATE_LIMIT_PER_MINUTE: '100000', ALLOWED_ORIGINS: 'https://app.example' },
  })
  const log = logSink()
  const app = createApp({ log: log.sink })
  const statuses = new Map<number, number>()
  const bodies: string[] = []
  for (const c of fuzzCases(SEED, CASES, 'http://broker.test', key.key, issuer.issuer)) {
    const res = await app.request(c.url, c.init, env)
    const body = await res.text()
    bodies.push(body)
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    assert(
      [200, 204, 400, 401, 403, 404, 405, 413, 415, 429, 502].includes(res.status),
      `${c.label}: unexpected ${res.status} ${body.slice(0, 200)}`,
    )
    assert(!/\bat \S+ \(|\n\s+at |Error:/.test(body), `${c.label}: stack trace in ${body}`)
    if (res.status >= 400 && c.init.method !== 'HEAD') {
      const json = JSON.parse(body)
      assertEquals(Object.keys(json).sort(), ['error', 'error_description'], c.label)
    }
    assertEquals(res.headers.get('x-content-type-options'), 'nosniff')
  }
  assertEquals(log.lines.length, CASES)
  assertEquals(
    findLeak([...log.lines, ...bodies.filter((b) => b.includes('"error"'))], [
      CLIENT_SECRET,
      key.key,
      JSON.parse(runKey.json).d,
      ...entra.issued,
    ]),
    undefined,
  )
  // The generator reaches the handlers, not only the router: successes and every refusal kind.
  for (const s of [200, 400, 401, 403, 404, 405, 413]) {
    assert((statuses.get(s) ?? 0) > 0, `no ${s} among ${JSON.stringify([...statuses])}`)
  }
})
