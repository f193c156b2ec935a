import {
  assert,
  assertEquals,
  assertFalse,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from '@std/assert'
import {
  _isPkcs12,
  _modulusBits,
  _parseCertificatePem,
  _parsePrivateKeyPem,
  _pemBlocks,
  _refuseNonPem,
  _sameModulus,
} from '../src/_pem.ts'
import { _b64, _hex } from '../src/jwt.ts'
import {
  caCertPem,
  chainKeyPem,
  chainPem,
  rsa2048CertPem,
  rsa2048EncryptedPem,
  rsa2048KeyPem,
  rsa2048Pfx,
  rsa2048Pkcs1Pem,
  rsa4096CertPem,
  rsa4096KeyPem,
} from './_fixtures/certs.ts'

function armor(label: string, der: Uint8Array, headers = ''): string {
  const b64 = _b64(der).replace(/.{64}/g, '$&\n')
  return `-----BEGIN ${label}-----\n${headers}${b64}\n-----END ${label}-----\n`
}

function derOf(pem: string): Uint8Array {
  return _pemBlocks(pem, 'x')[0]!.der
}

Deno.test('_parsePrivateKeyPem() wraps PKCS#1 into the same PKCS#8 openssl writes', () => {
  const pkcs8 = _parsePrivateKeyPem(rsa2048KeyPem, 'k')
  const pkcs1 = _parsePrivateKeyPem(rsa2048Pkcs1Pem, 'k')
  assertEquals(_hex(pkcs1.pkcs8), _hex(derOf(rsa2048KeyPem)))
  assertEquals(_hex(pkcs8.pkcs8), _hex(pkcs1.pkcs8))
  assertEquals(_modulusBits(pkcs1.modulus), 2048)
})

Deno.test('_parsePrivateKeyPem() output imports into Web Crypto as an RSA-PSS key', async () => {
  for (const pem of [rsa2048KeyPem, rsa2048Pkcs1Pem, rsa4096KeyPem]) {
    const { pkcs8 } = _parsePrivateKeyPem(pem, 'k')
    const key = await crypto.subtle.importKey(
      'pkcs8',
      pkcs8,
      { name: 'RSA-PSS', hash: 'SHA-256' },
      false,
      ['sign'],
    )
    assertEquals(key.type, 'private')
  }
})

Deno.test('_parsePrivateKeyPem() re-wraps an RSASSA-PSS PKCS#8 key with rsaEncryption', async () => {
  // Build PrivateKeyInfo { 0, { id-RSASSA-PSS }, OCTET STRING RSAPrivateKey } by hand.
  const inner = derOf(rsa2048Pkcs1Pem)
  const len = (n: number) => n < 128 ? [n] : n < 256 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  const octet = [0x04, ...len(inner.length), ...inner]
  const algId = [0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]
  const body = [0x02, 0x01, 0x00, ...algId, ...octet]
  const der = new Uint8Array([0x30, ...len(body.length), ...body])
  const parsed = _parsePrivateKeyPem(armor('PRIVATE KEY', der), 'k')
  assertEquals(_hex(parsed.pkcs8), _hex(derOf(rsa2048KeyPem)))
  await crypto.subtle.importKey(
    'pkcs8',
    parsed.pkcs8,
    { name: 'RSA-PSS', hash: 'SHA-256' },
    false,
    [
      'sign',
    ],
  )
})

Deno.test('_parseCertificatePem() reads every certificate of a chain, leaf first', () => {
  const chain = _parseCertificatePem(chainPem, 'c')
  assertEquals(chain.length, 2)
  assert(_sameModulus(chain[0]!.modulus, _parsePrivateKeyPem(chainKeyPem, 'k').modulus))
  assert(_sameModulus(chain[1]!.modulus, _parseCertificatePem(caCertPem, 'c')[0]!.modulus))
  const [c4096] = _parseCertificatePem(rsa4096CertPem, 'c')
  assertEquals(_modulusBits(c4096!.modulus), 4096)
  assert(_sameModulus(c4096!.modulus, _parsePrivateKeyPem(rsa4096KeyPem, 'k').modulus))
  assertFalse(_sameModulus(c4096!.modulus, _parsePrivateKeyPem(rsa2048KeyPem, 'k').modulus))
})

Deno.test('_parseCertificatePem() and _parsePrivateKeyPem() read `openssl pkcs12 -nodes` output', () => {
  // openssl pkcs12 -nodes writes "Bag Attributes" and subject/issuer lines around the blocks.
  const text = 'Bag Attributes\n    localKeyID: CE 2C 0E\n    friendlyName: test\n' +
    'subject=CN = test\nissuer=CN = test\n' + rsa2048CertPem +
    'Bag Attributes\n    localKeyID: CE 2C 0E\nKey Attributes: <No Attributes>\n' + rsa2048KeyPem
  const [cert] = _parseCertificatePem(text, 'c')
  const key = _parsePrivateKeyPem(text, 'k')
  assert(_sameModulus(cert!.modulus, key.modulus))
})

Deno.test('_parsePrivateKeyPem() refuses encrypted keys with the openssl command to convert', () => {
  const e = assertThrows(
    () => _parsePrivateKeyPem(rsa2048EncryptedPem, 'certificate.privateKey'),
    TypeError,
  )
  assertStringIncludes(e.message, 'certificate.privateKey is encrypted')
  assertStringIncludes(e.message, 'openssl pkcs8 -topk8 -nocrypt')
  // Legacy OpenSSL encryption of a PKCS#1 key (Proc-Type header).
  const legacy = armor(
    'RSA PRIVATE KEY',
    derOf(rsa2048Pkcs1Pem),
    'Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\n',
  )
  const e2 = assertThrows(() => _parsePrivateKeyPem(legacy, 'k'), TypeError)
  assertStringIncludes(e2.message, 'openssl pkcs8 -topk8 -nocrypt')
})

Deno.test('_refuseNonPem() recognizes PKCS#12 as bytes, base64 or a binary string', () => {
  assert(_isPkcs12(rsa2048Pfx))
  assertFalse(_isPkcs12(derOf(rsa2048CertPem)))
  const b64 = _b64(rsa2048Pfx)
  const binary = String.fromCharCode(...rsa2048Pfx)
  for (const input of [rsa2048Pfx, b64, binary, rsa2048Pfx.buffer as ArrayBuffer]) {
    const e = assertThrows(() => _refuseNonPem(input, 'certificate.certificate', 'c'), TypeError)
    assertStringIncludes(e.message, 'PKCS#12')
    assertStringIncludes(e.message, 'openssl pkcs12 -in cert.pfx -nodes')
  }
  const e = assertThrows(() => _parsePrivateKeyPem('/keys/app.pfx', 'k'), TypeError)
  assertStringIncludes(e.message, 'openssl pkcs12')
})

Deno.test('_parsePrivateKeyPem() explains file paths, bare base64 and other non-PEM input', () => {
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem('/etc/keys/app.pem', 'k'), TypeError).message,
    'looks like a file path',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(_b64(derOf(rsa2048KeyPem)), 'k'), TypeError).message,
    'bare base64',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem('hello', 'k'), TypeError).message,
    'not PEM text',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem('', 'k'), TypeError).message,
    'non-empty PEM string',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(42 as unknown as string, 'k'), TypeError).message,
    'non-empty PEM string',
  )
})

Deno.test('_parsePrivateKeyPem() refuses EC keys, public keys, two keys and damaged blocks', async () => {
  const ec = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
  ])
  const ecPkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', ec.privateKey))
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(armor('PRIVATE KEY', ecPkcs8), 'k'), TypeError).message,
    'k is an EC key; Microsoft Entra ID accepts RSA certificates only',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(armor('EC PRIVATE KEY', ecPkcs8), 'k'), TypeError)
      .message,
    'EC key',
  )
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', ec.publicKey))
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(armor('PUBLIC KEY', spki), 'k'), TypeError).message,
    'holds a public key',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(rsa2048KeyPem + rsa4096KeyPem, 'k'), TypeError).message,
    'holds 2 private keys',
  )
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(rsa2048CertPem, 'k'), TypeError).message,
    'no PEM private key block',
  )
  const der = derOf(rsa2048KeyPem)
  assertStringIncludes(
    assertThrows(
      () => _parsePrivateKeyPem(armor('PRIVATE KEY', der.subarray(0, 300)), 'k'),
      TypeError,
    )
      .message,
    'k is not a valid RSA private key (the block is damaged)',
  )
  const damaged = rsa2048KeyPem.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!')
  assertStringIncludes(
    assertThrows(() => _parsePrivateKeyPem(damaged, 'k'), TypeError).message,
    'not base64',
  )
})

Deno.test('_parseCertificatePem() refuses damaged and missing certificates', () => {
  const der = derOf(rsa2048CertPem)
  assertStringIncludes(
    assertThrows(
      () => _parseCertificatePem(armor('CERTIFICATE', der.subarray(0, 200)), 'c'),
      TypeError,
    )
      .message,
    'c is not a valid X.509 certificate',
  )
  assertStringIncludes(
    assertThrows(() => _parseCertificatePem(rsa2048KeyPem, 'c'), TypeError).message,
    'no PEM certificate',
  )
})

Deno.test('parse errors never quote key material', () => {
  const body = rsa2048KeyPem.split('\n')[1]!
  for (
    const input of [
      rsa2048EncryptedPem,
      rsa2048KeyPem.replace('MII', '!!!'),
      armor('PRIVATE KEY', derOf(rsa2048KeyPem).subarray(0, 100)),
    ]
  ) {
    const e = assertThrows(() => _parsePrivateKeyPem(input, 'k'), TypeError)
    assertFalse(e.message.includes(body.slice(0, 20)))
    assertMatch(e.message, /^k /)
  }
})
