/**
 * The one place that feature-detects the runtime. Nothing else in `src/` may touch `Deno` or a
 * Node global: credentials receive an `env` record, a file reader and a command runner from here.
 *
 * @module
 */
import { CredentialUnavailableError } from './errors.ts'

/** Environment variables as a plain record (Workers bindings, `Deno.env.toObject()`, ...). */
export type Env = Record<string, string | undefined>

/** Reads a text file; injectable so that runtimes without a file system can still run tests. */
export type FileReader = (path: string) => Promise<string>

/** Minimal view of the Deno namespace we feature-detect (typed here so the web-only check passes). */
interface DenoLike {
  env: { toObject(): Record<string, string> }
  permissions?: { querySync?(d: { name: string; path?: string }): { state: string } }
  readTextFile(path: string | URL): Promise<string>
  Command?: new (cmd: string, opts: Record<string, unknown>) => {
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>
  }
  build?: { os: string }
  unrefTimer?(id: number): void
  readDir?(path: string): AsyncIterable<{ name: string; isFile: boolean }>
  mkdir?(path: string, options: { recursive: boolean; mode?: number }): Promise<void>
  writeTextFile?(path: string, data: string, options: { mode?: number }): Promise<void>
  rename?(from: string, to: string): Promise<void>
  remove?(path: string): Promise<void>
}

/** The Deno namespace when this code runs in Deno, else `undefined`. */
export function _deno(): DenoLike | undefined {
  return (globalThis as unknown as { Deno?: DenoLike }).Deno
}

/**
 * The runtime's environment: `Deno.env` when Deno grants env access (never prompting), Node's
 * environment where that global exists, else an empty record (Workers, browsers: pass `env`).
 */
export function runtimeEnv(): Env {
  const g = globalThis as { Deno?: DenoLike; process?: { env?: Env } }
  const d = g.Deno
  try {
    if (d) {
      return d.permissions?.querySync?.({ name: 'env' }).state === 'granted' ? d.env.toObject() : {}
    }
  } catch {
    return {}
  }
  return { ...g.process?.env }
}

/** The `env` option if given, else {@linkcode runtimeEnv}. */
export function resolveEnv(env: Env | undefined): Env {
  return env ?? runtimeEnv()
}

/** The default file reader: `Deno.readTextFile` where it exists, else a clear refusal. */
export function defaultFileReader(path: string): Promise<string> {
  const d = _deno()
  if (d) return d.readTextFile(path)
  return Promise.reject(
    new CredentialUnavailableError(
      'Cannot read files on this runtime; pass a `readFile` option or the file contents directly',
    ),
  )
}

/** Result of running a command. */
export interface CommandResult {
  /** Exit code. */
  code: number
  /** Standard output, decoded as UTF-8. */
  stdout: string
  /** Standard error, decoded as UTF-8. */
  stderr: string
}

/** Runs a program with arguments (never a shell) and a timeout. */
export type CommandRunner = (
  program: string,
  args: readonly string[],
  options: { signal?: AbortSignal; env?: Env },
) => Promise<CommandResult>

/** `Deno.Command` when available, else `undefined` (Workers, browsers, Node). */
export function denoCommandRunner(): CommandRunner | undefined {
  const d = _deno()
  const Command = d?.Command
  if (!d || !Command) return undefined
  const windows = d.build?.os === 'windows'
  return async (program, args, options) => {
    const cmd = new Command(windows ? `${program}.cmd` : program, {
      args: [...args],
      stdin: 'null',
      stdout: 'piped',
      stderr: 'piped',
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.env ? { env: options.env } : {}),
    })
    const out = await cmd.output()
    const dec = new TextDecoder()
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) }
  }
}

/**
 * Lets a timer not keep the process alive: `Deno.unrefTimer(id)` in Deno, `timer.unref()` in
 * Node (where timers are objects); a no-op elsewhere (browsers, Workers have no such notion).
 */
export function _unrefTimer(id: unknown): void {
  if (typeof id === 'object' && id !== null) {
    const unref = (id as { unref?: () => void }).unref
    if (typeof unref === 'function') unref.call(id)
    return
  }
  if (typeof id === 'number') _deno()?.unrefTimer?.(id)
}

function noFiles(): CredentialUnavailableError {
  return new CredentialUnavailableError(
    'Cannot list or write files on this runtime; pass the file-system functions as options',
  )
}

/** The names of the regular files in a directory (`Deno.readDir` where it exists). */
export async function _readDir(path: string): Promise<string[]> {
  const d = _deno()
  if (!d?.readDir) throw noFiles()
  const names: string[] = []
  for await (const entry of d.readDir(path)) if (entry.isFile) names.push(entry.name)
  return names
}

/**
 * Writes a text file readable by its owner only, creating the parent directory. The text goes to
 * a temporary file (a dot-name in the same directory) renamed into place, so a concurrent reader
 * never sees a partial file.
 */
export async function _writeTextFile(path: string, text: string): Promise<void> {
  const d = _deno()
  if (!d?.writeTextFile || !d.mkdir || !d.rename) throw noFiles()
  const slash = path.lastIndexOf('/')
  const dir = slash > 0 ? path.slice(0, slash) : '.'
  await d.mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = `${dir}/.${crypto.randomUUID()}.tmp`
  try {
    await d.writeTextFile(tmp, text, { mode: 0o600 })
    await d.rename(tmp, path)
  } catch (e) {
    await d.remove?.(tmp).catch(() => {})
    throw e
  }
}

/**
 * Whether this code runs on Cloudflare Workers, which cannot reach loopback or link-local
 * addresses (so no managed-identity endpoint). `userAgent` defaults to `navigator.userAgent`.
 */
export function _isCloudflareWorkers(
  userAgent: string | undefined = (globalThis as { navigator?: { userAgent?: string } }).navigator
    ?.userAgent,
): boolean {
  return userAgent === 'Cloudflare-Workers'
}

/** The subset of `Deno.Kv` a token store needs (typed here so the web-only check passes). */
export interface DenoKvLike {
  /** Reads one entry. */
  get(key: readonly unknown[]): Promise<{ value: unknown }>
  /** Writes one entry; `expireIn` in ms. */
  set(key: readonly unknown[], value: unknown, options?: { expireIn?: number }): Promise<unknown>
  /** Deletes one entry. */
  delete(key: readonly unknown[]): Promise<void>
  /** Closes the database. */
  close(): void
}

/**
 * Opens Deno KV (`Deno.openKv`, which Deno 2.x only provides with `--unstable-kv` or
 * `"unstable": ["kv"]` in deno.json, and Deno Deploy always). `undefined` where it does not exist.
 */
export function _openDenoKv(path?: string): Promise<DenoKvLike> | undefined {
  const open = (_deno() as { openKv?: (path?: string) => Promise<DenoKvLike> } | undefined)
    ?.openKv
  return typeof open === 'function' ? open(path) : undefined
}
