// PEM and DER for certificate credentials, without Node: PEM block parsing, the few ASN.1 (DER)
// structures a client assertion needs (PKCS#8 and PKCS#1 RSA keys, the public key of an X.509
// certificate), PKCS#1 -> PKCS#8 wrapping for Web Crypto, and recognition of what Web Crypto
// cannot import (encrypted keys, PKCS#12) with the `openssl` command that converts it. Every parse
// error is a TypeError that names the option and never quotes key material. Only imported by
// `clientCertificate()` and the certificate file of `servicePrincipalFromEnvironment()`.
import { _hex, _unb64 } from './jwt.ts'

/** One `-----BEGIN <label>-----` block. */
export interface _PemBlock {
  /** The label, e.g. `CERTIFICATE`, `PRIVATE KEY`. */
  label: string
  /** Whether legacy OpenSSL encryption headers (`Proc-Type: 4,ENCRYPTED`) precede the body. */
  encrypted: boolean
  /** The decoded body. */
  der: Uint8Array<ArrayBuffer>
}

/** The `openssl` command that removes a key's password, for messages. */
export const _OPENSSL_NOCRYPT =
  '`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.unencrypted.pem`'

/** The message for PKCS#12 input: what it is and the `openssl` command that converts it. */
export function _pfxMessage(option: string, what: string): string {
  return `${option} ${what} PKCS#12 (PFX) file, which Web Crypto cannot read: convert it once ` +
    'with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem` (-legacy for old files) and use the PEM'
}

/**
 * Every PEM block in a text, in order. Text outside blocks is ignored (OpenSSL's `Bag
 * Attributes` lines, comments), and so are RFC 1421 header lines inside one.
 *
 * @throws {TypeError} when a block's body is empty or not base64
 */
export function _pemBlocks(text: string, option: string): _PemBlock[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([^]*?)-----END \1-----/g)].map(
    ([, label, body]) => {
      let der: Uint8Array<ArrayBuffer> | undefined
      try {
        der = _unb64(body!.replace(/^.*:.*$/gm, ''))
      } catch {
        // reported below
      }
      if (!der?.length) throw new TypeError(`${option} has a ${label} block that is not base64`)
      return { label: label!, encrypted: /Proc-Type:.*ENCRYPTED/i.test(body!), der }
    },
  )
}

// ---------------------------------------------------------------------------------------------
// Minimal DER reader: definite lengths, single-byte tags (all the structures below need).

/** The content range of the element with `tag` at `pos`; throws (not a TypeError) otherwise. */
function tlv(buf: Uint8Array, pos: number, tag: number, limit = buf.length): {
  start: number
  end: number
} {
  let len = buf[pos + 1]!
  let start = pos + 2
  if (buf[pos] !== tag) throw 0
  if (len > 127) {
    const n = len - 128
    if (!n || n > 4) throw 0
    for (len = 0; start < pos + 2 + n;) len = len * 256 + buf[start++]!
  }
  const end = start + len
  if (!(end <= limit)) throw 0
  return { start, end }
}

/** The bytes of the OID at `pos` (in hex), after checking the tag. */
function oid(buf: Uint8Array, pos: number, limit: number): string {
  const t = tlv(buf, pos, 6, limit)
  return _hex(buf.subarray(t.start, t.end))
}

/** An INTEGER's bytes without leading zeros. */
function integer(buf: Uint8Array, t: { start: number; end: number }): Uint8Array {
  let s = t.start
  while (s < t.end - 1 && !buf[s]) s++
  return buf.subarray(s, t.end)
}

/** An element: tag, DER length, content. */
function wrap(tag: number, content: ArrayLike<number>): number[] {
  const len: number[] = []
  for (let v = content.length; v; v >>>= 8) len.unshift(v & 255)
  return [
    tag,
    ...content.length < 128 ? [content.length] : [128 | len.length, ...len],
    ...Array
      .from(content),
  ]
}

const RSA = '2a864886f70d010101'
const RSA_PSS = '2a864886f70d01010a'
const KEY_NAMES: Record<string, string> = {
  '2a8648ce3d0201': 'an EC key',
  'EC PRIVATE KEY': 'an EC key',
  '2b6570': 'an Ed25519 key',
  '2b6571': 'an Ed448 key',
}

/** Refuses anything but an RSA key (rsaEncryption or RSASSA-PSS): Entra accepts RSA only. */
function checkRsa(alg: string, subject: string): void {
  if (alg !== RSA && alg !== RSA_PSS) {
    throw new TypeError(
      `${subject} ${KEY_NAMES[alg] ?? 'a non-RSA key'}; Microsoft Entra ID accepts RSA ` +
        'certificates only',
    )
  }
}

/** Runs a DER walk; a failure of the walk (not a TypeError) becomes "<option> is damaged". */
function walk<T>(option: string, what: string, f: () => T): T {
  try {
    return f()
  } catch (e) {
    throw e instanceof TypeError
      ? e
      : new TypeError(`${option} is not a valid ${what} (the block is damaged)`)
  }
}

/** An RSA private key in the form Web Crypto imports, plus its modulus for matching. */
export interface _RsaPrivateKey {
  /** PKCS#8 DER with the rsaEncryption algorithm identifier (a fresh copy: zero it after use). */
  pkcs8: Uint8Array<ArrayBuffer>
  /** The modulus, without leading zero bytes. */
  modulus: Uint8Array
}

/**
 * The RSA private key in a PEM text: `BEGIN PRIVATE KEY` (PKCS#8; an RSASSA-PSS identifier is
 * re-wrapped as rsaEncryption, which every Web Crypto imports for RSA-PSS) or `BEGIN RSA PRIVATE
 * KEY` (PKCS#1, wrapped into PKCS#8 here). Certificates in the same text are ignored, so one PEM
 * file holding key and certificate can be passed as both options.
 *
 * @throws {TypeError} for encrypted keys, PKCS#12, non-RSA keys, several keys, or no key at all;
 * the message says how to convert
 */
export function _parsePrivateKeyPem(text: string, option: string): _RsaPrivateKey {
  _refuseNonPem(text, option, 'private key')
  const blocks = _pemBlocks(text, option)
  const keys = blocks.filter((b) => b.label.endsWith('PRIVATE KEY'))
  const key = keys[0]
  if (!key) {
    throw new TypeError(
      blocks.some((b) => b.label.endsWith('PUBLIC KEY'))
        ? `${option} holds a public key; pass the private key (BEGIN PRIVATE KEY) of the certificate`
        : `${option} has no PEM private key block (expected -----BEGIN PRIVATE KEY-----)`,
    )
  }
  if (keys[1]) throw new TypeError(`${option} holds ${keys.length} private keys; pass exactly one`)
  const { label, der } = key
  if (key.encrypted || label === 'ENCRYPTED PRIVATE KEY') {
    throw new TypeError(
      `${option} is encrypted, which Web Crypto cannot decrypt: convert it once with ` +
        `${_OPENSSL_NOCRYPT} and keep the result as a secret`,
    )
  }
  if (label === 'EC PRIVATE KEY') checkRsa(label, `${option} is`)
  if (label !== 'PRIVATE KEY' && label !== 'RSA PRIVATE KEY') {
    throw new TypeError(`${option} has an unsupported ${label} block; pass a PKCS#8 RSA key`)
  }
  return walk(option, 'RSA private key', () => {
    let pkcs1 = der
    if (label === 'PRIVATE KEY') {
      // PrivateKeyInfo { version, AlgorithmIdentifier { oid, ... }, OCTET STRING RSAPrivateKey }
      const seq = tlv(der, 0, 0x30)
      const alg = tlv(der, tlv(der, seq.start, 2, seq.end).end, 0x30, seq.end)
      checkRsa(oid(der, alg.start, alg.end), `${option} is`)
      const inner = tlv(der, alg.end, 4, seq.end)
      pkcs1 = der.subarray(inner.start, inner.end)
    }
    // RSAPrivateKey: SEQUENCE { version 0, n, e, d, p, q, dp, dq, qi } (two primes only).
    const seq = tlv(pkcs1, 0, 0x30)
    if (seq.end !== pkcs1.length) throw 0
    const ints = []
    for (let p = seq.start; p < seq.end; p = ints[ints.length - 1]!.end) {
      ints.push(tlv(pkcs1, p, 2, seq.end))
    }
    if (ints.length < 9 || integer(pkcs1, ints[0]!).join() !== '0') throw 0
    // PrivateKeyInfo { 0, { rsaEncryption, NULL }, OCTET STRING RSAPrivateKey }
    const pkcs8 = wrap(0x30, [
      2,
      1,
      0,
      ...wrap(0x30, [...wrap(6, RSA.match(/../g)!.map((h) => parseInt(h, 16))), 5, 0]),
      ...wrap(4, pkcs1),
    ])
    return { pkcs8: Uint8Array.from(pkcs8), modulus: integer(pkcs1, ints[1]!) }
  })
}

/** A parsed X.509 certificate: its DER and its RSA modulus. */
export interface _Certificate {
  /** The DER encoding (what thumbprints and `x5c` are computed over). */
  der: Uint8Array<ArrayBuffer>
  /** The RSA modulus of its public key, without leading zeros. */
  modulus: Uint8Array
}

/**
 * Every certificate in a PEM text, leaf first as written. Key blocks in the same text are
 * ignored.
 *
 * @throws {TypeError} for PKCS#12 input, no certificate, or a damaged or non-RSA certificate
 */
export function _parseCertificatePem(text: string, option: string): _Certificate[] {
  _refuseNonPem(text, option, 'certificate')
  const certs = _pemBlocks(text, option).filter((b) => /^(X509 )?CERTIFICATE$/.test(b.label))
  if (!certs[0]) {
    throw new TypeError(`${option} has no PEM certificate (expected -----BEGIN CERTIFICATE-----)`)
  }
  return certs.map(({ der }, i) => {
    const name = i ? `${option} (certificate ${i + 1})` : option
    return walk(name, 'X.509 certificate', () => {
      // Certificate { TBSCertificate { [0] version?, serial, signature, issuer, validity,
      // subject, SubjectPublicKeyInfo { AlgorithmIdentifier, BIT STRING RSAPublicKey } }, ... }
      const cert = tlv(der, 0, 0x30)
      if (cert.end !== der.length) throw 0
      const tbs = tlv(der, cert.start, 0x30, cert.end)
      let p = tbs.start
      if (der[p] === 0xa0) p = tlv(der, p, 0xa0, tbs.end).end
      p = tlv(der, p, 2, tbs.end).end
      for (let k = 0; k < 4; k++) p = tlv(der, p, 0x30, tbs.end).end
      const spki = tlv(der, p, 0x30, tbs.end)
      const alg = tlv(der, spki.start, 0x30, spki.end)
      checkRsa(oid(der, alg.start, alg.end), `${name} certifies`)
      const bits = tlv(der, alg.end, 3, spki.end)
      // One byte of unused bits, then RSAPublicKey { modulus, publicExponent }.
      const rsa = tlv(der, bits.start + 1, 0x30, bits.end)
      return { der, modulus: integer(der, tlv(der, rsa.start, 2, rsa.end)) }
    })
  })
}

/** Whether bytes look like a PKCS#12 `PFX` (version 3, authSafe of type pkcs7-data). */
export function _isPkcs12(der: Uint8Array): boolean {
  try {
    const seq = tlv(der, 0, 0x30)
    const version = tlv(der, seq.start, 2, seq.end)
    return integer(der, version).join() === '3' &&
      oid(der, tlv(der, version.end, 0x30, seq.end).start, seq.end) === '2a864886f70d010701'
  } catch {
    return false
  }
}

/**
 * Refuses input that is not PEM text with a message saying what it is and what to do: PKCS#12
 * bytes, base64 or binary string, bare base64, a file path, or anything else.
 */
export function _refuseNonPem(value: unknown, option: string, what: string): void {
  const text = typeof value === 'string' ? value.trim() : ''
  if (text.includes('-----BEGIN ')) return
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : value
  const b64 = /^[A-Za-z0-9+/=\s]{65,}$/.test(text)
  let der: Uint8Array | undefined = bytes instanceof Uint8Array ? bytes : undefined
  if (!der && text) {
    try {
      der = b64 ? _unb64(text) : Uint8Array.from(text, (c) => c.charCodeAt(0))
    } catch {
      // not base64 after all
    }
  }
  if (der && _isPkcs12(der)) throw new TypeError(_pfxMessage(option, b64 ? 'is a base64' : 'is a'))
  throw new TypeError(
    bytes instanceof Uint8Array
      ? `${option} must be PEM text (a string), not bytes`
      : !text
      ? `${option} must be a non-empty PEM string`
      : b64
      ? `${option} is bare base64; pass the PEM text including its -----BEGIN ...----- lines`
      : /\.(pfx|p12)$/i.test(text)
      ? _pfxMessage(option, 'looks like the path of a')
      : /^[^\n]*[/\\][^\n]*$|\.(pem|crt|cer|key)$/i.test(text)
      ? `${option} looks like a file path; pass the PEM text of the ${what} itself (read the ` +
        'file first), or use servicePrincipalFromEnvironment() with AZURE_CLIENT_CERTIFICATE_PATH'
      : `${option} is not PEM text (no -----BEGIN ...----- line)`,
  )
}

/** Whether two moduli are equal (public values: no constant-time need). */
export function _sameModulus(a: Uint8Array, b: Uint8Array): boolean {
  return _hex(a) === _hex(b)
}

/** Bit length of a modulus. */
export function _modulusBits(m: Uint8Array): number {
  return m.length * 8 - Math.clz32(m[0]!) + 24
}
