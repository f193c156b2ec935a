/**
 * Bundles the broker for workerd: `deno bundle --platform browser --format esm` of
 * `src/index.ts` into one ES module (hono, jose and the module included). Used by `dev.ts`, the
 * integration tests and the benchmark; `deno task broker:build` writes `dist/token-broker/index.js`.
 * Also reads `wrangler.jsonc`, so that local runs use the deployed compatibility date.
 *
 * @module
 */
// deno-lint-ignore-file no-console

/** The broker's directory. */
export const BROKER_DIR: string = new URL('.', import.meta.url).pathname.replace(/\/$/, '')
/** The repository root. */
export const REPO_ROOT: string = new URL('../..', import.meta.url).pathname.replace(/\/$/, '')

/**
 * Bundles `src/index.ts` into `outFile`.
 *
 * @param outFile the output path (its directory is created)
 * @param options `minify` for a deployable size
 * @returns `outFile`
 * @throws {Error} with deno's output when bundling fails
 */
export async function bundleBroker(
  outFile: string,
  options: { minify?: boolean; entry?: string } = {},
): Promise<string> {
  const dir = outFile.slice(0, outFile.lastIndexOf('/'))
  if (dir) await Deno.mkdir(dir, { recursive: true })
  const args = [
    'bundle',
    '--quiet',
    '--config',
    `${REPO_ROOT}/deno.json`,
    '--platform',
    'browser',
    '--format',
    'esm',
    ...(options.minify ? ['--minify'] : []),
    '-o',
    outFile,
    options.entry ?? `${BROKER_DIR}/src/index.ts`,
  ]
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdout: 'piped',
    stderr: 'piped',
    env: { NO_COLOR: '1' },
  }).output()
  if (out.code !== 0) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(out.stderr)}`)
  }
  return outFile
}

/** Strips `//` and `/* *\/` comments and trailing commas from JSONC, leaving strings intact. */
export function parseJsonc(text: string): unknown {
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (ch === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      out += text.slice(i, j + 1)
      i = j
    } else if (ch === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++
      out += '\n'
    } else if (ch === '/' && text[i + 1] === '*') {
      i = text.indexOf('*/', i + 2) + 1
      if (i === 0) throw new SyntaxError('unterminated comment')
    } else out += ch
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'))
}

/** The parts of wrangler.jsonc the local runs use. */
export interface WranglerConfig {
  /** Worker name. */
  name: string
  /** Pinned compatibility date. */
  compatibility_date: string
  /** Compatibility flags. */
  compatibility_flags?: string[]
  /** Rate limiters. */
  ratelimits?: { name: string; namespace_id: string; simple: { limit: number; period: number } }[]
}

/**
 * Reads `workers/token-broker/wrangler.jsonc`.
 *
 * @returns the config
 */
export async function readWranglerConfig(): Promise<WranglerConfig> {
  return parseJsonc(await Deno.readTextFile(`${BROKER_DIR}/wrangler.jsonc`)) as WranglerConfig
}

if (import.meta.main) {
  const out = Deno.args.find((a) => !a.startsWith('--')) ??
    `${REPO_ROOT}/dist/token-broker/index.js`
  await bundleBroker(out, { minify: Deno.args.includes('--minify') })
  const size = (await Deno.stat(out)).size
  console.log(`bundled ${out} (${(size / 1024).toFixed(1)} KiB)`)
}
