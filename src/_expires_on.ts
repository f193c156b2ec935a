// `expires_on` as dates: only managed identity (App Service 2017 / Azure ML compute), the Azure
// CLI and Azure ML run tokens send them. Entra sends numbers, which `token_response.ts` reads on
// its own, so a service-principal bundle never carries these parsers.
import { _epochSeconds } from './token_response.ts'

const US_DATE =
  /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: ?([AP]M))? ?([+-]\d{2}):?(\d{2})$/i

/**
 * Epoch seconds from any `expires_on` shape we know, or `undefined`: epoch seconds (or ms) as a
 * number or string, the App Service dates `MM/dd/yyyy HH:mm:ss +00:00` and
 * `M/d/yyyy h:mm:ss AM +00:00`, or ISO 8601 with a zone.
 */
export function _parseExpiresOn(value: unknown): number | undefined {
  const n = _epochSeconds(value)
  if (n !== undefined) return n
  if (typeof value !== 'string') return undefined
  const s = value.trim()
  const m = US_DATE.exec(s)
  if (m) {
    const [, mo, d, y, h, mi, se, ampm, oh, om] = m
    let hour = Number(h)
    if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > 31) return undefined
    if (hour > 23 || Number(mi) > 59 || Number(se) > 59) return undefined
    if (ampm) {
      // Hour 0 with AM/PM occurs in Microsoft's own App Service sample (`09/14/2017 00:00:00 PM
      // +00:00`); read it as .NET and V8 do: 0 AM = 00:00, 0 PM = 12:00.
      if (hour > 12) return undefined
      hour = (hour % 12) + (ampm.toUpperCase() === 'PM' ? 12 : 0)
    }
    const sign = oh!.startsWith('-') ? -1 : 1
    const offsetMin = sign * (Math.abs(Number(oh)) * 60 + Number(om))
    const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), hour, Number(mi), Number(se))
    return Number.isNaN(utc) ? undefined : Math.floor(utc / 1000) - offsetMin * 60
  }
  // ISO 8601 only with an explicit zone: no time-zone guessing.
  const iso = _parseIsoWithZone(s)
  return typeof iso === 'number' ? Math.floor(iso / 1000) : undefined
}

const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:\s*(Z|[+-]\d{2}(?::?\d{2})?))?$/i

/**
 * Epoch ms of an ISO 8601 date-time with a zone (`Z` or an offset), strictly: the fields must be
 * a real date. Returns `'no-zone'` for a date-time without a zone, `undefined` for anything else.
 */
export function _parseIsoWithZone(s: string): number | 'no-zone' | undefined {
  const m = ISO_RE.exec(s.trim())
  if (!m) return undefined
  const [, y, mo, d, h, mi, se, frac, zone] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = se === undefined ? 0 : Number(se)
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) {
    return undefined
  }
  if (new Date(Date.UTC(year, month - 1, day)).getUTCDate() !== day) return undefined
  if (zone === undefined) return 'no-zone'
  let offsetMin = 0
  if (zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '')
    const oh = Number(digits.slice(0, 2))
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0
    if (oh > 23 || om > 59) return undefined
    offsetMin = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om)
  }
  const ms = frac === undefined ? 0 : Math.floor(Number('0.' + frac) * 1000)
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000
}
