// deno task bench:bundle — what a user pays in bundle bytes: each entry in
// test/_fixtures/runtimes/bundle_*.ts is bundled and minified with esbuild
// (`--bundle --minify --format=esm --platform=neutral`, as a Worker bundler would) and measured raw
// and gzipped (`CompressionStream('gzip')`, default level). Each credential entry is measured twice:
// importing from the package root (`mod.ts`, relying on tree shaking) and from the credential's
// own module (what a subpath export such as `@aml-edge/auth/service-principal` would give).
//
// Flags: `--check` exits 1 when a target is missed; `--modules N` lists the N biggest source
// modules of each bundle (default 6); `--json` prints the figures as JSON instead of tables.
// deno-lint-ignore-file no-console
import * as esbuild from 'esbuild'

const FIXTURES = new URL('../test/_fixtures/runtimes/', import.meta.url)
const ROOT = new URL('../', import.meta.url).pathname
/** 1 KB = 1,000 bytes here (the stricter reading of the targets). */
const KB = 1000

interface Entry {
  id: string
  what: string
  file: string
  /** The credential's own module, for the "subpath" variant. */
  own?: string
  /** Gzip target in bytes, if the issue sets one. */
  target?: number
}

const ENTRIES: Entry[] = [
  {
    id: 'a',
    what: 'service principal, secret',
    file: 'bundle_sp_secret.ts',
    own: 'src/credentials/service_principal.ts',
    target: 8 * KB,
  },
  {
    id: 'b',
    what: 'service principal, certificate',
    file: 'bundle_sp_certificate.ts',
    own: 'src/credentials/service_principal.ts',
  },
  { id: 'c', what: 'managed identity', file: 'bundle_msi.ts', own: 'src/credentials/msi.ts' },
  { id: 'd', what: 'whole module (export * from mod.ts)', file: 'bundle_all.ts', target: 30 * KB },
  {
    id: 'e',
    what: 'core only (TokenAuthentication: base class, HTTP, cache, errors)',
    file: 'bundle_core.ts',
    own: 'src/credentials/token.ts',
  },
]

interface Measure {
  id: string
  what: string
  via: string
  bytes: number
  gzip: number
  target?: number
  modules: { path: string; bytes: number }[]
}

async function gzipSize(data: Uint8Array): Promise<number> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream('gzip'),
  )
  return (await new Response(stream).arrayBuffer()).byteLength
}

async function measure(entry: Entry, via: 'mod.ts' | 'own module'): Promise<Measure> {
  let contents = await Deno.readTextFile(new URL(entry.file, FIXTURES))
  if (via === 'own module') {
    contents = contents.replace(`'../../../mod.ts'`, `'../../../${entry.own}'`)
  }
  const result = await esbuild.build({
    stdin: { contents, loader: 'ts', resolveDir: FIXTURES.pathname, sourcefile: entry.file },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral',
    write: false,
    metafile: true,
    logLevel: 'silent',
  })
  const out = result.outputFiles[0]!.contents
  const output = Object.values(result.metafile.outputs)[0]!
  const modules = Object.entries(output.inputs)
    .map(([path, v]) => ({ path: path.replace(ROOT, ''), bytes: v.bytesInOutput }))
    .filter((m) => m.bytes > 0)
    .sort((x, y) => y.bytes - x.bytes)
  return {
    id: entry.id,
    what: entry.what,
    via,
    bytes: out.byteLength,
    gzip: await gzipSize(out),
    ...(entry.target !== undefined ? { target: entry.target } : {}),
    modules,
  }
}

const args = Deno.args
const topN = Number(args[args.indexOf('--modules') + 1] ?? 6) || 6
const measures: Measure[] = []
try {
  for (const entry of ENTRIES) {
    measures.push(await measure(entry, 'mod.ts'))
    if (entry.own) measures.push(await measure(entry, 'own module'))
  }
} finally {
  await esbuild.stop()
}

const fmt = (n: number) => n.toLocaleString('en-US')
const verdict = (m: Measure) => {
  if (m.target === undefined) return '—'
  const gap = m.gzip - m.target
  return gap <= 0
    ? `≤ ${fmt(m.target)}: met (${fmt(-gap)} to spare)`
    : `≤ ${fmt(m.target)}: MISSED by ${fmt(gap)}`
}

if (args.includes('--json')) {
  console.log(JSON.stringify({ esbuild: esbuild.version, measures }, null, 2))
} else {
  console.log(
    `esbuild ${esbuild.version} --bundle --minify --format=esm --platform=neutral; ` +
      `gzip = CompressionStream('gzip'); Deno ${Deno.version.deno}`,
  )
  console.log()
  console.log('| entry | imported from | minified bytes | gzip bytes | gzip target |')
  console.log('| --- | --- | ---: | ---: | --- |')
  for (const m of measures) {
    console.log(
      `| (${m.id}) ${m.what} | ${m.via} | ${fmt(m.bytes)} | ${fmt(m.gzip)} | ${verdict(m)} |`,
    )
  }
  for (const m of measures) {
    console.log()
    console.log(`(${m.id}) ${m.what} via ${m.via}: biggest modules (minified bytes in the bundle)`)
    for (const mod of m.modules.slice(0, topN)) {
      console.log(`  ${fmt(mod.bytes).padStart(7)}  ${mod.path}`)
    }
    if (m.modules.length > topN) console.log(`  … ${m.modules.length - topN} more modules`)
  }
}

const missed = measures.filter((m) =>
  m.target !== undefined && m.via === 'mod.ts' && m.gzip > m.target
)
if (args.includes('--check') && missed.length > 0) {
  for (const m of missed) {
    console.error(
      `bundle budget missed: (${m.id}) ${m.what}: ${fmt(m.gzip)} B gzip > ${fmt(m.target!)}`,
    )
  }
  Deno.exit(1)
}
