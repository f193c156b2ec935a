/**
 * `clientCertificate()`: the certificate credential of a service principal, as a strategy value.
 * The key and certificate are parsed and checked when it is made; the service principal signs a
 * PS256 client assertion with Web Crypto alone (so it runs on Cloudflare Workers too). Kept out of
 * `ServicePrincipalAuthentication` so that a secret-based credential does not carry the PEM and
 * DER code.
 *
 * @module
 */
import { AuthenticationError, CredentialUnavailableError } from '../errors.ts'
import type { FileReader } from '../env.ts'
import { type EntraAdviceTable, JWT_BEARER_ASSERTION } from '../_entra.ts'
import { _b64, _b64url } from '../jwt.ts'
import { _certificates, type _ClientAuth, type _ClientAuthContext } from '../_client_auth.ts'
import { _modulusBits, _parseCertificatePem, _parsePrivateKeyPem, _sameModulus } from '../_pem.ts'

/** The input of {@linkcode clientCertificate}. */
export interface ClientCertificateInput {
  /** The private key: PKCS#8 PEM (`BEGIN PRIVATE KEY`), PKCS#1 PEM, or an RSA-PSS `CryptoKey`. */
  privateKey: string | CryptoKey
  /** The certificate PEM; a chain is allowed (leaf first). */
  certificate: string
  /** Send the chain as `x5c` (needed for subject name / issuer authentication). */
  sendCertificateChain?: boolean
}

/**
 * A certificate credential made by {@linkcode clientCertificate}, for the `certificate` option of
 * `ServicePrincipalAuthentication`. Opaque: the key stays in a closure, and a plain object of the
 * same shape is refused.
 */
export interface ClientCertificate {
  /** Always `certificate`. */
  readonly kind: 'certificate'
}

/** Everything a certificate assertion needs, parsed synchronously. */
interface CertMaterial {
  /** Imports the signing key; called until it succeeds once. */
  importKey: () => Promise<CryptoKey>
  /** DER of the first (leaf) certificate, for `x5t#S256`. */
  leaf: Uint8Array<ArrayBuffer>
  /** Standard base64 DER of every certificate (`x5c`). */
  chain: string[]
  /** Fingerprint for the cache identity: the public certificate (and the key object). */
  fingerprint: string
}

const PSS: RsaHashedImportParams = { name: 'RSA-PSS', hash: 'SHA-256' }
const keyIds = /* @__PURE__ */ new WeakMap<CryptoKey, string>()

/** Advice for refusals of a certificate assertion. */
const CERTIFICATE_ADVICE: EntraAdviceTable = {
  700027: 'Check {certificate}: its certificate must be uploaded to the app registration ' +
    '(Certificates & secrets) and valid, and the key must be its own',
  7000274: 'Check {certificate}: Entra ID did not accept the certificate (expired, not yet valid ' +
    'or not registered); upload a valid one to the app registration',
  700024: 'The client assertion is outside its valid time range: check the clock of this machine',
  700021: "The client assertion's issuer or subject does not match {clientId}",
  700023: 'The client assertion was issued for another token endpoint: check the authority host ' +
    'and that no proxy rewrites the token URL',
}

/**
 * A certificate credential for `ServicePrincipalAuthentication`'s `certificate` option. The key
 * and certificate are parsed and checked here, synchronously and without I/O; the key is imported
 * into Web Crypto on first use (then the PKCS#8 bytes are zeroed). Encrypted keys and PKCS#12
 * files are refused with the `openssl` command that converts them.
 *
 * @param input the private key (PKCS#8 or PKCS#1 PEM, or an RSA `CryptoKey`), the certificate PEM
 * (leaf first) and whether to send the chain as `x5c`
 * @returns the credential value to pass as `certificate`
 * @throws {TypeError} naming `certificate.privateKey` or `certificate.certificate` for a key or
 * certificate that cannot work (encrypted, PKCS#12, not RSA, damaged, or not matching)
 *
 * @example Certificate on Cloudflare Workers (PEM from Worker secrets)
 * ```ts
 * import { clientCertificate, ServicePrincipalAuthentication } from '@aml-edge/auth'
 *
 * function credentialFor(env: { TENANT: string; CLIENT: string; KEY: string; CERT: string }) {
 *   return new ServicePrincipalAuthentication({
 *     tenantId: env.TENANT,
 *     servicePrincipalId: env.CLIENT,
 *     certificate: clientCertificate({ privateKey: env.KEY, certificate: env.CERT }),
 *     env: {},
 *   })
 * }
 * ```
 */
export function clientCertificate(input: ClientCertificateInput): ClientCertificate {
  if (input === null || typeof input !== 'object') {
    throw new TypeError('certificate must be an object { privateKey, certificate }')
  }
  const chain = input.sendCertificateChain
  if (chain !== undefined && typeof chain !== 'boolean') {
    throw new TypeError('certificate.sendCertificateChain must be a boolean')
  }
  const m = parse(
    input.privateKey,
    input.certificate,
    'certificate.privateKey',
    'certificate.certificate',
  )
  const value = Object.freeze({ kind: 'certificate' as const })
  _certificates.set(value, _certificateAuth(m, chain === true, m.fingerprint))
  return value
}

/**
 * Parses a key and certificate synchronously: PEM blocks, key/certificate match.
 *
 * @throws {TypeError} naming the option for anything that cannot work
 */
function parse(
  key: unknown,
  certificate: unknown,
  keyName: string,
  certName: string,
): CertMaterial {
  const certs = _parseCertificatePem(certificate as string, certName)
  const leaf = certs[0]!
  const chain = certs.map((c) => _b64(c.der))
  const mismatch = () =>
    new TypeError(
      `${keyName} does not belong to the first certificate of ${certName} (with a chain, the ` +
        'leaf certificate must come first)',
    )
  const C = (globalThis as { CryptoKey?: abstract new () => CryptoKey }).CryptoKey
  if (C && key instanceof C) {
    const alg = key.algorithm as Partial<RsaHashedKeyAlgorithm>
    if (key.type !== 'private') {
      throw new TypeError(`${keyName} must be a private key, not a ${key.type} key`)
    }
    if (!String(alg.name).startsWith('RSA')) {
      throw new TypeError(
        `${keyName} is a ${alg.name} key; Microsoft Entra ID accepts RSA certificates only`,
      )
    }
    if (alg.modulusLength !== undefined && alg.modulusLength !== _modulusBits(leaf.modulus)) {
      throw mismatch()
    }
    const ready = alg.name === 'RSA-PSS' && alg.hash?.name === 'SHA-256' &&
      key.usages.includes('sign')
    if (!ready && !key.extractable) {
      throw new TypeError(
        `${keyName} must be an RSA-PSS SHA-256 signing key: import it with ` +
          "{ name: 'RSA-PSS', hash: 'SHA-256' } and usages ['sign'] (or make it extractable)",
      )
    }
    let id = keyIds.get(key)
    if (!id) keyIds.set(key, id = crypto.randomUUID())
    return {
      leaf: leaf.der,
      chain,
      fingerprint: `c:${chain[0]}:${id}`,
      importKey: ready ? () => Promise.resolve(key) : async () =>
        await crypto.subtle.importKey(
          'pkcs8',
          await crypto.subtle.exportKey('pkcs8', key),
          PSS,
          false,
          ['sign'],
        ),
    }
  }
  const rsa = _parsePrivateKeyPem(key as string, keyName)
  if (!_sameModulus(rsa.modulus, leaf.modulus)) throw mismatch()
  return {
    leaf: leaf.der,
    chain,
    fingerprint: `c:${chain[0]}`,
    importKey: async () => {
      const k = await crypto.subtle.importKey('pkcs8', rsa.pkcs8, PSS, false, ['sign'])
      // The credential keeps only the non-extractable CryptoKey from now on.
      rsa.pkcs8.fill(0)
      return k
    },
  }
}

const LIFETIME_S = 600

/**
 * Signs PS256 client assertions for a certificate: header `{ alg, typ, x5t#S256[, x5c] }`, claims
 * `aud` = token endpoint, `iss` = `sub` = client id, `jti`, `nbf` = `iat` = now, `exp` = now + 600.
 * The key is imported (and `x5t#S256` computed with `crypto.subtle.digest`) once, on first use;
 * an assertion is reused per endpoint until 60 s before it expires (16 endpoints at most).
 *
 * @param material the parsed certificate, or a loader that reads and parses it on first use (a
 * failed load is tried again on the next request)
 * @param sendChain add `x5c`
 * @param fingerprint the fingerprint for the cache identity
 */
export function _certificateAuth(
  material: CertMaterial | (() => Promise<CertMaterial>),
  sendChain: boolean,
  fingerprint: string,
): _ClientAuth {
  let ready: Promise<{ key: CryptoKey; header: string }> | undefined
  const assertions = new Map<
    string,
    { jwt: Promise<string>; reuseUntil: number; value?: string; uses: number }
  >()

  const prepare = (): Promise<{ key: CryptoKey; header: string }> => {
    if (!ready) {
      const p = ready = (async () => {
        const m = typeof material === 'function' ? await material() : material
        let key: CryptoKey
        try {
          key = await m.importKey()
        } catch (e) {
          throw new CredentialUnavailableError(
            'Web Crypto could not import the certificate key for RSA-PSS signing (see the cause)',
            { cause: e instanceof Error ? new Error(e.name) : undefined },
          )
        }
        const header = {
          alg: 'PS256',
          typ: 'JWT',
          'x5t#S256': _b64url(await crypto.subtle.digest('SHA-256', m.leaf)),
          ...sendChain ? { x5c: m.chain } : {},
        }
        return { key, header: _b64url(JSON.stringify(header)) }
      })()
      // A failure (an unreadable file) is not kept: the next request tries again.
      p.catch(() => {
        if (ready === p) ready = undefined
      })
    }
    return ready
  }

  const sign = async (ctx: _ClientAuthContext, nowMs: number): Promise<string> => {
    const { key, header } = await prepare()
    const now = Math.floor(nowMs / 1000)
    const input = header + '.' + _b64url(JSON.stringify({
      aud: ctx.tokenEndpoint,
      iss: ctx.clientId,
      sub: ctx.clientId,
      jti: crypto.randomUUID(),
      nbf: now,
      iat: now,
      exp: now + LIFETIME_S,
    }))
    const sig = await crypto.subtle.sign(
      { name: 'RSA-PSS', saltLength: 32 },
      key,
      new TextEncoder().encode(input),
    )
    return input + '.' + _b64url(sig)
  }

  /**
   * The server refused a request that carried `assertion`: forget it if it is cached. True when
   * it had been sent before (a server that enforces single-use `jti` refuses reuse), so that one
   * retry with a freshly signed assertion can succeed.
   */
  const refused = (k: string, assertion: string): boolean => {
    const entry = assertions.get(k)
    // Already replaced (a concurrent refusal, or it aged out): a fresh one is worth one try.
    if (entry?.value !== assertion) return true
    assertions.delete(k)
    return entry.uses > 1
  }

  return {
    kind: 'certificate',
    fingerprint,
    advice: CERTIFICATE_ADVICE,
    async send(request, ctx) {
      const k = ctx.clientId + ' ' + ctx.tokenEndpoint
      for (let fresh = false;; fresh = true) {
        const nowMs = ctx.now()
        let entry = assertions.get(k)
        if (!entry || fresh || nowMs >= entry.reuseUntil) {
          const jwt = sign(ctx, nowMs)
          const created: typeof entry = {
            jwt,
            reuseUntil: Math.floor(nowMs / 1000) * 1000 + (LIFETIME_S - 60) * 1000,
            uses: 0,
          }
          // Least recently signed first: the oldest endpoint goes when there are 16.
          assertions.delete(k)
          if (assertions.size > 15) assertions.delete(assertions.keys().next().value!)
          assertions.set(k, entry = created)
          jwt.then((v) => {
            created.value = v
          }, () => {
            if (assertions.get(k) === created) assertions.delete(k)
          })
        }
        entry.uses++
        const assertion = await entry.jwt
        try {
          return await request({
            client_assertion_type: JWT_BEARER_ASSERTION,
            client_assertion: assertion,
          })
        } catch (e) {
          // A reused assertion refused by an STS that enforces single-use jti: sign a fresh one
          // and try once more. Any refusal drops the cached assertion.
          if (
            !(e instanceof AuthenticationError && (e.status === 400 || e.status === 401) &&
              refused(k, assertion) && !fresh)
          ) throw e
        }
      }
    },
  }
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
  return _certificateAuth(
    async () => {
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
        return parse(text, text, `The private key in ${option}`, `The certificate in ${option}`)
      } catch (e) {
        throw new CredentialUnavailableError(
          `The PEM file named by ${option} is unusable: ${(e as Error).message}`,
        )
      }
    },
    sendChain,
    'f:' + path,
  )
}
