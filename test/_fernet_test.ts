import { assert, assertEquals, assertRejects, assertStrictEquals } from '@std/assert'
import {
  _b64urlPadded,
  _deriveRunTokenKey,
  _fernetDecrypt,
  _fernetEncrypt,
  _fernetTimestamp,
  _importFernetKey,
} from '../src/_fernet.ts'
import { AmlAuthError } from '../src/errors.ts'

const dec = new TextDecoder()
const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i)

// The canonical example of the Fernet spec (github.com/fernet/spec, generate.json).
const SPEC_KEY = 'cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4='
const SPEC_TOKEN =
  'gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=='

// Our own vectors, computed independently with Python `cryptography` 48.0.0:
//   Fernet(key)._encrypt_from_parts(plaintext, timestamp, iv)
// key = urlsafe_b64encode(bytes(range(100, 132)))
const OWN_KEY = 'ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM='
const OWN_PLAIN = 'eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAzMDB9.sig — ünïcode 16 bytes block!'
const OWN_TOKEN =
  'gAAAAABlU_EAyMnKy8zNzs_Q0dLT1NXW1x4TTSE_zD97z2rwGnGrnTBbNwbS7wEsGMgaReluWoiGVgETwUjOaSXxalXD0HtiZAo2xJhiNytF_7ZJjhhsDgm2y_sEhgmCA7BpEWzbRV4sVArQHcF3s4BJb4OhHAzX257M6PeDey-8biKL2Uaplg4='
const EMPTY_TOKEN =
  'gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAsye4gCrl0kH19rjSEUMPU7FCPUwlreY6OHVspiLj65STX2o8_yS2vWvzfhIap_EQ=='
// Fernet(derived key).encrypt(b'eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln') in Python.
const PYTHON_FILE_TOKEN =
  'gAAAAABrCtWwnBVSutbB81mY3gYYoMufLIl5EnbRMp4GABhkDwJzUtoE7WWyYkjKW1GffxxT27_QbNBxN6ZReGjiwcDkXvQJshST8BqYsvKkk5QNgbg8nkX5WMA1GZ8JForO6QsQ98fLubdaqGC61ITjbCen57PPuw=='
const BLOCK_TOKEN =
  'gAAAAABlU_EAAAECAwQFBgcICQoLDA0OD2pzB5_WOQ7z89va6czJhQE4NKv9CK3ZD3ryDTNrZywlN8nkp3uGkJ7axvK0sp06OqSwfP7KOiDihegmaY0iMMo='

Deno.test('_fernetEncrypt() reproduces the Fernet spec example token exactly', async () => {
  const token = await _fernetEncrypt(SPEC_KEY, 'hello', { timestamp: 499162800, iv: bytes(0, 16) })
  assertStrictEquals(token, SPEC_TOKEN)
  assertEquals(dec.decode(await _fernetDecrypt(SPEC_KEY, SPEC_TOKEN)), 'hello')
})

Deno.test('_fernetEncrypt() matches vectors computed with Python cryptography', async () => {
  const key = await _importFernetKey(OWN_KEY)
  assertStrictEquals(
    await _fernetEncrypt(key, OWN_PLAIN, { timestamp: 1_700_000_000, iv: bytes(200, 16) }),
    OWN_TOKEN,
  )
  assertStrictEquals(
    await _fernetEncrypt(key, '', { timestamp: 0, iv: new Uint8Array(16) }),
    EMPTY_TOKEN,
  )
  assertStrictEquals(
    await _fernetEncrypt(key, '0123456789abcdef', { timestamp: 1_700_000_000, iv: bytes(0, 16) }),
    BLOCK_TOKEN,
  )
  assertEquals(dec.decode(await _fernetDecrypt(key, OWN_TOKEN)), OWN_PLAIN)
  assertEquals((await _fernetDecrypt(key, EMPTY_TOKEN)).length, 0)
  assertEquals(dec.decode(await _fernetDecrypt(key, BLOCK_TOKEN)), '0123456789abcdef')
  assertEquals(_fernetTimestamp(OWN_TOKEN), 1_700_000_000)
})

Deno.test('the token layout is version | timestamp | IV | ciphertext | HMAC, hand-built', async () => {
  // Build the expected token from the published format with Web Crypto primitives directly.
  const raw = bytes(1, 32)
  const iv = bytes(50, 16)
  const ts = 1_234_567_890
  const plain = new TextEncoder().encode('run-token-plaintext')
  const aes = await crypto.subtle.importKey('raw', raw.slice(16), 'AES-CBC', false, ['encrypt'])
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-CBC', iv }, aes, plain))
  const head = new Uint8Array(25)
  head[0] = 0x80
  new DataView(head.buffer).setBigUint64(1, BigInt(ts))
  head.set(iv, 9)
  const signed = new Uint8Array([...head, ...ct])
  const hmac = await crypto.subtle.importKey(
    'raw',
    raw.slice(0, 16),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', hmac, signed))
  const expected = _b64urlPadded(new Uint8Array([...signed, ...mac]))
  assertEquals(ct.length % 16, 0)
  assertStrictEquals(await _fernetEncrypt(raw, plain, { timestamp: ts, iv }), expected)
  assertEquals(await _fernetDecrypt(_b64urlPadded(raw), expected), plain)
})

Deno.test('_fernetEncrypt() uses a fresh random IV and round-trips', async () => {
  const key = _b64urlPadded(crypto.getRandomValues(new Uint8Array(32)))
  const a = await _fernetEncrypt(key, 'same')
  const b = await _fernetEncrypt(key, 'same')
  assert(a !== b)
  assertEquals(dec.decode(await _fernetDecrypt(key, a)), 'same')
  assertEquals(dec.decode(await _fernetDecrypt(key, b)), 'same')
  // Surrounding whitespace (a file's trailing newline) and missing padding are tolerated.
  assertEquals(dec.decode(await _fernetDecrypt(key, a.replace(/=+$/, '') + '\n')), 'same')
})

async function rejected(key: string, token: string): Promise<AmlAuthError> {
  const e = await assertRejects(() => _fernetDecrypt(key, token), AmlAuthError)
  assertEquals(e.code, 'ERR_TOKEN_INVALID')
  for (const text of [e.message, String(e), JSON.stringify(e), Deno.inspect(e)]) {
    assert(!text.includes(key.slice(0, 20)), 'key leaked')
    const part = token.slice(10, 40)
    assert(part.length < 8 || !text.includes(part), 'token leaked')
  }
  return e
}

Deno.test('_fernetDecrypt() rejects tampered, truncated, foreign-key and malformed tokens', async () => {
  const raw = Array.from(
    atob(SPEC_TOKEN.replace(/-/g, '+').replace(/_/g, '/')),
    (c) => c.charCodeAt(0),
  )
  const flip = (i: number) => {
    const b = Uint8Array.from(raw)
    b[i]! ^= 1
    return _b64urlPadded(b)
  }
  await rejected(SPEC_KEY, flip(0)) // version
  await rejected(SPEC_KEY, flip(3)) // timestamp
  await rejected(SPEC_KEY, flip(12)) // IV
  await rejected(SPEC_KEY, flip(30)) // ciphertext
  await rejected(SPEC_KEY, flip(raw.length - 1)) // HMAC
  await rejected(SPEC_KEY, SPEC_TOKEN.slice(0, -8)) // truncated
  await rejected(SPEC_KEY, _b64urlPadded(Uint8Array.from(raw).slice(0, 57))) // no ciphertext
  await rejected(SPEC_KEY, SPEC_TOKEN.replace(/_/g, '/')) // standard, not URL-safe, base64
  await rejected(SPEC_KEY, '')
  await rejected(SPEC_KEY, 'not a token!')
  await rejected(OWN_KEY, SPEC_TOKEN) // another key
})

Deno.test('_fernetDecrypt() rejects a well-signed token whose padding is wrong', async () => {
  // Sign garbage ciphertext with the right HMAC key: the MAC passes, the PKCS#7 check must fail.
  const raw = Uint8Array.from({ length: 32 }, (_, i) => i * 7)
  const head = new Uint8Array(25)
  head[0] = 0x80
  const ct = bytes(9, 16)
  const hmac = await crypto.subtle.importKey(
    'raw',
    raw.slice(0, 16),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const signed = new Uint8Array([...head, ...ct])
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', hmac, signed))
  await rejected(_b64urlPadded(raw), _b64urlPadded(new Uint8Array([...signed, ...mac])))
})

Deno.test('_fernetDecrypt() enforces ttlSeconds and the 60 s future skew only when asked', async () => {
  const now = 499162800_000
  assertEquals(
    dec.decode(await _fernetDecrypt(SPEC_KEY, SPEC_TOKEN, { ttlSeconds: 60, now })),
    'hello',
  )
  assertEquals(
    dec.decode(await _fernetDecrypt(SPEC_KEY, SPEC_TOKEN, { ttlSeconds: 60, now: now + 60_000 })),
    'hello',
  )
  const old = await assertRejects(
    () => _fernetDecrypt(SPEC_KEY, SPEC_TOKEN, { ttlSeconds: 60, now: now + 61_000 }),
    AmlAuthError,
  )
  assertEquals(old.code, 'ERR_TOKEN_INVALID')
  const future = await assertRejects(
    () => _fernetDecrypt(SPEC_KEY, SPEC_TOKEN, { ttlSeconds: 60, now: now - 61_000 }),
    AmlAuthError,
  )
  assertEquals(future.code, 'ERR_TOKEN_INVALID')
})

Deno.test('_importFernetKey() and _fernetEncrypt() refuse bad keys, IVs and timestamps', async () => {
  for (const key of ['', 'short', SPEC_KEY.slice(0, 40), SPEC_KEY + 'AAAA', new Uint8Array(31)]) {
    const e = await assertRejects(() => _importFernetKey(key), TypeError)
    assert(typeof key !== 'string' || key.length < 8 || !e.message.includes(key))
  }
  await assertRejects(() => _fernetEncrypt(SPEC_KEY, 'x', { iv: new Uint8Array(8) }), TypeError)
  await assertRejects(() => _fernetEncrypt(SPEC_KEY, 'x', { timestamp: -1 }), TypeError)
  await assertRejects(() => _fernetEncrypt(SPEC_KEY, 'x', { timestamp: 1.5 }), TypeError)
  const k = await _importFernetKey(new Uint8Array(32))
  assert(k.sign instanceof CryptoKey && k.encrypt instanceof CryptoKey)
  assertEquals(k.sign.extractable, false)
  assertEquals(k.encrypt.extractable, false)
})

Deno.test('_deriveRunTokenKey() is PBKDF2-HMAC-SHA256(pass, SHA-256(rand), 100000, 32)', async () => {
  // Expected value computed with Python:
  //   base64.urlsafe_b64encode(hashlib.pbkdf2_hmac('sha256', b'pass-value-xyz',
  //     hashlib.sha256(b'rand-value-123').digest(), 100000, 32))
  const key = await _deriveRunTokenKey('pass-value-xyz', 'rand-value-123')
  assertStrictEquals(key, 'qHLEU4PhR0qa5Bgnl_Pw2JwQ6f7rUhT4CIAHMA5DvQs=')
  assertStrictEquals(
    await _deriveRunTokenKey('pässwörd ✓', 'ränd'),
    '8_1qbFdk_UqxTUZIWU9Ol9elyB8kzBAgZwjjANCBdQY=',
  )
  // A token Python's Fernet wrote under that derived key (random IV and time) decrypts here.
  assertEquals(
    dec.decode(await _fernetDecrypt(key, PYTHON_FILE_TOKEN)),
    'eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln',
  )
  // The derived key works as a Fernet key.
  const token = await _fernetEncrypt(key, 'shared run token')
  assertEquals(dec.decode(await _fernetDecrypt(key, token)), 'shared run token')
})
