import { assert, assertEquals, assertRejects, assertStringIncludes } from '@std/assert'
import { AuthenticationError, CredentialUnavailableError } from '@aml-edge/auth'
import { _ARC_KEY_DIRS, _arcKeyPathProblem, _arcRealm } from '../../src/credentials/_msi_sources.ts'
import { serveLoopback } from '../_fixtures/loopback.ts'
import { ARM, assertCode, EXP, msi, query, SECRETS, tokenResponse } from './_msi_helpers.ts'

const KEY = SECRETS.arc

/** An Arc agent on loopback: challenges with `realm`, accepts `Basic <key>`. */
function arcAgent(realm: string, key: string = KEY, onToken?: () => Response) {
  return serveLoopback((r) => {
    const auth = r.headers.get('authorization')
    if (auth === null) {
      return Response.json(
        { error: 'unauthorized_client', error_description: 'Authorization header is missing.' },
        { status: 401, headers: { 'www-authenticate': `Basic realm=${realm}` } },
      )
    }
    if (auth !== `Basic ${key}`) {
      return Response.json(
        { error: 'unauthorized_client', error_description: `The key ${auth} is not valid.` },
        { status: 401 },
      )
    }
    return onToken?.() ?? tokenResponse({ expires_on: String(EXP), expires_in: '86399' })
  })
}

function arcEnv(origin: string) {
  return {
    IDENTITY_ENDPOINT: `${origin}/metadata/identity/oauth2/token`,
    IMDS_ENDPOINT: origin,
  }
}

async function keyDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: 'arc-tokens-' })
}

Deno.test('MsiAuthentication (azure-arc) answers the challenge with the key file', async () => {
  const dir = await keyDir()
  try {
    const path = `${dir}/${crypto.randomUUID()}.key`
    await Deno.writeTextFile(path, KEY + '\n')
    await using srv = arcAgent(path)
    const auth = msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir })
    assertEquals(auth.source, 'azure-arc')
    const t = await auth.getToken()
    assertEquals(t.token, 'mi-token')
    assertEquals(t.expiresOn, EXP)
    assertEquals(srv.requests.length, 2)
    const [first, second] = srv.requests as [
      (typeof srv.requests)[0],
      (typeof srv.requests)[0],
    ]
    for (const r of [first, second]) {
      assertEquals(r.method, 'GET')
      assertEquals(r.url.pathname, '/metadata/identity/oauth2/token')
      assertEquals(query(r), { 'api-version': '2020-06-01', resource: ARM })
      assertEquals(r.headers.get('metadata'), 'true')
      assertEquals(r.body, '')
    }
    assertEquals(first.headers.get('authorization'), null)
    assertEquals(second.headers.get('authorization'), `Basic ${KEY}`)
    // cached: no more requests
    await auth.getToken()
    assertEquals(srv.requests.length, 2)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) accepts a quoted realm and a 4096-byte key file', async () => {
  const dir = await keyDir()
  try {
    const path = `${dir}/big.key`
    const key = 'k'.repeat(4096)
    await Deno.writeTextFile(path, key)
    await using srv = arcAgent(`"${path}"`, key)
    const t = await msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir }).getToken()
    assertEquals(t.token, 'mi-token')
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) rewrites localhost to 127.0.0.1', async () => {
  const dir = await keyDir()
  try {
    const path = `${dir}/a.key`
    await Deno.writeTextFile(path, KEY)
    await using srv = arcAgent(path)
    const port = new URL(srv.origin).port
    const auth = msi({
      env: {
        IDENTITY_ENDPOINT: `http://localhost:${port}/metadata/identity/oauth2/token`,
        IMDS_ENDPOINT: `http://localhost:${port}`,
      },
      arcKeyDirectory: dir,
    })
    assertStringIncludes(auth.toString(), `http://127.0.0.1:${port}/`)
    await auth.getToken()
    assertEquals(srv.requests.length, 2)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) refuses key files outside the token folder, with no read', async () => {
  const dir = await keyDir()
  const other = await keyDir()
  try {
    await Deno.writeTextFile(`${other}/x.key`, KEY)
    await Deno.mkdir(`${dir}/sub`)
    await Deno.writeTextFile(`${dir}/sub/x.key`, KEY)
    await Deno.writeTextFile(`${dir}/x.txt`, KEY)
    const cases: [string, string][] = [
      [`${other}/x.key`, 'not directly inside'],
      [`${dir}/../${other.split('/').pop()}/x.key`, '. or .. segments'],
      [`${dir}/sub/x.key`, 'not directly inside'],
      [`${dir}/x.txt`, 'does not end in .key'],
      [`${dir}/.key`, 'does not end in .key'],
      [`/etc/passwd`, 'does not end in .key'],
      [`${dir}/x\t.key`, 'control characters'],
    ]
    for (const [realm, text] of cases) {
      const reads: string[] = []
      const readFile = (p: string) => {
        reads.push(p)
        return Promise.resolve(KEY)
      }
      await using srv = arcAgent(realm)
      const auth = msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir, readFile })
      const e = await assertRejects(() => auth.getToken())
      assertCode(e, 'ERR_RESPONSE_INVALID')
      assertStringIncludes(e.message, text)
      assert(!e.message.includes(realm), 'the path from the server is not echoed')
      assertEquals(reads, [])
      assertEquals(srv.requests.length, 1)
    }
  } finally {
    await Deno.remove(dir, { recursive: true })
    await Deno.remove(other, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) refuses a key file over 4096 bytes', async () => {
  const dir = await keyDir()
  try {
    const path = `${dir}/huge.key`
    await Deno.writeTextFile(path, 'k'.repeat(4097))
    await using srv = arcAgent(path, 'k'.repeat(4097))
    const e = await assertRejects(() =>
      msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir }).getToken()
    )
    assertCode(e, 'ERR_RESPONSE_INVALID', ['k'.repeat(100)])
    assertStringIncludes(e.message, '1 to 4096 printable ASCII')
    assertEquals(srv.requests.length, 1)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) refuses an empty key or one a header cannot carry', async () => {
  for (const content of ['', '  \n', `${KEY}\r\nX-Evil: 1`, 'key with spaces']) {
    await using srv = arcAgent(`${_ARC_KEY_DIRS.linux}/a.key`)
    const auth = msi({ env: arcEnv(srv.origin), readFile: () => Promise.resolve(content) })
    const e = await assertRejects(() => auth.getToken())
    assertCode(e, 'ERR_RESPONSE_INVALID')
    assertEquals(srv.requests.length, 1)
  }
})

Deno.test('MsiAuthentication (azure-arc) reports an unreadable key file as unavailable', async () => {
  const dir = await keyDir()
  try {
    await using srv = arcAgent(`${dir}/missing.key`)
    const e = await assertRejects(
      () => msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir }).getToken(),
      CredentialUnavailableError,
    )
    assertCode(e, 'ERR_CREDENTIAL_UNAVAILABLE')
    assertStringIncludes(e.message, 'himds group')
    assert(e.cause instanceof Deno.errors.NotFound)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) without a challenge header fails clearly', async () => {
  for (const header of [undefined, 'Bearer realm=x', 'Basic realm=']) {
    await using srv = serveLoopback(() =>
      Response.json(
        { error: 'unauthorized_client' },
        { status: 401, headers: header ? { 'www-authenticate': header } : {} },
      )
    )
    const e = await assertRejects(() => msi({ env: arcEnv(srv.origin) }).getToken())
    assertCode(e, 'ERR_RESPONSE_INVALID')
    assertStringIncludes(e.message, 'WWW-Authenticate')
  }
})

Deno.test('MsiAuthentication (azure-arc) a refused key is an AuthenticationError without the key', async () => {
  const dir = await keyDir()
  try {
    const path = `${dir}/a.key`
    await Deno.writeTextFile(path, KEY)
    await using srv = arcAgent(path, 'another-key-the-agent-expects')
    const e = await assertRejects(
      () => msi({ env: arcEnv(srv.origin), arcKeyDirectory: dir }).getToken(),
      AuthenticationError,
    )
    assertCode(e, 'ERR_AUTHENTICATION')
    assertEquals(e.status, 401)
    assertStringIncludes(e.errorDescription!, '[redacted]')
    assertStringIncludes(e.message, 'The Arc agent refused the key')
    assertEquals(srv.requests.length, 2)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test('MsiAuthentication (azure-arc) takes a token answered without a challenge', async () => {
  await using srv = serveLoopback(() => tokenResponse({ expires_on: EXP }))
  const t = await msi({ env: arcEnv(srv.origin) }).getToken()
  assertEquals(t.token, 'mi-token')
  assertEquals(srv.requests.length, 1)
})

Deno.test('MsiAuthentication (azure-arc) reads from the agent folders by default', async () => {
  const linux = `${_ARC_KEY_DIRS.linux}/0a1b.key`
  const windows = `${_ARC_KEY_DIRS.windows}\\0a1b.key`
  for (const realm of [linux, windows, windows.toLowerCase()]) {
    const reads: string[] = []
    await using srv = arcAgent(realm)
    const auth = msi({
      env: arcEnv(srv.origin),
      readFile: (p) => {
        reads.push(p)
        return Promise.resolve(KEY)
      },
    })
    await auth.getToken()
    assertEquals(reads, [realm])
  }
})

Deno.test('_arcRealm reads the key-file path from the challenge', () => {
  assertEquals(
    _arcRealm('Basic realm=/var/opt/azcmagent/tokens/a.key'),
    '/var/opt/azcmagent/tokens/a.key',
  )
  assertEquals(_arcRealm('basic realm="C:\\x\\a.key"'), 'C:\\x\\a.key')
  assertEquals(_arcRealm(null), undefined)
  assertEquals(_arcRealm('Bearer realm=x'), undefined)
  assertEquals(_arcRealm('Basic realm='), undefined)
})

Deno.test('_arcKeyPathProblem accepts only .key files directly in the agent folder', () => {
  const ok = [
    '/var/opt/azcmagent/tokens/a.key',
    'C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key',
    'c:\\programdata\\azureconnectedmachineagent\\tokens\\A.key',
  ]
  for (const p of ok) assertEquals(_arcKeyPathProblem(p), undefined, p)
  const bad = [
    '/var/opt/azcmagent/tokens/../../../etc/shadow.key',
    '/var/opt/azcmagent/tokens/sub/a.key',
    '/var/opt/azcmagent/tokensX/a.key',
    '/var/opt/azcmagent/tokens/a.pem',
    '/tmp/a.key',
    'C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\..\\a.key',
    'C:\\Windows\\a.key',
    'a.key',
  ]
  for (const p of bad) assert(_arcKeyPathProblem(p) !== undefined, p)
  assertEquals(_arcKeyPathProblem('/tmp/x/a.key', '/tmp/x/'), undefined)
  assert(_arcKeyPathProblem('/var/opt/azcmagent/tokens/a.key', '/tmp/x') !== undefined)
})
