// Redacted views: `console.log`, `Deno.inspect` and Node's `util.inspect` show an object through
// its own `toString()`, which never holds a secret. One helper instead of inspect methods per class.

/**
 * Makes `Deno.inspect` and Node's `util.inspect` show instances of `cls` as `String(instance)`.
 * One symbol serves both: Deno honours Node's `nodejs.util.inspect.custom` as well as its own.
 *
 * @param cls a class whose `toString()` is safe to show
 */
export function _inspectAsString(cls: { prototype: object }): void {
  Object.defineProperty(cls.prototype, Symbol.for('nodejs.util.inspect.custom'), {
    value(this: object) {
      return String(this)
    },
  })
}
