/**
 * Small web-standard helpers shared by the emulator's route modules.
 *
 * @module
 */
import { base64url } from 'jose'

const encoder = new TextEncoder()

/** Encodes a string as UTF-8. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text)
}

/** Random bytes as base64url (no padding). */
export function randomToken(bytes = 32): string {
  return base64url.encode(crypto.getRandomValues(new Uint8Array(bytes)))
}

/** Random bytes as lowercase hex. */
export function randomHex(bytes = 16): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)))
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

/** Standard base64 (with padding) of bytes. */
export function toBase64(bytes: Uint8Array): string {
  let bin = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  }
  return btoa(bin)
}

/** Decodes standard base64 (whitespace ignored). Throws on bad input. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text.replace(/\s+/g, ''))
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

/** SHA digest of bytes. */
export async function digest(
  alg: 'SHA-1' | 'SHA-256',
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest(alg, data))
}

/** Compares two strings without an early exit on the first difference. */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = utf8(a)
  const y = utf8(b)
  let diff = x.length ^ y.length
  const n = Math.max(x.length, y.length)
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0)
  return diff === 0
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Decodes a compact JWS's header and payload without verifying it; `null` if malformed. */
export function decodeJwt(
  token: string,
): { header: Record<string, unknown>; claims: Record<string, unknown> } | null {
  const parts = token.split('.')
  if (parts.length !== 3 || !parts[0] || !parts[1]) return null
  try {
    const dec = new TextDecoder()
    const header = JSON.parse(dec.decode(base64url.decode(parts[0])))
    const claims = JSON.parse(dec.decode(base64url.decode(parts[1])))
    if (!isRecord(header) || !isRecord(claims)) return null
    return { header, claims }
  } catch {
    return null
  }
}

/** True for a plain (non-array) object. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Canonical form of a resource identifier for lookups: lowercase, no trailing slashes. */
export function normalizeResource(resource: string): string {
  return resource.trim().toLowerCase().replace(/\/+$/, '')
}

/** `YYYY-MM-DD HH:mm:ssZ`, the timestamp format of Entra error bodies. */
export function entraTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z')
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0')

/** `MM/dd/yyyy HH:mm:ss +00:00` (App Service 2017 style). */
export function usDate24(ms: number): string {
  const d = new Date(ms)
  return `${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${d.getUTCFullYear()} ${
    pad(d.getUTCHours())
  }:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +00:00`
}

/** `M/d/yyyy h:mm:ss AM +00:00` (App Service 2017 on Windows). */
export function usDate12(ms: number): string {
  const d = new Date(ms)
  const h = d.getUTCHours()
  const h12 = h % 12 === 0 ? 12 : h % 12
  return `${d.getUTCMonth() + 1}/${d.getUTCDate()}/${d.getUTCFullYear()} ${h12}:${
    pad(d.getUTCMinutes())
  }:${pad(d.getUTCSeconds())} ${h < 12 ? 'AM' : 'PM'} +00:00`
}

/** JSON response with `Cache-Control: no-store`. */
export function json(body: unknown, status = 200, headers?: HeadersInit): Response {
  const h = new Headers(headers)
  if (!h.has('content-type')) h.set('content-type', 'application/json; charset=utf-8')
  if (!h.has('cache-control')) h.set('cache-control', 'no-store, no-cache')
  return new Response(JSON.stringify(body), { status, headers: h })
}

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
}
