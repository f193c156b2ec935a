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
}

/** The Deno namespace when this code runs in Deno, else `undefined`. */
export function _deno(): DenoLike | undefined {
  return (globalThis as unknown as { Deno?: DenoLike }).Deno
}

function granted(d: DenoLike, desc: { name: string; path?: string }): boolean {
  try {
    return d.permissions?.querySync?.(desc).state === 'granted'
  } catch {
    return false
  }
}

/**
 * The runtime's environment: `Deno.env` when Deno grants env access (never prompting), Node's
 * environment where that global exists, else an empty record (Workers, browsers: pass `env`).
 */
export function runtimeEnv(): Env {
  const d = _deno()
  if (d) return granted(d, { name: 'env' }) ? d.env.toObject() : {}
  const node = (globalThis as { process?: { env?: Env } }).process
  return node?.env ? { ...node.env } : {}
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
