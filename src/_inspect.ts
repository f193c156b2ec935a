// Redacted views: `Deno.inspect`, `console.log` and Node's `util.inspect` show an object through
// its own `toString()`, which never holds a secret. One helper instead of two methods per class.

/**
 * Makes `Deno.inspect` and Node's `util.inspect` show instances of `cls` as `String(instance)`.
 *
 * @param cls a class whose `toString()` is safe to show
 */
export function _inspectAsString(cls: { prototype: object }): void {
  for (const s of ['Deno.customInspect', 'nodejs.util.inspect.custom']) {
    Object.defineProperty(cls.prototype, Symbol.for(s), {
      value(this: object) {
        return String(this)
      },
    })
  }
}
