// Constructor-time checks shared by every credential. They throw TypeError/RangeError naming the
// option, so bad input fails where it was written, not on first use.

const TENANT_RE = /^[0-9a-zA-Z.-]+$/

/** A GUID (tenant, client, object id), any case. */
export const _GUID_RE: RegExp = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Throws unless `tenantId` looks like a GUID or a domain (Entra's own rule). */
export function _checkTenantId(tenantId: unknown, option = 'tenantId'): string {
  if (typeof tenantId !== 'string' || !TENANT_RE.test(tenantId)) {
    throw new TypeError(
      `${option} must be a tenant GUID or domain (letters, digits, '.', '-')`,
    )
  }
  return tenantId
}

/**
 * Checks an `additionallyAllowedTenants` option: an array of tenant GUIDs or domains, or `"*"`.
 * Returns them lower-cased, as a set.
 */
export function _checkAllowedTenants(list: unknown, option: string): ReadonlySet<string> {
  if (list !== undefined && !Array.isArray(list)) {
    throw new TypeError(`${option} must be an array of tenant ids (or "*")`)
  }
  // new Set(undefined) is empty.
  return new Set(
    list?.map((t, i) => t === '*' ? '*' : _checkTenantId(t, `${option}[${i}]`).toLowerCase()),
  )
}

/** Throws unless `value` is a non-empty string. */
export function _checkString(value: unknown, option: string): string {
  if (typeof value !== 'string' || !value.trim()) {
    throw new TypeError(`${option} must be a non-empty string`)
  }
  return value
}

/** Whether a host name is loopback (where plain http is acceptable for emulators and tests). */
export function _isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h)
}

/**
 * Parses an authority or endpoint URL and requires `https:` unless the host is loopback. Returns
 * the origin plus path without a trailing slash.
 */
export function _checkEndpoint(value: unknown, option: string, allowHttp = false): string {
  let url: URL
  try {
    // URL() stringifies its input; only the checked href below is used from here on.
    url = new URL(value as string)
  } catch {
    throw new TypeError(`${option} is not a valid URL`)
  }
  if (
    url.username || url.password ||
    url.protocol !== 'https:' &&
      !(url.protocol === 'http:' && (allowHttp || _isLoopback(url.hostname)))
  ) {
    throw new TypeError(
      `${option} must use https (http only for loopback hosts) and hold no credentials`,
    )
  }
  return url.href.replace(/\/+$/, '')
}

const WANT = {
  '+': 'a positive number',
  '0': 'a number >= 0',
  '1': 'an integer >= 0',
  f: 'a function',
  o: 'an object',
}

/** What a value of each kind must be (see {@linkcode _checkKinds}). */
export type _Kind = keyof typeof WANT

/**
 * Checks the optional fields of `values` by kind; `undefined` always passes. Kinds: `+` a positive
 * number, `0` a number >= 0, `1` an integer >= 0 (else a RangeError); `f` a function, `o` an
 * object (else a TypeError). The message names the option (`prefix` + field) and what it must be.
 */
export function _checkKinds(
  values: Record<string, unknown> | undefined,
  kinds: Record<string, _Kind>,
  prefix = '',
): void {
  for (const [k, kind] of Object.entries(kinds)) {
    const v = values?.[k]
    if (
      v !== undefined &&
      !(kind === 'f'
        ? typeof v === 'function'
        : kind === 'o'
        ? v && typeof v === 'object'
        : Number.isFinite(v) && (kind === '+' ? (v as number) > 0 : (v as number) >= 0) &&
          (kind !== '1' || (v as number) % 1 === 0))
    ) {
      // A wrong type (function, object) is a TypeError; a number out of range a RangeError.
      const E = kind === 'f' || kind === 'o' ? TypeError : RangeError
      throw new E(`${prefix + k} must be ${WANT[kind]}`)
    }
  }
}

/** Throws a RangeError unless `value` is a positive finite number (or undefined). */
export function _checkPositive(value: unknown, option: string): number | undefined {
  _checkKinds({ [option]: value }, { [option]: '+' })
  return value as number | undefined
}
