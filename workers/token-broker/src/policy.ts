/**
 * The policy: which caller may have which audiences, scopes and run tokens. Default deny: a
 * caller no rule names gets nothing, and a rule grants only what it lists.
 *
 * ```json
 * { "rules": [
 *   { "name": "ci", "apiKey": "ci", "audiences": ["AZUREML"] },
 *   { "issuer": "https://token.actions.githubusercontent.com",
 *     "subject": "repo:contoso/ml:ref:refs/heads/*",
 *     "audiences": ["ARM"], "scopes": ["https://storage.azure.com/.default"],
 *     "runTokens": [{ "subscriptionId": "…", "resourceGroupName": "ml", "workspaceName": "ws" }] }
 * ] }
 * ```
 *
 * Subjects and run-token fields are exact strings or globs where `*` matches any characters.
 *
 * @module
 */
import { _RUN_SCOPE_FIELDS, type AzureMLRunScope } from '../../../src/credentials/azureml_token.ts'
import { ConfigError } from './errors.ts'

/** Who a caller is, as the policy sees it. */
export type CallerRef = { apiKey: string } | { issuer: string; subject: string }

/**
 * One run scope: the run a run token is for. The library's `AzureMLRunScope`, except that the
 * experiment name is optional (at least one of name and id).
 */
export type RunScope = Omit<AzureMLRunScope, 'experimentName'> & { experimentName?: string }

type Matcher = (value: string | undefined) => boolean

/** A run-token permission: one matcher per scope field. */
export interface RunPattern {
  /** Matchers by field. */
  readonly fields: Readonly<Record<keyof RunScope, Matcher>>
}

/** One validated rule. */
export interface Rule {
  /** Label for logs. */
  readonly name: string
  /** API key id the rule is for. */
  readonly apiKey?: string
  /** JWT issuer the rule is for. */
  readonly issuer?: string
  /** Matches the JWT subject. */
  readonly subject?: (s: string) => boolean
  /** Allowed audiences (`ARM`, `AZUREML`). */
  readonly audiences: ReadonlySet<string>
  /** Allowed scopes (exact). */
  readonly scopes: ReadonlySet<string>
  /** Allowed run scopes. */
  readonly runTokens: readonly RunPattern[]
}

/** The validated policy. */
export interface Policy {
  /** Rules, in order. */
  readonly rules: readonly Rule[]
}

/** What a caller may have: the union of every rule that names it. */
export interface Grant {
  /** Names of the rules that matched (for logs). */
  rules: string[]
  /** Audiences. */
  audiences: Set<string>
  /** Scopes. */
  scopes: Set<string>
  /** Run scopes. */
  runTokens: RunPattern[]
}

const RULE_KEYS = new Set([
  'name',
  'apiKey',
  'issuer',
  'subject',
  'audiences',
  'scopes',
  'runTokens',
])
const REQUIRED_RUN_FIELDS = ['subscriptionId', 'resourceGroupName', 'workspaceName']

/**
 * A matcher for an exact string or a glob where `*` matches any run of characters.
 *
 * Matching is linear-time in practice (O(pattern × value) at worst): subjects and run-scope
 * fields come from callers, so a backtracking regular expression over a pattern with several `*`
 * would let one request burn seconds of CPU.
 *
 * @param pattern the pattern
 * @returns a predicate
 */
export function glob(pattern: string): (s: string) => boolean {
  if (!pattern.includes('*')) return (s) => s === pattern
  if (/^\*+$/.test(pattern)) return () => true
  return (s) => _wildcard(pattern, s)
}

/** Greedy `*`-only wildcard matching that backtracks to the last star only. */
function _wildcard(pattern: string, s: string): boolean {
  let p = 0
  let i = 0
  let star = -1
  let mark = 0
  while (i < s.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++
      mark = i
    } else if (p < pattern.length && pattern[p] === s[i]) {
      p++
      i++
    } else if (star !== -1) {
      p = star + 1
      i = ++mark
    } else {
      return false
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++
  return p === pattern.length
}

function fail(where: string, message: string): never {
  throw new ConfigError('POLICY', where === '' ? message : `${where} ${message}`)
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
    fail(where, 'must be an array of non-empty strings')
  }
  return value as string[]
}

function runPattern(value: unknown, where: string): RunPattern {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(where, 'must be an object of run-scope patterns')
  }
  const v = value as Record<string, unknown>
  for (const k of Object.keys(v)) {
    if (!(_RUN_SCOPE_FIELDS as readonly string[]).includes(k)) {
      fail(where, `has an unknown field "${k}" (allowed: ${_RUN_SCOPE_FIELDS.join(', ')})`)
    }
  }
  const fields = {} as Record<keyof RunScope, Matcher>
  for (const f of _RUN_SCOPE_FIELDS) {
    const p = v[f]
    if (p === undefined) {
      if (REQUIRED_RUN_FIELDS.includes(f)) {
        fail(where, `must give ${f} (use "*" to allow any)`)
      }
      fields[f] = () => true
      continue
    }
    if (typeof p !== 'string' || p === '' || p.length > 512) {
      fail(where + '.' + f, 'must be a non-empty string (exact, or a glob with *)')
    }
    const m = glob(p)
    // A field the request leaves out only matches "*" (e.g. experimentName when only the id is
    // given): a pattern that names a value cannot be checked against a missing one.
    fields[f] = p === '*' ? () => true : (s) => s !== undefined && m(s)
  }
  // A pattern that pins one experiment field and leaves the other out must not let a request
  // name an arbitrary value for the other: the broker cannot tell whether an experiment id
  // belongs to an experiment name, and the token's subject and refresh route use the id.
  const pins = (f: 'experimentName' | 'experimentId') => v[f] !== undefined && v[f] !== '*'
  if (pins('experimentName') && v.experimentId === undefined) {
    fields.experimentId = (s) => s === undefined
  }
  if (pins('experimentId') && v.experimentName === undefined) {
    fields.experimentName = (s) => s === undefined
  }
  return { fields }
}

/**
 * Validates the policy (`POLICY`): a rules array or `{ rules: [...] }`.
 *
 * @param value the parsed JSON
 * @param issuers the configured caller issuers (a rule may only name one of them)
 * @returns the policy
 * @throws {ConfigError} naming the rule and field at fault
 */
export function parsePolicy(value: unknown, issuers: readonly string[]): Policy {
  if (value === undefined) {
    throw new ConfigError('POLICY', 'is not set; without rules every request would be denied')
  }
  const list = Array.isArray(value) ? value : value !== null && typeof value === 'object' &&
      Array.isArray((value as { rules?: unknown }).rules) &&
      Object.keys(value).length === 1
    ? (value as { rules: unknown[] }).rules
    : fail('', 'must be an array of rules or an object { "rules": [...] }')
  const rules = list.map((raw, i): Rule => {
    const where = `rules[${i}]`
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      fail(where, 'must be an object')
    }
    const r = raw as Record<string, unknown>
    for (const k of Object.keys(r)) {
      if (!RULE_KEYS.has(k)) fail(where, `has an unknown field "${k}"`)
    }
    const name = r.name === undefined ? where : r.name
    if (typeof name !== 'string' || name === '' || name.length > 64) {
      fail(where + '.name', 'must be a short non-empty string')
    }
    const hasKey = r.apiKey !== undefined
    const hasJwt = r.issuer !== undefined || r.subject !== undefined
    if (hasKey === hasJwt) {
      fail(where, 'must name exactly one caller: "apiKey", or "issuer" with "subject"')
    }
    const audiences = stringList(r.audiences, where + '.audiences')
    for (const a of audiences) {
      if (a !== 'ARM' && a !== 'AZUREML') {
        fail(where + '.audiences', 'may only hold ARM and AZUREML')
      }
    }
    const scopes = stringList(r.scopes, where + '.scopes')
    for (const s of scopes) {
      if (!/^[\x21-\x7e]{1,256}$/.test(s)) {
        fail(where + '.scopes', 'must hold single scopes (no spaces), at most 256 characters each')
      }
    }
    if (r.runTokens !== undefined && !Array.isArray(r.runTokens)) {
      fail(where + '.runTokens', 'must be an array of run-scope patterns')
    }
    const runTokens = ((r.runTokens as unknown[] | undefined) ?? []).map((p, j) =>
      runPattern(p, `${where}.runTokens[${j}]`)
    )
    const base = { name, audiences: new Set(audiences), scopes: new Set(scopes), runTokens }
    if (hasKey) {
      if (typeof r.apiKey !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(r.apiKey)) {
        fail(where + '.apiKey', 'must be a key id of CALLER_API_KEYS')
      }
      return { ...base, apiKey: r.apiKey }
    }
    if (typeof r.issuer !== 'string' || !issuers.includes(r.issuer)) {
      fail(where + '.issuer', 'must be one of the issuers in CALLER_ISSUERS (exactly)')
    }
    if (typeof r.subject !== 'string' || r.subject === '' || r.subject.length > 512) {
      fail(where + '.subject', 'must be the subject (exact, or a glob with *)')
    }
    return { ...base, issuer: r.issuer, subject: glob(r.subject) }
  })
  return { rules }
}

/**
 * What the policy grants a caller.
 *
 * @param policy the policy
 * @param caller the authenticated caller
 * @returns the union of every matching rule (empty: denied)
 */
export function grantFor(policy: Policy, caller: CallerRef): Grant {
  const grant: Grant = { rules: [], audiences: new Set(), scopes: new Set(), runTokens: [] }
  for (const rule of policy.rules) {
    const match = 'apiKey' in caller
      ? rule.apiKey === caller.apiKey
      : rule.issuer === caller.issuer && rule.subject !== undefined && rule.subject(caller.subject)
    if (!match) continue
    grant.rules.push(rule.name)
    for (const a of rule.audiences) grant.audiences.add(a)
    for (const s of rule.scopes) grant.scopes.add(s)
    grant.runTokens.push(...rule.runTokens)
  }
  return grant
}

/**
 * Whether a grant allows a run token for this run scope.
 *
 * @param grant the caller's grant
 * @param scope the requested run scope
 * @returns true when some pattern matches every field
 */
export function permitsRun(grant: Grant, scope: RunScope): boolean {
  return grant.runTokens.some((p) => _RUN_SCOPE_FIELDS.every((f) => p.fields[f](scope[f])))
}
