// How a confidential client proves itself to Microsoft Entra ID, as strategy values in the style
// of oauth4webapi's `ClientAuth`: each keeps its secret (a client secret, a private key, an
// assertion callback) in a closure and only writes it into a token request's form. Nothing here
// is a public field, so no secret can reach `JSON.stringify`, `Deno.inspect` or an error.
//
// Certificate assertions are signed with Web Crypto alone (RSA-PSS, SHA-256, salt 32 = PS256):
// the key is imported once, lazily, and a signed assertion is reused until 60 s before it expires
// (per token endpoint, since a per-call tenant changes `aud`).
import { CredentialUnavailableError } from './errors.ts'
import type { FileReader } from './env.ts'
import { JWT_BEARER_ASSERTION } from './_entra.ts'
import { _b64, _b64url, _hex } from './jwt.ts'
import {
  _modulusBits,
  _parseCertificatePem,
  _parsePrivateKeyPem,
  _refuseNonPem,
  _sameModulus,
  _sha256,
  _thumbprintS256,
} from './_pem.ts'

/** What a strategy needs to know about the request it authenticates. */
export interface _ClientAuthContext {
  /** The token endpoint URL (the `aud` of a certificate assertion). */
  tokenEndpoint: string
  /** The client id (`iss` and `sub` of a certificate assertion). */
  clientId: string
  /** Clock, epoch ms. */
  now: () => number
}

/** The kinds of client credential. */
export type _ClientAuthKind = 'secret' | 'certificate' | 'clientAssertion' | 'federatedTokenFile'

/** A client authentication strategy. */
export interface _ClientAuth {
  /** Which kind of credential. */
  readonly kind: _ClientAuthKind
  /**
   * Distinguishes different credentials of one client without revealing them (a truncated
   * SHA-256 of the secret, the certificate thumbprint, a unique id for callbacks).
   */
  readonly fingerprint: string
  /**
   * Adds the client authentication fields to a token request's form; `fresh` asks for a newly
   * signed assertion (the retry after a refused reused one).
   */
  apply(
    form: Record<string, string | undefined>,
    ctx: _ClientAuthContext,
    fresh?: boolean,
  ): Promise<void>
  /**
   * The server refused a request that carried `assertion`: forget it if it is cached. Returns
   * true when it had been sent before (a server that enforces single-use `jti` refuses reuse), so
   * that one retry with a freshly signed assertion can succeed.
   */
  refused?(assertion: string | undefined, ctx: _ClientAuthContext): boolean
}

let uniqueIds = 0

/** 64 bits of a domain-separated SHA-256 of a value, as hex: identifies it, never reveals it. */
function fingerprintOf(domain: string, value: string): string {
  return _hex(_sha256('aml-edge-auth/' + domain + '\0' + value).subarray(0, 8))
}

/** A fingerprint of a secret: 64 bits of a domain-separated SHA-256, never the secret. */
export function _secretFingerprint(secret: string): string {
  return fingerprintOf('client-secret', secret)
}

/**
 * `client_secret` authentication.
 *
 * @param secret the client secret (checked non-empty by the caller)
 */
export function _secretAuth(secret: string): _ClientAuth {
  const fingerprint = 's:' + _secretFingerprint(secret)
  return Object.freeze({
    kind: 'secret' as const,
    fingerprint,
    apply(form: Record<string, string | undefined>): Promise<void> {
      form.client_secret = secret
      return Promise.resolve()
    },
  })
}

/**
 * `client_assertion` from a callback (federated credentials): called for every upstream token
 * request; the result must be a non-empty string.
 *
 * @param callback returns the assertion (a JWT)
 * @param option the option name for messages
 * @param kind `clientAssertion` or `federatedTokenFile`
 * @param fingerprint a fingerprint when the source can be shared (a file path), else unique
 */
export function _assertionAuth(
  callback: () => string | Promise<string>,
  option: string,
  kind: 'clientAssertion' | 'federatedTokenFile' = 'clientAssertion',
  fingerprint: string = 'a:' + ++uniqueIds,
): _ClientAuth {
  return Object.freeze({
    kind,
    fingerprint,
    async apply(form: Record<string, string | undefined>): Promise<void> {
      let value: unknown
      try {
        value = await callback()
      } catch (e) {
        if (e instanceof CredentialUnavailableError) throw e
        throw new CredentialUnavailableError(
          `${option} failed (${e instanceof Error ? e.name : typeof e}); see the cause`,
          { cause: e },
        )
      }
      if (typeof value !== 'string') {
        throw new CredentialUnavailableError(
          `${option} returned ${value === null ? 'null' : typeof value}; it must return the ` +
            'federated token (a JWT) as a string',
        )
      }
      const assertion = value.trim()
      if (assertion === '') {
        throw new CredentialUnavailableError(
          `${option} returned an empty string; it must return the federated token (a JWT)`,
        )
      }
      form.client_assertion_type = JWT_BEARER_ASSERTION
      form.client_assertion = assertion
    },
  })
}

/**
 * A federated token read from a file (Kubernetes workload identity): re-read when the cached
 * content is older than 5 minutes (kubelet rotates the projected token at 80 % of its life), and
 * trimmed; an empty file is an error.
 *
 * @param path the file, e.g. `AZURE_FEDERATED_TOKEN_FILE`
 * @param readFile the file reader
 * @param now the credential's clock
 * @param option the option or variable name for messages
 */
export function _federatedTokenFileAuth(
  path: string,
  readFile: FileReader,
  now: () => number,
  option: string,
): _ClientAuth {
  const maxAgeMs = 5 * 60_000
  let cached: { value: string; readAt: number } | undefined
  const read = async (): Promise<string> => {
    const t = now()
    if (cached !== undefined && t - cached.readAt < maxAgeMs) return cached.value
    let text: string
    try {
      text = await readFile(path)
    } catch (e) {
      throw new CredentialUnavailableError(
        `Cannot read the federated token file named by ${option}; check the path and that the ` +
          'service account token is projected into this pod',
        { cause: e },
      )
    }
    const value = typeof text === 'string' ? text.trim() : ''
    if (value === '') {
      throw new CredentialUnavailableError(
        `The federated token file named by ${option} is empty; check the token projection`,
      )
    }
    cached = { value, readAt: t }
    return value
  }
  const fingerprint = 'w:' + fingerprintOf('token-file', path)
  return _assertionAuth(read, `Reading ${option}`, 'federatedTokenFile', fingerprint)
}

/** The certificate option of a service principal. */
export interface CertificateCredential {
  /** The private key: PKCS#8 PEM (`BEGIN PRIVATE KEY`), PKCS#1 PEM, or an RSA-PSS `CryptoKey`. */
  privateKey: string | CryptoKey
  /** The certificate PEM; a chain is allowed (leaf first). */
  certificate: string
  /** Send the chain as `x5c` (needed for subject name / issuer authentication). */
  sendCertificateChain?: boolean
}

/** Everything a certificate assertion needs, parsed synchronously. */
interface CertMaterial {
  /** Imports (or re-imports) the signing key; called once. */
  importKey: () => Promise<CryptoKey>
  /** `x5t#S256` of the first certificate. */
  thumbprint: string
  /** Standard base64 DER of every certificate. */
  chain: string[]
  /** Fingerprint for the cache identity. */
  fingerprint: string
}

const PSS: RsaHashedImportParams = { name: 'RSA-PSS', hash: 'SHA-256' }
const keyIds = new WeakMap<CryptoKey, number>()

function isCryptoKey(value: unknown): value is CryptoKey {
  const C = (globalThis as { CryptoKey?: abstract new () => CryptoKey }).CryptoKey
  return C !== undefined && value instanceof C
}

/**
 * Parses a certificate credential synchronously: PEM blocks, key/certificate match, thumbprint.
 *
 * @throws {TypeError} naming the option for anything that cannot work
 */
export function _parseCertificateCredential(
  input: CertificateCredential,
  option: string,
  names: { key: string; cert: string } = {
    key: `${option}.privateKey`,
    cert: `${option}.certificate`,
  },
): CertMaterial {
  if (input === null || typeof input !== 'object') {
    throw new TypeError(`${option} must be an object { privateKey, certificate }`)
  }
  const certs = _parseCertificatePem(input.certificate, names.cert)
  const leaf = certs[0]!
  const thumbprint = _thumbprintS256(leaf.der)
  const chain = certs.map((c) => _b64(c.der))
  const key = input.privateKey
  if (isCryptoKey(key)) {
    const alg = key.algorithm as Partial<RsaHashedKeyAlgorithm>
    if (key.type !== 'private') {
      throw new TypeError(`${names.key} must be a private key, not a ${key.type} key`)
    }
    if (!String(alg.name).startsWith('RSA')) {
      throw new TypeError(
        `${names.key} is a ${alg.name} key; Microsoft Entra ID accepts RSA certificates only`,
      )
    }
    if (alg.modulusLength !== undefined && alg.modulusLength !== _modulusBits(leaf.modulus)) {
      throw new TypeError(
        `${names.key} does not belong to ${names.cert} (key sizes differ)`,
      )
    }
    const hash = typeof alg.hash === 'string' ? alg.hash : alg.hash?.name
    const ready = alg.name === 'RSA-PSS' && hash === 'SHA-256' && key.usages.includes('sign')
    if (!ready && !key.extractable) {
      throw new TypeError(
        `${names.key} must be an RSA-PSS SHA-256 signing key: import it with ` +
          "{ name: 'RSA-PSS', hash: 'SHA-256' } and usages ['sign'] (or make it extractable)",
      )
    }
    let id = keyIds.get(key)
    if (id === undefined) keyIds.set(key, id = ++uniqueIds)
    return {
      thumbprint,
      chain,
      fingerprint: `c:${thumbprint}:k${id}`,
      importKey: ready ? () => Promise.resolve(key) : async () => {
        const der = await crypto.subtle.exportKey('pkcs8', key)
        return await crypto.subtle.importKey('pkcs8', der, PSS, false, ['sign'])
      },
    }
  }
  if (typeof key !== 'string') _refuseNonPem(key, `${names.key}`, 'private key')
  const rsa = _parsePrivateKeyPem(key as string, `${names.key}`)
  if (!_sameModulus(rsa.modulus, leaf.modulus)) {
    throw new TypeError(
      `${names.key} does not belong to the first certificate of ${names.cert}; ` +
        'pass the key of that certificate (with a chain, the leaf certificate must come first)',
    )
  }
  let der: Uint8Array<ArrayBuffer> | undefined = rsa.pkcs8
  return {
    thumbprint,
    chain,
    fingerprint: `c:${thumbprint}`,
    importKey: async () => {
      if (der === undefined) throw new Error('the key was already imported')
      const key = await crypto.subtle.importKey('pkcs8', der, PSS, false, ['sign'])
      // The credential keeps only the non-extractable CryptoKey from now on.
      der.fill(0)
      der = undefined
      return key
    },
  }
}

const ASSERTION_LIFETIME_S = 600
const REUSE_MARGIN_MS = 60_000
const MAX_CACHED_ASSERTIONS = 16

/**
 * Signs PS256 client assertions for a certificate: header `{ alg, typ, x5t#S256[, x5c] }`, claims
 * `aud` = token endpoint, `iss` = `sub` = client id, `jti`, `nbf` = `iat` = now, `exp` = now + 600.
 * The key is imported once (on first use); an assertion is reused per endpoint until 60 s before
 * it expires.
 *
 * @param material the parsed certificate, or a loader that reads and parses it on first use
 * @param sendChain add `x5c`
 * @param fingerprint the fingerprint, when `material` is a loader
 */
export function _certificateAuth(
  material: CertMaterial | (() => Promise<CertMaterial>),
  sendChain: boolean,
  fingerprint?: string,
): _ClientAuth {
  let ready: Promise<{ key: CryptoKey; header: string }> | undefined
  const assertions = new Map<
    string,
    { jwt: Promise<string>; reuseUntil: number; value?: string; uses: number }
  >()

  const prepare = (): Promise<{ key: CryptoKey; header: string }> => {
    if (ready !== undefined) return ready
    const p = (async () => {
      const m = typeof material === 'function' ? await material() : material
      let key: CryptoKey
      try {
        key = await m.importKey()
      } catch (e) {
        throw new CredentialUnavailableError(
          'Web Crypto could not import the certificate private key as an RSA-PSS signing key; ' +
            'pass an unencrypted PKCS#8 RSA key (the cause names the Web Crypto error)',
          { cause: e instanceof Error ? new Error(e.name) : undefined },
        )
      }
      const header: Record<string, unknown> = { alg: 'PS256', typ: 'JWT', 'x5t#S256': m.thumbprint }
      if (sendChain) header.x5c = m.chain
      return { key, header: _b64url(JSON.stringify(header)) }
    })()
    ready = p
    // A failure (an unreadable file) is not kept: the next request tries again.
    p.catch(() => {
      if (ready === p) ready = undefined
    })
    return p
  }

  const sign = async (ctx: _ClientAuthContext, nowMs: number): Promise<string> => {
    const { key, header } = await prepare()
    const now = Math.floor(nowMs / 1000)
    const claims = {
      aud: ctx.tokenEndpoint,
      iss: ctx.clientId,
      sub: ctx.clientId,
      jti: crypto.randomUUID(),
      nbf: now,
      iat: now,
      exp: now + ASSERTION_LIFETIME_S,
    }
    const input = header + '.' + _b64url(JSON.stringify(claims))
    const sig = await crypto.subtle.sign(
      { name: 'RSA-PSS', saltLength: 32 },
      key,
      new TextEncoder().encode(input),
    )
    return input + '.' + _b64url(sig)
  }

  const auth = {
    kind: 'certificate' as const,
    fingerprint: fingerprint ?? (material as CertMaterial).fingerprint,
    async apply(
      form: Record<string, string | undefined>,
      ctx: _ClientAuthContext,
      fresh = false,
    ): Promise<void> {
      const nowMs = ctx.now()
      const cacheKey = ctx.clientId + ' ' + ctx.tokenEndpoint
      let entry = assertions.get(cacheKey)
      if (entry === undefined || fresh || nowMs >= entry.reuseUntil) {
        if (assertions.size >= MAX_CACHED_ASSERTIONS) {
          for (const [k, v] of assertions) if (nowMs >= v.reuseUntil) assertions.delete(k)
          if (assertions.size >= MAX_CACHED_ASSERTIONS) {
            assertions.delete(assertions.keys().next().value!)
          }
        }
        const jwt = sign(ctx, nowMs)
        const created: typeof entry = {
          jwt,
          reuseUntil: Math.floor(nowMs / 1000) * 1000 + ASSERTION_LIFETIME_S * 1000 -
            REUSE_MARGIN_MS,
          uses: 0,
        }
        entry = created
        assertions.set(cacheKey, created)
        jwt.then((v) => {
          created.value = v
        }, () => {
          if (assertions.get(cacheKey) === created) assertions.delete(cacheKey)
        })
      }
      entry.uses++
      form.client_assertion_type = JWT_BEARER_ASSERTION
      form.client_assertion = await entry.jwt
    },
    refused(assertion: string | undefined, ctx: _ClientAuthContext): boolean {
      const cacheKey = ctx.clientId + ' ' + ctx.tokenEndpoint
      const entry = assertions.get(cacheKey)
      if (assertion === undefined) return false
      if (entry !== undefined && entry.value === assertion) {
        assertions.delete(cacheKey)
        return entry.uses > 1
      }
      // Already replaced (a concurrent refusal, or it aged out): a fresh one is worth one try.
      return true
    },
  }
  return Object.freeze(auth)
}

/**
 * A certificate credential read from a PEM file (key and certificate(s) in one file) on first
 * use, then handled like {@linkcode _certificateAuth}. A failed read is retried on the next
 * request.
 *
 * @param path the PEM file
 * @param readFile the file reader
 * @param sendChain add `x5c`
 * @param option the variable name for messages
 */
export function _certificateFileAuth(
  path: string,
  readFile: FileReader,
  sendChain: boolean,
  option: string,
): _ClientAuth {
  const load = async (): Promise<CertMaterial> => {
    let text: string
    try {
      text = await readFile(path)
    } catch (e) {
      throw new CredentialUnavailableError(
        `Cannot read the certificate file named by ${option}; check the path and permissions`,
        { cause: e },
      )
    }
    try {
      return _parseCertificateCredential({ privateKey: text, certificate: text }, option, {
        key: `The private key in ${option}`,
        cert: `The certificate in ${option}`,
      })
    } catch (e) {
      throw new CredentialUnavailableError(
        `The PEM file named by ${option} is unusable: ${(e as Error).message}`,
      )
    }
  }
  const fingerprint = 'f:' + fingerprintOf('cert-file', path)
  return _certificateAuth(load, sendChain, fingerprint)
}
