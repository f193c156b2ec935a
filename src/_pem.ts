// PEM and DER for certificate credentials, without Node: PEM block parsing, the few ASN.1 (DER)
// structures a client assertion needs (PKCS#8 and PKCS#1 RSA keys, the public key of an X.509
// certificate), PKCS#1 -> PKCS#8 wrapping for Web Crypto, recognition of what Web Crypto cannot
// import (encrypted keys, PKCS#12), and a synchronous SHA-256 so that certificate thumbprints and
// secret fingerprints are known at construction, before any await. Every parse error is a
// TypeError that names the option and never quotes key material.
import { _b64url, _hex, _unb64 } from './jwt.ts'

export { _hex }

/** One `-----BEGIN <label>-----` block. */
export interface _PemBlock {
  /** The label, e.g. `CERTIFICATE`, `PRIVATE KEY`. */
  label: string
  /** RFC 1421 headers (`Proc-Type`, `DEK-Info`) of legacy encrypted PEM. */
  headers: Record<string, string>
  /** The decoded body. */
  der: Uint8Array<ArrayBuffer>
}

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g

const CONVERT_ENCRYPTED =
  'Web Crypto cannot decrypt keys; convert it once to an unencrypted PKCS#8 key with ' +
  '`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.unencrypted.pem` and keep the result as a ' +
  'secret (a Worker secret, a vault)'

const CONVERT_PFX = 'PKCS#12 (PFX) files are not supported; convert it once to PEM with ' +
  '`openssl pkcs12 -in cert.pfx -nodes -out cert.pem` (add `-legacy` for old RC2-encrypted files), ' +
  'then pass the PRIVATE KEY block as privateKey and the CERTIFICATE block(s) as certificate'

/**
 * Every PEM block in a text, in order. Text outside blocks is ignored (OpenSSL's `Bag
 * Attributes` lines, comments).
 *
 * @throws {TypeError} when a block's body is not base64
 */
export function _pemBlocks(text: string, option: string): _PemBlock[] {
  const out: _PemBlock[] = []
  for (const m of text.matchAll(BLOCK_RE)) {
    const label = m[1]!
    const headers: Record<string, string> = {}
    const lines = m[2]!.split(/\r?\n/)
    const body: string[] = []
    let inHeaders = true
    for (const raw of lines) {
      const line = raw.trim()
      if (inHeaders && /^[A-Za-z-]+:/.test(line)) {
        const i = line.indexOf(':')
        headers[line.slice(0, i)] = line.slice(i + 1).trim()
        continue
      }
      if (line !== '') inHeaders = false
      body.push(line)
    }
    const b64 = body.join('')
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 === 1) {
      throw new TypeError(`${option} has a ${label} block whose body is not base64`)
    }
    let der: Uint8Array<ArrayBuffer>
    try {
      der = _unb64(b64)
    } catch {
      throw new TypeError(`${option} has a ${label} block whose body is not base64`)
    }
    if (der.length === 0) throw new TypeError(`${option} has an empty ${label} block`)
    out.push({ label, headers, der })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Minimal DER reader: definite lengths, single-byte tags (all the structures below need).

/** One DER element: tag, content range, and where the next sibling starts. */
export interface _Tlv {
  /** The tag byte (0x30 SEQUENCE, 0x02 INTEGER, 0x04 OCTET STRING, ...). */
  tag: number
  /** First content byte. */
  start: number
  /** One past the last content byte. */
  end: number
}

/** Reads the element at `pos`; throws a plain Error on malformed input (callers rethrow). */
export function _readTlv(buf: Uint8Array, pos: number, limit: number = buf.length): _Tlv {
  if (pos + 2 > limit) throw new Error('truncated')
  const tag = buf[pos]!
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-byte tag')
  let len = buf[pos + 1]!
  let start = pos + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || start + n > limit) throw new Error('bad length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!
    start += n
  }
  const end = start + len
  if (end > limit) throw new Error('truncated')
  return { tag, start, end }
}

function expect(buf: Uint8Array, pos: number, tag: number, limit: number): _Tlv {
  const t = _readTlv(buf, pos, limit)
  if (t.tag !== tag) throw new Error(`expected tag ${tag}`)
  return t
}

function encodeLength(n: number): number[] {
  if (n < 0x80) return [n]
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return [0x80 | bytes.length, ...bytes]
}

function tlv(tag: number, content: Uint8Array): Uint8Array<ArrayBuffer> {
  const head = [tag, ...encodeLength(content.length)]
  const out = new Uint8Array(head.length + content.length)
  out.set(head, 0)
  out.set(content, head.length)
  return out
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}

function oidText(buf: Uint8Array, t: _Tlv): string {
  const parts: number[] = []
  let v = 0
  for (let i = t.start; i < t.end; i++) {
    v = v * 128 + (buf[i]! & 0x7f)
    if (!(buf[i]! & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80)
      else parts.push(v)
      v = 0
    }
  }
  return parts.join('.')
}

const OID_RSA = '1.2.840.113549.1.1.1'
const OID_RSA_PSS = '1.2.840.113549.1.1.10'
const OID_EC = '1.2.840.10045.2.1'
const OID_PKCS7_DATA = '1.2.840.113549.1.7.1'
/** AlgorithmIdentifier { rsaEncryption, NULL }. */
const RSA_ALG_ID = /* @__PURE__ */ new Uint8Array([
  0x30,
  0x0d,
  0x06,
  0x09,
  0x2a,
  0x86,
  0x48,
  0x86,
  0xf7,
  0x0d,
  0x01,
  0x01,
  0x01,
  0x05,
  0x00,
])

function keyAlgorithmName(oid: string): string {
  if (oid === OID_EC) return 'an EC key'
  if (oid === '1.3.101.112') return 'an Ed25519 key'
  if (oid === '1.3.101.113') return 'an Ed448 key'
  return `a key of algorithm ${oid}`
}

function stripZeros(buf: Uint8Array, t: _Tlv): Uint8Array {
  let s = t.start
  while (s < t.end - 1 && buf[s] === 0) s++
  return buf.subarray(s, t.end)
}

/** An RSA private key in the form Web Crypto imports, plus its modulus for matching. */
export interface _RsaPrivateKey {
  /** PKCS#8 DER with the rsaEncryption algorithm identifier. */
  pkcs8: Uint8Array<ArrayBuffer>
  /** The modulus, without leading zero bytes. */
  modulus: Uint8Array
}

/**
 * Reads a PKCS#1 `RSAPrivateKey` (SEQUENCE of nine INTEGERs, version 0) and wraps it as PKCS#8.
 */
function fromRsaPrivateKey(buf: Uint8Array): _RsaPrivateKey {
  const seq = expect(buf, 0, 0x30, buf.length)
  if (seq.end !== buf.length) throw new Error('trailing bytes')
  let pos = seq.start
  const ints: _Tlv[] = []
  while (pos < seq.end) {
    const t = expect(buf, pos, 0x02, seq.end)
    ints.push(t)
    pos = t.end
  }
  if (ints.length < 9) throw new Error('not an RSAPrivateKey')
  const version = stripZeros(buf, ints[0]!)
  if (version.length !== 1 || version[0] !== 0) {
    throw new Error('multi-prime RSA keys are not supported')
  }
  const pkcs8 = tlv(
    0x30,
    concat(new Uint8Array([0x02, 0x01, 0x00]), RSA_ALG_ID, tlv(0x04, buf)),
  )
  return { pkcs8, modulus: stripZeros(buf, ints[1]!) }
}

/**
 * Reads an unencrypted PKCS#8 `PrivateKeyInfo`. RSA keys (rsaEncryption or RSASSA-PSS
 * identifiers) are re-wrapped with the rsaEncryption identifier, which every Web Crypto accepts
 * for RSA-PSS; other algorithms are refused (Entra accepts RSA certificates only).
 */
function fromPkcs8(buf: Uint8Array, option: string): _RsaPrivateKey {
  let alg: string
  let inner: Uint8Array
  try {
    const seq = expect(buf, 0, 0x30, buf.length)
    const version = expect(buf, seq.start, 0x02, seq.end)
    const algId = expect(buf, version.end, 0x30, seq.end)
    const oid = expect(buf, algId.start, 0x06, algId.end)
    alg = oidText(buf, oid)
    const key = expect(buf, algId.end, 0x04, seq.end)
    inner = buf.subarray(key.start, key.end)
  } catch {
    throw new TypeError(
      `${option} is not a valid PKCS#8 private key (the PRIVATE KEY block is damaged)`,
    )
  }
  if (alg !== OID_RSA && alg !== OID_RSA_PSS) {
    throw new TypeError(
      `${option} is ${keyAlgorithmName(alg)}; Microsoft Entra ID accepts RSA certificates only`,
    )
  }
  try {
    return fromRsaPrivateKey(inner)
  } catch {
    throw new TypeError(`${option} is not a valid RSA private key (the key structure is damaged)`)
  }
}

/**
 * The RSA private key in a PEM text: `BEGIN PRIVATE KEY` (PKCS#8) or `BEGIN RSA PRIVATE KEY`
 * (PKCS#1, wrapped into PKCS#8 here). Certificates in the same text are ignored, so one PEM file
 * holding key and certificate can be passed as both options.
 *
 * @throws {TypeError} for encrypted keys, PKCS#12, EC keys, several keys, or no key at all; the
 * message says how to convert
 */
export function _parsePrivateKeyPem(text: string, option: string): _RsaPrivateKey {
  _refuseNonPem(text, option, 'private key')
  const blocks = _pemBlocks(text, option)
  const keys = blocks.filter((b) => b.label.endsWith('PRIVATE KEY'))
  if (keys.length === 0) {
    const pub = blocks.some((b) => b.label === 'PUBLIC KEY' || b.label === 'RSA PUBLIC KEY')
    throw new TypeError(
      pub
        ? `${option} holds a public key; pass the private key (BEGIN PRIVATE KEY) of the certificate`
        : `${option} has no PEM private key block (expected -----BEGIN PRIVATE KEY-----)`,
    )
  }
  if (keys.length > 1) {
    throw new TypeError(`${option} holds ${keys.length} private keys; pass exactly one`)
  }
  const key = keys[0]!
  if (key.label === 'ENCRYPTED PRIVATE KEY' || /ENCRYPTED/i.test(key.headers['Proc-Type'] ?? '')) {
    throw new TypeError(`${option} is encrypted. ${CONVERT_ENCRYPTED}`)
  }
  if (key.label === 'PRIVATE KEY') return fromPkcs8(key.der, option)
  if (key.label === 'RSA PRIVATE KEY') {
    try {
      return fromRsaPrivateKey(key.der)
    } catch {
      throw new TypeError(`${option} is not a valid PKCS#1 RSA private key (the block is damaged)`)
    }
  }
  if (key.label === 'EC PRIVATE KEY') {
    throw new TypeError(`${option} is an EC key; Microsoft Entra ID accepts RSA certificates only`)
  }
  throw new TypeError(`${option} has an unsupported ${key.label} block; pass a PKCS#8 RSA key`)
}

/** A parsed X.509 certificate: its DER and its RSA modulus. */
export interface _Certificate {
  /** The DER encoding (what thumbprints and `x5c` are computed over). */
  der: Uint8Array<ArrayBuffer>
  /** The RSA modulus of its public key, without leading zeros. */
  modulus: Uint8Array
}

/** The RSA modulus of a certificate's SubjectPublicKeyInfo. */
function certModulus(der: Uint8Array, option: string): Uint8Array {
  let alg: string
  let spkiBits: _Tlv
  try {
    const cert = expect(der, 0, 0x30, der.length)
    if (cert.end !== der.length) throw new Error('trailing bytes')
    const tbs = expect(der, cert.start, 0x30, cert.end)
    let pos = tbs.start
    if (_readTlv(der, pos, tbs.end).tag === 0xa0) pos = _readTlv(der, pos, tbs.end).end // [0] version
    pos = expect(der, pos, 0x02, tbs.end).end // serialNumber
    for (let i = 0; i < 4; i++) pos = expect(der, pos, 0x30, tbs.end).end // sig, issuer, validity, subject
    const spki = expect(der, pos, 0x30, tbs.end)
    const algId = expect(der, spki.start, 0x30, spki.end)
    alg = oidText(der, expect(der, algId.start, 0x06, algId.end))
    spkiBits = expect(der, algId.end, 0x03, spki.end)
  } catch {
    throw new TypeError(
      `${option} is not a valid X.509 certificate (the CERTIFICATE block is damaged)`,
    )
  }
  if (alg !== OID_RSA && alg !== OID_RSA_PSS) {
    throw new TypeError(
      `${option} certifies ${
        keyAlgorithmName(alg)
      }; Microsoft Entra ID accepts RSA certificates only`,
    )
  }
  try {
    // BIT STRING: one byte of unused bits, then RSAPublicKey { modulus, publicExponent }.
    const body = der.subarray(spkiBits.start + 1, spkiBits.end)
    const seq = expect(body, 0, 0x30, body.length)
    return stripZeros(body, expect(body, seq.start, 0x02, seq.end))
  } catch {
    throw new TypeError(`${option} has a damaged RSA public key`)
  }
}

/**
 * Every certificate in a PEM text, leaf first as written. Key blocks in the same text are
 * ignored.
 *
 * @throws {TypeError} for PKCS#12 input, no certificate, or a damaged or non-RSA certificate
 */
export function _parseCertificatePem(text: string, option: string): _Certificate[] {
  _refuseNonPem(text, option, 'certificate')
  const certs = _pemBlocks(text, option).filter((b) =>
    b.label === 'CERTIFICATE' || b.label === 'X509 CERTIFICATE'
  )
  if (certs.length === 0) {
    throw new TypeError(`${option} has no PEM certificate (expected -----BEGIN CERTIFICATE-----)`)
  }
  return certs.map((c, i) => ({
    der: c.der,
    modulus: certModulus(c.der, i === 0 ? option : `${option} (certificate ${i + 1})`),
  }))
}

/** Whether bytes look like a PKCS#12 `PFX` (version 3, authSafe of type pkcs7-data). */
export function _isPkcs12(der: Uint8Array): boolean {
  try {
    const seq = expect(der, 0, 0x30, der.length)
    const version = expect(der, seq.start, 0x02, seq.end)
    if (version.end - version.start !== 1 || der[version.start] !== 3) return false
    const authSafe = expect(der, version.end, 0x30, seq.end)
    return oidText(der, expect(der, authSafe.start, 0x06, authSafe.end)) === OID_PKCS7_DATA
  } catch {
    return false
  }
}

/**
 * Refuses input that is not PEM text with a message saying what it is and what to do: PKCS#12
 * bytes or base64, a file path, or anything else.
 */
export function _refuseNonPem(value: unknown, option: string, what: string): void {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
    const bytes = value instanceof Uint8Array ? value : new Uint8Array(value)
    if (_isPkcs12(bytes)) throw new TypeError(`${option} is a PKCS#12 (PFX) file. ${CONVERT_PFX}`)
    throw new TypeError(`${option} must be PEM text (a string), not bytes`)
  }
  if (typeof value !== 'string' || value.trim() === '') {
    throw new TypeError(`${option} must be a non-empty PEM string`)
  }
  if (value.includes('-----BEGIN ')) return
  const t = value.trim()
  if (/^[A-Za-z0-9+/=\s]+$/.test(t) && t.length > 64) {
    let der: Uint8Array | undefined
    try {
      der = _unb64(t)
    } catch {
      der = undefined
    }
    if (der && _isPkcs12(der)) {
      throw new TypeError(`${option} is a base64 PKCS#12 (PFX) file. ${CONVERT_PFX}`)
    }
    throw new TypeError(
      `${option} is bare base64; pass the PEM text including its -----BEGIN ...----- lines`,
    )
  }
  const binary = new Uint8Array(Math.min(t.length, 4096))
  for (let i = 0; i < binary.length; i++) binary[i] = t.charCodeAt(i) & 0xff
  if (t.charCodeAt(0) === 0x30 && _isPkcs12(binary)) {
    throw new TypeError(`${option} is a PKCS#12 (PFX) file. ${CONVERT_PFX}`)
  }
  if (/\.(pfx|p12)$/i.test(t)) {
    throw new TypeError(`${option} looks like the path of a PKCS#12 file. ${CONVERT_PFX}`)
  }
  if (/^[^\n]*[/\\][^\n]*$|\.(pem|crt|cer|key)$/i.test(t)) {
    throw new TypeError(
      `${option} looks like a file path; pass the PEM text of the ${what} itself (read the file ` +
        'first), or use ServicePrincipalAuthentication.fromEnvironment with ' +
        'AZURE_CLIENT_CERTIFICATE_PATH',
    )
  }
  throw new TypeError(`${option} is not PEM text (no -----BEGIN ...----- line)`)
}

/** Whether two moduli are equal (public values: no constant-time need). */
export function _sameModulus(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Bit length of a modulus. */
export function _modulusBits(m: Uint8Array): number {
  return m.length === 0 ? 0 : (m.length - 1) * 8 + (32 - Math.clz32(m[0]!))
}

// ---------------------------------------------------------------------------------------------
// Synchronous SHA-256 (FIPS 180-4), for thumbprints and fingerprints needed before any await.

/**
 * The initial hash values and round constants, derived as FIPS 180-4 defines them (the first 32
 * bits of the fractional parts of the square roots of the first 8 primes and of the cube roots of
 * the first 64 primes) instead of a literal table; the test compares with Web Crypto.
 */
let constants: { h: number[]; k: Uint32Array } | undefined

function sha256Constants(): { h: number[]; k: Uint32Array } {
  if (constants !== undefined) return constants
  const h: number[] = []
  const k = new Uint32Array(64)
  for (let n = 2, i = 0; i < 64; n++) {
    let prime = true
    for (let d = 2; d * d <= n; d++) if (n % d === 0) prime = false
    if (!prime) continue
    // frac * 2^32, truncated: the integer part stays below 2^53, so `| 0` keeps the low 32 bits.
    if (i < 8) h.push((n ** (1 / 2) * 2 ** 32) | 0)
    k[i++] = (n ** (1 / 3) * 2 ** 32) | 0
  }
  return constants = { h, k }
}

/** SHA-256 of bytes or a UTF-8 string, computed synchronously. */
export function _sha256(input: Uint8Array | string): Uint8Array<ArrayBuffer> {
  const { h: h0, k: K } = sha256Constants()
  const data = typeof input === 'string' ? new TextEncoder().encode(input) : input
  const bitLen = data.length * 8
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6)
  padded.set(data)
  padded[data.length] = 0x80
  const view = new DataView(padded.buffer)
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000))
  view.setUint32(padded.length - 4, bitLen >>> 0)
  const h = new Uint32Array(h0)
  const w = new Uint32Array(64)
  const rotr = (x: number, n: number): number => (x >>> n) | (x << (32 - n))
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 64; i++) {
      if (i < 16) w[i] = view.getUint32(off + i * 4)
      else {
        const a = w[i - 15]!
        const b = w[i - 2]!
        w[i] = w[i - 16]! + (rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3)) + w[i - 7]! +
          (rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10))
      }
    }
    const v = [...h]
    for (let i = 0; i < 64; i++) {
      const [a, b, c, d, e, f, g, hh] = v as [
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
      ]
      const t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i]! +
        w[i]!
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
      v.pop()
      v.unshift((t1 + t2) | 0)
      v[4] = (d + t1) | 0
    }
    for (let i = 0; i < 8; i++) h[i] = h[i]! + v[i]!
  }
  const out = new Uint8Array(32)
  const ov = new DataView(out.buffer)
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]!)
  return out
}

/** `x5t#S256`: base64url of the SHA-256 of a certificate's DER. */
export function _thumbprintS256(certDer: Uint8Array): string {
  return _b64url(_sha256(certDer))
}
