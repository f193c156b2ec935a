import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import {
  AmlAuthError,
  Audience,
  AuthenticationError,
  createTokenCache,
  CredentialUnavailableError,
} from '@aml-edge/auth'
import {
  _parseCliLocalDate,
  AzureCliAuthentication,
  type AzureCliAuthenticationOptions,
} from '../../src/credentials/azure_cli.ts'

const FAKE_AZ = new URL('../_fixtures/fake_az/az', import.meta.url)
const TOKEN = 'cli-access-token-SECRET-0123456789'
const TENANT = '8d3e0f4a-7c1b-4e2d-9a6f-0e5b1c2d3a4f'

/** A temporary folder holding the fake `az`, and the env that puts it first on PATH. */
async function fakeAz(mode: string, extra: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir({ prefix: 'fake-az-' })
  await Deno.copyFile(FAKE_AZ, `${dir}/az`)
  await Deno.chmod(`${dir}/az`, 0o755)
  const argvFile = `${dir}/argv`
  const env: Record<string, string> = {
    PATH: `${dir}:/usr/bin:/bin`,
    HOME: dir,
    FAKE_AZ_MODE: mode,
    FAKE_AZ_TOKEN: TOKEN,
    FAKE_AZ_ARGV_FILE: argvFile,
    ...extra,
  }
  return {
    env,
    argv: async () => (await Deno.readTextFile(argvFile)).trimEnd().split('\n'),
    calls: async () => {
      try {
        return (await Deno.readTextFile(argvFile + '.calls')).trim().split('\n').length
      } catch {
        return 0
      }
    },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  }
}

function cli(env: Record<string, string>, extra: AzureCliAuthenticationOptions = {}) {
  return new AzureCliAuthentication({ env, cache: createTokenCache(), ...extra })
}

function assertNoSecret(e: unknown, ...secrets: string[]) {
  const err = e as Error
  for (
    const text of [err.message, String(err), JSON.stringify(err), Deno.inspect(err)]
  ) {
    for (const s of [TOKEN, ...secrets]) assert(!text.includes(s), 'secret leaked: ' + text)
  }
}

Deno.test('AzureCliAuthentication runs az with the exact arguments and reads expires_on', async () => {
  await using az = await fakeAz('epoch', { FAKE_AZ_EXPIRES_ON: '1893456000' })
  const auth = cli(az.env)
  const t = await auth.getToken()
  assertEquals(t.token, TOKEN)
  assertEquals(t.expiresOn, 1893456000)
  assertEquals(await az.argv(), [
    'account',
    'get-access-token',
    '--resource',
    'https://management.core.windows.net/',
    '--output',
    'json',
  ])
})

Deno.test('AzureCliAuthentication reads expiresOn as local time when expires_on is absent', async () => {
  await using az = await fakeAz('local', { FAKE_AZ_EXPIRES_LOCAL: '2030-01-02 03:04:05.123456' })
  const t = await cli(az.env).getToken()
  assertEquals(t.expiresOn, Math.floor(new Date(2030, 0, 2, 3, 4, 5, 123).getTime() / 1000))
})

Deno.test('_parseCliLocalDate() reads the CLI format and refuses others', () => {
  assertEquals(
    _parseCliLocalDate('2030-01-02 03:04:05'),
    Math.floor(new Date(2030, 0, 2, 3, 4, 5).getTime() / 1000),
  )
  assertEquals(_parseCliLocalDate('01/02/2030 03:04:05'), undefined)
})

Deno.test('AzureCliAuthentication asks for the Azure ML resource without /.default', async () => {
  await using az = await fakeAz('epoch')
  await cli(az.env).getTokenForAudience(Audience.AZUREML)
  assertEquals((await az.argv())[3], 'https://ml.azure.com')
})

Deno.test('AzureCliAuthentication passes --tenant from the option and from getToken', async () => {
  await using az = await fakeAz('epoch')
  const auth = cli(az.env, { tenantId: TENANT, additionallyAllowedTenants: ['contoso.com'] })
  await auth.getToken()
  assertEquals((await az.argv()).slice(6), ['--tenant', TENANT])
  await auth.getToken(undefined, { tenantId: 'contoso.com' })
  assertEquals((await az.argv()).slice(6), ['--tenant', 'contoso.com'])
  const e = await assertRejects(
    () => auth.getToken(undefined, { tenantId: 'fabrikam.com' }),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_TENANT_NOT_ALLOWED')
})

Deno.test('AzureCliAuthentication caches: az runs once for repeated calls', async () => {
  await using az = await fakeAz('epoch', {
    FAKE_AZ_EXPIRES_ON: String(Math.floor(Date.now() / 1000) + 3600),
  })
  const auth = cli(az.env)
  await Promise.all([auth.getToken(), auth.getToken(), auth.getAuthenticationHeader()])
  await auth.getToken()
  assertEquals(await az.calls(), 1)
  // Another instance for the same az account and cache shares the token; another tenant does not.
  const cache = createTokenCache()
  await new AzureCliAuthentication({ env: az.env, cache }).getToken()
  await new AzureCliAuthentication({ env: az.env, cache }).getToken()
  assertEquals(await az.calls(), 2)
  await new AzureCliAuthentication({ env: az.env, cache, tenantId: TENANT }).getToken()
  assertEquals(await az.calls(), 3)
})

Deno.test('AzureCliAuthentication: not logged in is ERR_CREDENTIAL_UNAVAILABLE saying az login', async () => {
  await using az = await fakeAz('not-logged-in')
  const e = await assertRejects(() => cli(az.env).getToken(), CredentialUnavailableError)
  assertEquals(e.code, 'ERR_CREDENTIAL_UNAVAILABLE')
  assertStringIncludes(e.message, '`az login`')
  assertNoSecret(e)
})

Deno.test('AzureCliAuthentication: an AADSTS error asks to sign in again, with the tenant', async () => {
  await using az = await fakeAz('aadsts')
  const e = await assertRejects(
    () => cli(az.env, { tenantId: TENANT }).getToken(),
    CredentialUnavailableError,
  )
  assertStringIncludes(e.message, 'AADSTS700082')
  assertStringIncludes(e.message, `az login --tenant ${TENANT}`)
})

Deno.test('AzureCliAuthentication: another failure is an AuthenticationError with the exit code', async () => {
  await using az = await fakeAz('fail')
  const e = await assertRejects(() => cli(az.env).getToken(), AuthenticationError)
  assertEquals(e.code, 'ERR_AUTHENTICATION')
  assertStringIncludes(e.message, 'exit code 2')
  assertStringIncludes(e.message, 'The command failed with an unexpected error.')
})

Deno.test('AzureCliAuthentication: az missing from PATH is ERR_CREDENTIAL_UNAVAILABLE', async () => {
  await using az = await fakeAz('epoch')
  const dir = await Deno.makeTempDir()
  try {
    const e = await assertRejects(
      () => cli({ ...az.env, PATH: dir }).getToken(),
      CredentialUnavailableError,
    )
    assertStringIncludes(e.message, 'not found on PATH')
    assertEquals(await az.calls(), 0)
  } finally {
    await Deno.remove(dir)
  }
})

Deno.test('AzureCliAuthentication refuses an invalid resource without running az', async () => {
  await using az = await fakeAz('epoch')
  const auth = cli(az.env)
  await assertRejects(() => auth.getToken('https://x.example/.default;rm'), TypeError)
  await assertRejects(() => auth.getToken('https://x.example/$(whoami)'), TypeError)
  await assertRejects(() => auth.getToken('--debug'), TypeError)
  assertEquals(await az.calls(), 0)
})

Deno.test('AzureCliAuthentication serves one scope per request', async () => {
  await using az = await fakeAz('epoch')
  const e = await assertRejects(
    () => cli(az.env).getToken(['https://a.example/.default', 'https://b.example/.default']),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_UNSUPPORTED_AUDIENCE')
})

Deno.test('AzureCliAuthentication: a claims challenge says how to sign in again', async () => {
  await using az = await fakeAz('epoch')
  const e = await assertRejects(
    () => cli(az.env).getToken(undefined, { claims: '{"access_token":{}}' }),
    CredentialUnavailableError,
  )
  assertStringIncludes(e.message, '--claims-challenge')
  assertEquals(await az.calls(), 0)
})

Deno.test('AzureCliAuthentication stops az at processTimeoutMs with ERR_TIMEOUT', async () => {
  await using az = await fakeAz('sleep')
  const e = await assertRejects(
    () => cli(az.env, { processTimeoutMs: 300 }).getToken(),
    AmlAuthError,
  )
  assertEquals(e.code, 'ERR_TIMEOUT')
  assertStringIncludes(e.message, 'processTimeoutMs')
})

Deno.test('AzureCliAuthentication: output that is not JSON is ERR_RESPONSE_INVALID without the output', async () => {
  await using az = await fakeAz('garbage')
  const e = await assertRejects(() => cli(az.env).getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertNoSecret(e)
})

Deno.test('AzureCliAuthentication: output without expiry is ERR_RESPONSE_INVALID without the token', async () => {
  await using az = await fakeAz('no-expiry')
  const e = await assertRejects(() => cli(az.env).getToken(), AmlAuthError)
  assertEquals(e.code, 'ERR_RESPONSE_INVALID')
  assertNoSecret(e)
})

Deno.test('AzureCliAuthentication uses an injected runCommand (e.g. on Node)', async () => {
  const seen: { program: string; args: readonly string[]; env: unknown; signal: unknown }[] = []
  const auth = new AzureCliAuthentication({
    env: { HOME: '/nowhere' },
    cache: createTokenCache(),
    runCommand: (program, args, options) => {
      seen.push({ program, args, env: options.env, signal: options.signal })
      return Promise.resolve({
        code: 0,
        stdout: JSON.stringify({ accessToken: 'injected', expires_on: 4102444800 }),
        stderr: '',
      })
    },
  })
  assertEquals((await auth.getToken()).token, 'injected')
  assertEquals(seen[0]!.program, 'az')
  assertEquals(seen[0]!.args[0], 'account')
  assertEquals(seen[0]!.env, { HOME: '/nowhere' })
  assertInstanceOf(seen[0]!.signal, AbortSignal)
})

Deno.test('AzureCliAuthentication without Deno.Command is ERR_CREDENTIAL_UNAVAILABLE at token time', async () => {
  const d = Deno as unknown as Record<string, unknown>
  const original = d.Command
  const auth = cli({})
  Object.defineProperty(Deno, 'Command', { value: undefined, configurable: true, writable: true })
  try {
    const e = await assertRejects(() => auth.getToken(), CredentialUnavailableError)
    assertStringIncludes(e.message, 'ServicePrincipalAuthentication')
  } finally {
    Object.defineProperty(Deno, 'Command', { value: original, configurable: true, writable: true })
  }
})

Deno.test('AzureCliAuthentication validates its options', () => {
  assertThrows(() => new AzureCliAuthentication({ tenantId: 'bad tenant' }), TypeError)
  assertThrows(() => new AzureCliAuthentication({ processTimeoutMs: 0 }), RangeError)
  assertThrows(
    () => new AzureCliAuthentication({ runCommand: 'az' as unknown as never }),
    TypeError,
  )
  const auth = new AzureCliAuthentication({ tenantId: TENANT, env: {} })
  assertEquals(JSON.parse(JSON.stringify(auth)).tenantId, TENANT)
  assertStringIncludes(String(auth), 'AzureCliAuthentication(')
})
