// Deno 2.9 provides Deno.openKv only with --unstable-kv (or "unstable": ["kv"] in deno.json).
// Without it, this file checks the refusal and then runs itself again with the flag, so the KV
// tests below always run.
import { assert, assertEquals, assertMatch, assertThrows } from '@std/assert'
import { AmlAuthError, Audience, createTokenCache, TokenAuthentication } from '@aml-edge/auth'
import { denoKvTokenStore } from '../src/token_store_deno_kv.ts'
import { InteractiveLoginAuthentication } from '../src/credentials/interactive.ts'
import { startEmulator } from '../workers/emulator/serve.ts'
import { fakeClock } from './_fixtures/loopback.ts'

const hasKv = typeof (Deno as unknown as { openKv?: unknown }).openKv === 'function'

if (!hasKv) {
  Deno.test('denoKvTokenStore() without Deno KV refuses with ERR_STORE naming the flag', () => {
    const e = assertThrows(() => denoKvTokenStore(), AmlAuthError)
    assertEquals(e.code, 'ERR_STORE')
    assert(e.message.includes('--unstable-kv'))
  })

  Deno.test('denoKvTokenStore tests pass under --unstable-kv', async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ['test', '-A', '--unstable-kv', new URL(import.meta.url).pathname],
      env: { NO_COLOR: '1' },
      stdout: 'piped',
      stderr: 'piped',
    }).output()
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)
    assertEquals(out.code, 0, text.slice(-4000))
    assertMatch(text, /ok \| [1-9]\d* passed \| 0 failed/)
  })
} else {
  Deno.test('denoKvTokenStore stores, reads and deletes values under its prefix', async () => {
    const kv = await Deno.openKv(':memory:')
    try {
      const store = denoKvTokenStore(kv, { prefix: ['app', 'tokens'] })
      assertEquals(await store.get('k'), undefined)
      await store.set('k', 'v1.cipher', { expiresAt: Date.now() + 60_000 })
      assertEquals(await store.get('k'), 'v1.cipher')
      assertEquals((await kv.get(['app', 'tokens', 'k'])).value, 'v1.cipher')
      await store.delete('k')
      assertEquals(await store.get('k'), undefined)
      // A value already expired is not written (and an old one is removed).
      await store.set('k', 'old', { expiresAt: Date.now() + 60_000 })
      await store.set('k', 'gone', { expiresAt: Date.now() - 1 })
      assertEquals(await store.get('k'), undefined)
      await store.close() // a kv passed in stays open
      assertEquals((await kv.get(['x'])).value, null)
    } finally {
      kv.close()
    }
  })

  Deno.test('denoKvTokenStore() opens Deno KV itself and closes it', async () => {
    const dir = await Deno.makeTempDir()
    try {
      const store = denoKvTokenStore(undefined, { path: `${dir}/kv.db` })
      await store.set('k', 'value', { expiresAt: Date.now() + 60_000 })
      await store.close()
      const again = denoKvTokenStore(undefined, { path: `${dir}/kv.db` })
      assertEquals(await again.get('k'), 'value')
      await again.close()
    } finally {
      await Deno.remove(dir, { recursive: true })
    }
  })

  Deno.test('denoKvTokenStore validates its arguments', () => {
    assertThrows(() => denoKvTokenStore('kv' as unknown as Deno.Kv), TypeError)
    assertThrows(
      () => denoKvTokenStore(undefined, { prefix: [1] as unknown as string[] }),
      TypeError,
    )
  })

  Deno.test('denoKvTokenStore keeps an interactive sign-in for a second instance, encrypted', async () => {
    await using emu = await startEmulator()
    const kv = await Deno.openKv(':memory:')
    try {
      const key = crypto.getRandomValues(new Uint8Array(32))
      const make = (prompts: string[]) => {
        const clock = fakeClock(Date.now())
        return new InteractiveLoginAuthentication({
          env: {},
          authorityHost: emu.origin,
          tokenStore: denoKvTokenStore(kv),
          tokenStoreKey: key,
          cache: createTokenCache(),
          now: clock.now,
          sleep: clock.sleep,
          onDeviceCode: (i) => void prompts.push(i.userCode),
        })
      }
      const first: string[] = []
      await make(first).getToken()
      assertEquals(first.length, 1)
      const second: string[] = []
      const aml = await make(second).getTokenForAudience(Audience.AZUREML)
      assert(aml.token.length > 0)
      assertEquals(second.length, 0)
      const entries = await Array.fromAsync(kv.list<string>({ prefix: ['aml-edge-auth'] }))
      assertEquals(entries.length, 1)
      assertMatch(entries[0]!.value, /^v1\./)
      assertMatch(String(entries[0]!.key.at(-1)), /^[0-9a-f]{64}$/)
    } finally {
      kv.close()
    }
  })

  Deno.test('denoKvTokenStore serves as the shared tier of a token cache', async () => {
    const kv = await Deno.openKv(':memory:')
    try {
      const key = crypto.getRandomValues(new Uint8Array(32))
      let calls = 0
      const cb = () => {
        calls++
        return { token: 'shared', expiresOn: Math.floor(Date.now() / 1000) + 3600 }
      }
      const a = new TokenAuthentication(cb, {
        cache: createTokenCache({ store: denoKvTokenStore(kv), key }),
      })
      assertEquals((await a.getToken()).token, 'shared')
      const entries = await Array.fromAsync(kv.list<string>({ prefix: ['aml-edge-auth'] }))
      assertEquals(entries.length, 1)
      assert(!entries[0]!.value.includes('shared'))
      assertEquals(calls, 1)
    } finally {
      kv.close()
    }
  })
}
