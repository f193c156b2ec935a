/**
 * Test-only stand-in for `jsr:@std/assert`, which cannot be fetched here (JSR is unreachable;
 * the package is not on npm). `deno.json` maps the `@std/assert` specifier to this file, so tests
 * import `@std/assert` exactly as they would the real package; switching back is a one-line edit
 * of the import map. Never shipped: `publish.exclude` drops `test/`.
 *
 * @module
 */
import { inspect, isDeepStrictEqual } from 'node:util'

/** Thrown by every assertion here, as std's `AssertionError`. */
export class AssertionError extends Error {
  override name = 'AssertionError'
}

function show(v: unknown): string {
  return inspect(v, { depth: 6, colors: false, breakLength: 100 })
}

function fail_(msg: string | undefined, fallback: string): never {
  throw new AssertionError(msg ? `${msg}: ${fallback}` : fallback)
}

/** Fails unconditionally. */
export function fail(msg?: string): never {
  throw new AssertionError(msg ?? 'Failed assertion')
}

/** Asserts that `expr` is truthy. */
export function assert(expr: unknown, msg = ''): asserts expr {
  if (!expr) throw new AssertionError(msg || 'Expected expression to be truthy')
}

/** Asserts that `expr` is falsy. */
export function assertFalse(expr: unknown, msg = ''): void {
  if (expr) throw new AssertionError(msg || 'Expected expression to be falsy')
}

/** Deep structural equality (prototype-aware, like std). */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    fail_(msg, `Values are not equal.\n  actual:   ${show(actual)}\n  expected: ${show(expected)}`)
  }
}

/** Deep structural inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (isDeepStrictEqual(actual, expected)) fail_(msg, `Expected values to differ: ${show(actual)}`)
}

/** `Object.is` equality. */
export function assertStrictEquals<T>(
  actual: unknown,
  expected: T,
  msg?: string,
): asserts actual is T {
  if (!Object.is(actual, expected)) {
    fail_(
      msg,
      `Values are not strictly equal.\n  actual:   ${show(actual)}\n  expected: ${show(expected)}`,
    )
  }
}

/** `!Object.is`. */
export function assertNotStrictEquals<T>(actual: T, expected: T, msg?: string): void {
  if (Object.is(actual, expected)) fail_(msg, `Expected values to not be strictly equal`)
}

/** Asserts `actual` is neither `null` nor `undefined`. */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual === null || actual === undefined) fail_(msg, `Expected a value, got ${show(actual)}`)
}

/** Asserts `actual` includes `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) {
    fail_(msg, `Expected ${show(actual)} to include ${show(expected)}`)
  }
}

/** Asserts every element of `expected` is in `actual` (deep). */
export function assertArrayIncludes<T>(
  actual: ArrayLike<T>,
  expected: ArrayLike<T>,
  msg?: string,
): void {
  const a = Array.from(actual)
  for (const e of Array.from(expected)) {
    if (!a.some((x) => isDeepStrictEqual(x, e))) {
      fail_(msg, `Expected ${show(a)} to include ${show(e)}`)
    }
  }
}

/** Asserts `actual` matches `expected`. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  if (!expected.test(actual)) fail_(msg, `Expected ${show(actual)} to match ${expected}`)
}

/** Asserts `actual` does not match `expected`. */
export function assertNotMatch(actual: string, expected: RegExp, msg?: string): void {
  if (expected.test(actual)) fail_(msg, `Expected ${show(actual)} not to match ${expected}`)
}

/** Asserts `actual > expected`. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual > expected)) fail_(msg, `Expected ${show(actual)} > ${show(expected)}`)
}

/** Asserts `actual >= expected`. */
export function assertGreaterOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual >= expected)) fail_(msg, `Expected ${show(actual)} >= ${show(expected)}`)
}

/** Asserts `actual < expected`. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual < expected)) fail_(msg, `Expected ${show(actual)} < ${show(expected)}`)
}

/** Asserts `actual <= expected`. */
export function assertLessOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual <= expected)) fail_(msg, `Expected ${show(actual)} <= ${show(expected)}`)
}

/** Asserts two numbers are within `tolerance`. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tolerance = 1e-7,
  msg?: string,
): void {
  if (Math.abs(actual - expected) > tolerance) {
    fail_(msg, `Expected ${actual} to be within ${tolerance} of ${expected}`)
  }
}

/** Asserts `actual` is an instance of `expectedType`. */
// deno-lint-ignore no-explicit-any
export function assertInstanceOf<T extends abstract new (...args: any[]) => any>(
  actual: unknown,
  expectedType: T,
  msg?: string,
): asserts actual is InstanceType<T> {
  if (!(actual instanceof expectedType)) {
    fail_(msg, `Expected an instance of ${expectedType.name}, got ${show(actual)}`)
  }
}

/** Asserts `actual` contains the properties of `expected` (deep, partial). */
export function assertObjectMatch(
  actual: Record<PropertyKey, unknown>,
  expected: Record<PropertyKey, unknown>,
  msg?: string,
): void {
  for (const [k, v] of Object.entries(expected)) {
    const a = actual[k]
    if (v && typeof v === 'object' && !Array.isArray(v) && a && typeof a === 'object') {
      assertObjectMatch(a as Record<PropertyKey, unknown>, v as Record<PropertyKey, unknown>, msg)
    } else if (!isDeepStrictEqual(a, v)) {
      fail_(msg, `Property ${k}: expected ${show(v)}, got ${show(a)}`)
    }
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = abstract new (...args: any[]) => E

function checkError<E extends Error>(
  e: unknown,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): E {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    fail_(msg, `Expected error to be instance of ${ErrorClass.name}, got ${show(e)}`)
  }
  if (msgIncludes !== undefined) {
    const m = e instanceof Error ? e.message : String(e)
    if (!m.includes(msgIncludes)) {
      fail_(msg, `Expected error message to include ${show(msgIncludes)}, got ${show(m)}`)
    }
  }
  return e as E
}

/** Asserts `fn` throws; returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): E {
  try {
    fn()
  } catch (e) {
    return checkError(e, ErrorClass, msgIncludes, msg)
  }
  fail_(msg, 'Expected function to throw')
}

/** Asserts `fn` rejects; resolves to the error. */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): Promise<E> {
  try {
    await fn()
  } catch (e) {
    return checkError(e, ErrorClass, msgIncludes, msg)
  }
  fail_(msg, 'Expected function to reject')
}
