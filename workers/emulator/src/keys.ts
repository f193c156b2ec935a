/**
 * The emulator's RS256 signing key: signs access, ID and run tokens, verifies them when they come
 * back (ARM, run history), and publishes the public half as a JWKS.
 *
 * @module
 */
import {
  base64url,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importPKCS8,
  jwtVerify,
} from 'jose'
import type { JWTPayload } from 'jose'
import { utf8 } from './util.ts'

/** A public JWK as published in the JWKS. */
export interface PublicJwk {
  /** `RSA`. */
  kty: string
  /** `sig`. */
  use: string
  /** Key id, the `kid` header of every token. */
  kid: string
  /** `RS256`. */
  alg: string
  /** Modulus, base64url. */
  n: string
  /** Exponent, base64url. */
  e: string
}

interface KeyMaterial {
  privateKey: CryptoKey
  publicKey: CryptoKey
  kid: string
  jwk: PublicJwk
  headerB64: string
}

const RS256 = { name: 'RSASSA-PKCS1-v1_5' } as const

/** Lazily created signing key (key generation is async; construction is not). */
export class SigningKeys {
  #material: Promise<KeyMaterial> | undefined
  #pem: string | undefined
  #kid: string | undefined

  constructor(fixed?: { privateKeyPem: string; kid?: string }) {
    this.#pem = fixed?.privateKeyPem
    this.#kid = fixed?.kid
  }

  #load(): Promise<KeyMaterial> {
    return this.#material ??= this.#create()
  }

  async #create(): Promise<KeyMaterial> {
    let privateKey: CryptoKey
    let publicKey: CryptoKey
    if (this.#pem) {
      privateKey = await importPKCS8(this.#pem, 'RS256', { extractable: true })
      const full = await exportJWK(privateKey)
      publicKey = await crypto.subtle.importKey(
        'jwk',
        { kty: 'RSA', n: full.n!, e: full.e!, alg: 'RS256', ext: true },
        { ...RS256, hash: 'SHA-256' },
        true,
        ['verify'],
      )
    } else {
      const pair = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true })
      privateKey = pair.privateKey
      publicKey = pair.publicKey
    }
    const pub = await exportJWK(publicKey)
    const kid = this.#kid ?? (await calculateJwkThumbprint(pub, 'sha256')).slice(0, 27)
    const jwk: PublicJwk = { kty: 'RSA', use: 'sig', kid, alg: 'RS256', n: pub.n!, e: pub.e! }
    const headerB64 = base64url.encode(JSON.stringify({ typ: 'JWT', alg: 'RS256', kid }))
    return { privateKey, publicKey, kid, jwk, headerB64 }
  }

  /** Creates the key now (otherwise on first use). */
  async ready(): Promise<void> {
    await this.#load()
  }

  /** The key id (`kid` header of every token). */
  async kid(): Promise<string> {
    return (await this.#load()).kid
  }

  /** Signs claims as a compact RS256 JWT with header `{ typ, alg, kid }`. */
  async sign(claims: Record<string, unknown>): Promise<string> {
    const m = await this.#load()
    const input = `${m.headerB64}.${base64url.encode(JSON.stringify(claims))}`
    const sig = await crypto.subtle.sign(RS256, m.privateKey, utf8(input))
    return `${input}.${base64url.encode(new Uint8Array(sig))}`
  }

  /** Verifies a token this key signed (signature, `exp`, `nbf` at `now`); throws otherwise. */
  async verify(token: string, now: number): Promise<JWTPayload> {
    const m = await this.#load()
    const { payload } = await jwtVerify(token, m.publicKey, {
      algorithms: ['RS256'],
      currentDate: new Date(now),
    })
    return payload
  }

  /** The JWKS document. */
  async jwks(): Promise<{ keys: PublicJwk[] }> {
    return { keys: [{ ...(await this.#load()).jwk }] }
  }
}
