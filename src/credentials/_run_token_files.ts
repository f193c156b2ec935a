// The Azure ML run's shared, encrypted token files (`$AZ_BATCHAI_JOB_TEMP/run_token/*token.txt`):
// processes of one run pass refreshed run tokens to each other through them. Each file holds one
// Fernet token of the UTF-8 run token, under the key derived from `AZUREML_RUN_TOKEN_PASS` and
// `AZUREML_RUN_TOKEN_RAND`. All file-system access goes through injectable functions whose
// defaults come from `src/env.ts`, so runtimes without a file system simply pass none.
import { _deriveRunTokenKey, _fernetOpen, _fernetSeal, _importFernetKey } from '../_fernet.ts'
import type { _FernetKey } from '../_fernet.ts'
import { _readDir, _writeTextFile, defaultFileReader, type Env, type FileReader } from '../env.ts'
import { _jwtExpiry } from '../jwt.ts'

/** Lists the names (not paths) of the files in a directory. */
export type DirectoryLister = (path: string) => Promise<string[]>

/** Writes a text file, creating its directory if needed. */
export type TextFileWriter = (path: string, text: string) => Promise<void>

/**
 * File-system functions for the run's shared token files. Each defaults to the runtime's own
 * (Deno), and elsewhere to a refusal, which simply turns sharing off.
 */
export interface RunTokenFiles {
  /** Lists file names in a directory (default `Deno.readDir`). */
  readDir?: DirectoryLister
  /** Reads a text file (default `Deno.readTextFile`). */
  readFile?: FileReader
  /** Writes a text file atomically, creating its directory (default: `Deno` write + rename). */
  writeFile?: TextFileWriter
}

/** Where and how the files are shared, when sharing is on. */
export interface _Sharing {
  /** `$AZ_BATCHAI_JOB_TEMP/run_token`. */
  readonly dir: string
  readonly readDir: DirectoryLister
  readonly readFile: FileReader
  readonly writeFile: TextFileWriter
  /** The Fernet key, derived once (PBKDF2 is deliberately slow). */
  readonly key: () => Promise<_FernetKey>
}

/**
 * Largest token file read, in characters (64 Ki): a Fernet token of a JWT is a few kB. A literal:
 * bundlers keep module-level arithmetic even when nothing uses it.
 */
const MAX_FILE_CHARS = 65_536
/** Files tried, newest first, before giving up (a partly written or corrupt one is skipped). */
const MAX_CANDIDATES = 8
/** Seconds from 0001-01-01T00:00:00Z to the Unix epoch, as .NET and Python `datetime` count. */
const EPOCH_OFFSET_S = 62_135_596_800

/**
 * Sharing is on when `AZUREML_DISABLE_REFRESHED_TOKEN_SHARING` is unset or empty, both
 * `AZUREML_RUN_TOKEN_PASS` and `AZUREML_RUN_TOKEN_RAND` are set, and `AZ_BATCHAI_JOB_TEMP` names
 * the job's temporary directory.
 */
export function _sharingFromEnv(env: Env, io: RunTokenFiles = {}): _Sharing | undefined {
  if (env.AZUREML_DISABLE_REFRESHED_TOKEN_SHARING) return undefined
  const pass = env.AZUREML_RUN_TOKEN_PASS
  const rand = env.AZUREML_RUN_TOKEN_RAND
  const temp = env.AZ_BATCHAI_JOB_TEMP
  if (!pass || !rand || !temp) return undefined
  let key: Promise<_FernetKey> | undefined
  return {
    dir: temp.replace(/\/+$/, '') + '/run_token',
    readDir: io.readDir ?? _readDir,
    readFile: io.readFile ?? defaultFileReader,
    writeFile: io.writeFile ?? _writeTextFile,
    key: () => {
      if (key === undefined) {
        key = _deriveRunTokenKey(pass, rand).then(_importFernetKey)
        // A failure is reported to the caller each time; derive again next time.
        key.catch(() => (key = undefined))
      }
      return key
    },
  }
}

/** Splits a name into text and digit runs, digits as numbers (a "natural" sort key). */
function naturalKey(name: string): (string | bigint)[] {
  return name.split(/(\d+)/).map((part, i) => (i % 2 === 1 ? BigInt(part) : part))
}

/** Compares two names in natural order (digit runs compared as integers). */
export function _naturalCompare(a: string, b: string): number {
  const ka = naturalKey(a)
  const kb = naturalKey(b)
  for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
    const x = ka[i]!
    const y = kb[i]!
    if (x === y) continue
    // Positions alternate text/digits identically in both keys, so x and y share a type.
    return x < y ? -1 : 1
  }
  return ka.length - kb.length
}

/** A token read from a shared file. */
export interface _SharedToken {
  /** The run token. */
  token: string
  /** Its JWT `exp`, epoch seconds. */
  expiresOn: number
}

/**
 * The newest readable run token in the shared directory, or `undefined`. Files whose names contain
 * `token.txt` are taken in descending natural order; one that is unreadable, corrupt, encrypted
 * under another key or not a JWT with `exp` is skipped. Never throws.
 */
export async function _readSharedToken(sharing: _Sharing): Promise<_SharedToken | undefined> {
  try {
    const names = (await sharing.readDir(sharing.dir)).filter((n) => n.includes('token.txt'))
    names.sort((a, b) => _naturalCompare(b, a))
    const key = await sharing.key()
    for (const name of names.slice(0, MAX_CANDIDATES)) {
      try {
        const text = await sharing.readFile(`${sharing.dir}/${name}`)
        if (text.length > MAX_FILE_CHARS) continue
        const token = new TextDecoder('utf-8', { fatal: true }).decode(await _fernetOpen(key, text))
        return { token, expiresOn: _jwtExpiry(token, 'shared run token') }
      } catch {
        // A partial, corrupt or foreign file: try the next newest.
      }
    }
  } catch {
    // No directory listing or no key: nothing shared.
  }
  return undefined
}

/**
 * The file name the Python SDK uses: `<seconds since 0001-01-01 as a float>_<pid>_token.txt`.
 * There is no process id on the web, so a random number stands in for it.
 */
export function _tokenFileName(nowMs: number): string {
  const seconds = String((nowMs + EPOCH_OFFSET_S * 1000) / 1000)
  const id = 1 + (crypto.getRandomValues(new Uint32Array(1))[0]! % 2_147_483_646)
  return `${seconds.includes('.') ? seconds : seconds + '.0'}_${id}_token.txt`
}

/** Encrypts and writes a refreshed run token for sibling processes. Never throws. */
export async function _writeSharedToken(
  sharing: _Sharing,
  token: string,
  nowMs: number,
): Promise<boolean> {
  try {
    const sealed = await _fernetSeal(await sharing.key(), token, Math.floor(nowMs / 1000))
    await sharing.writeFile(`${sharing.dir}/${_tokenFileName(nowMs)}`, sealed)
    return true
  } catch {
    return false
  }
}
