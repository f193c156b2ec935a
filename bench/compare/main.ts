// deno task bench:compare — aml-edge-auth against @azure/identity 4.14.1, side by side in one
// run, on Deno and on Node, against the project's identity emulator over https (MSAL insists on
// https authorities; the emulator serves the fixture `localhost` certificate, and every client
// process trusts the fixture CA through `--cert` and `NODE_EXTRA_CA_CERTS`).
//
// Measures, each library in its own fresh process (bench/compare/client.ts on Deno,
// bench/compare/client_node.mjs on Node, both running bench/compare/phases.ts):
// - import time: `await import(...)` timed inside fresh `deno eval` / `node -e` processes
//   (median of 5, after one warm-up run that fills the caches), and the whole process time;
// - first token (secret, certificate): a new credential's first getToken(), median of 5 fresh
//   processes, and the upstream requests the emulator logged;
// - cached getToken(): calls/s over 2 s, p50/p99 of 20,000 timed calls;
// - cold herds of 200 and 1000 concurrent callers: upstream requests and wall time (the emulator
//   signs every token it issues, on the same 2 cores, as Entra would have to);
// - 60 s tokens: 100 calls, one every 480 ms (47.5 s), in real time, all four processes (2 libs x
//   2 runtimes) in parallel, each with its own client registered with 60 s tokens in its own
//   tenant so the log tells them apart; ours also on a fake clock (the `now` option) for 48 s and
//   for a simulated hour;
// - bundle: esbuild of a secret-credential entry for each library.
// Flags: `--quick` skips the 48 s real-time run; `--no-node` skips the Node columns.
// deno-lint-ignore-file no-console
import * as esbuild from 'esbuild'
import { DEMO, type RequestLogEntry, startEmulator } from '../../workers/emulator/serve.ts'
import {
  caCertPath,
  localhostCertPem,
  localhostKeyPem,
  rsa2048CertPem,
  rsa2048KeyPem,
} from '../../test/_fixtures/certs.ts'
import type { Lib } from './client.ts'
import type { Phase, PhaseInput } from './phases.ts'

type Runtime = 'deno' | 'node'
type PhaseResult = Record<string, number | boolean | string> & { ok: boolean; error?: string }

const ROOT = new URL('../../', import.meta.url).pathname
const CLIENT_DENO = new URL('./client.ts', import.meta.url).pathname
const CLIENT_NODE = new URL('./client_node.mjs', import.meta.url).pathname
const PHASES = new URL('./phases.ts', import.meta.url).pathname
const SCOPE = 'https://management.core.windows.net//.default'
const CERT_CLIENT = '6f1e2d3c-4b5a-4697-8887-1a2b3c4d5e98'
const SIXTY_SECRET = 'sixty-second-client-secret'
const LIBS: Lib[] = ['ours', 'azure']
const quick = Deno.args.includes('--quick')
const RUNTIMES: Runtime[] = Deno.args.includes('--no-node') ? ['deno'] : ['deno', 'node']
const REPEAT_FIRST = 5

/** One 60 s-token client per (runtime, library), each in its own tenant. */
const SIXTY: Record<Runtime, Record<Lib, { tenantId: string; clientId: string }>> = {
  deno: {
    ours: { tenantId: DEMO.tenantId, clientId: '60000000-0000-4000-8000-00000000a001' },
    azure: { tenantId: DEMO.secondTenantId, clientId: '60000000-0000-4000-8000-00000000a002' },
  },
  node: {
    ours: {
      tenantId: '60000000-0000-4000-8000-0000000000b3',
      clientId: '60000000-0000-4000-8000-00000000a003',
    },
    azure: {
      tenantId: '60000000-0000-4000-8000-0000000000b4',
      clientId: '60000000-0000-4000-8000-00000000a004',
    },
  },
}

const decode = (b: Uint8Array) => new TextDecoder().decode(b)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

// ---------------------------------------------------------------------------------------------
// Machine

async function text(cmd: string, args: string[]): Promise<string> {
  try {
    return decode((await new Deno.Command(cmd, { args, stdout: 'piped' }).output()).stdout).trim()
  } catch {
    return '(not found)'
  }
}

const cpu = (await Deno.readTextFile('/proc/cpuinfo').catch(() => ''))
  .split('\n').find((l) => l.startsWith('model name'))?.split(':')[1]?.trim() ?? 'unknown CPU'
const machine = `${await text('nproc', [])} cores (nproc), CPU "${cpu}", ` +
  `${Math.round(Deno.systemMemoryInfo().total / 2 ** 30)} GiB RAM, ${Deno.build.os}; ` +
  `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), Node ${await text('node', ['--version'])}`

// ---------------------------------------------------------------------------------------------
// Builds for Node: our ESM build (the README's recipe) and the phases

const work = await Deno.makeTempDir({ prefix: 'aml-compare-' })
const DIST = `${work}/aml-edge-auth.mjs`
const PHASES_JS = `${work}/phases.mjs`
const EMPTY = `${work}/empty.mjs`
await Deno.writeTextFile(EMPTY, 'export const empty = true\n')
for (const [entry, out] of [[`${ROOT}mod.ts`, DIST], [PHASES, PHASES_JS]]) {
  const b = await new Deno.Command(Deno.execPath(), {
    args: ['bundle', '--quiet', '--platform', 'browser', '--format', 'esm', '-o', out!, entry!],
    cwd: ROOT,
    stderr: 'piped',
  }).output()
  if (!b.success) throw new Error(`deno bundle ${entry} failed: ${decode(b.stderr)}`)
}

// ---------------------------------------------------------------------------------------------
// Import time

interface ImportTime {
  importMs: number
  processMs: number
}

async function importTime(runtime: Runtime, spec: string): Promise<ImportTime | string> {
  const code = `const t0 = performance.now(); await import(${JSON.stringify(spec)}); ` +
    `console.log(performance.now() - t0)`
  const [cmd, args] = runtime === 'deno'
    ? [Deno.execPath(), ['eval', '--quiet', code]]
    : ['node', ['--input-type=module', '-e', code]]
  const once = async () => {
    const t0 = performance.now()
    const out = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdout: 'piped',
      stderr: 'piped',
      env: { NO_COLOR: '1', NODE_NO_WARNINGS: '1' },
    }).output()
    const processMs = performance.now() - t0
    const ms = Number(decode(out.stdout).trim().split('\n').at(-1))
    if (!out.success || !Number.isFinite(ms)) throw new Error(decode(out.stderr).slice(0, 300))
    return { importMs: ms, processMs }
  }
  try {
    await once() // warm-up: fills the transpile, code and npm caches
    const runs: ImportTime[] = []
    for (let i = 0; i < 5; i++) runs.push(await once())
    return {
      importMs: median(runs.map((r) => r.importMs)),
      processMs: median(runs.map((r) => r.processMs)),
    }
  } catch (e) {
    return `fails: ${(e as Error).message.split('\n')[0]}`
  }
}

console.error('measuring import times …')
const imports = {
  deno: {
    ours: await importTime('deno', `file://${ROOT}mod.ts`),
    azure: await importTime('deno', '@azure/identity'),
  },
  node: {
    ours: await importTime('node', `file://${DIST}`),
    azure: await importTime('node', '@azure/identity'),
  },
  denoDist: await importTime('deno', `file://${DIST}`),
  // One credential's own entry (what a `@aml-edge/auth/service-principal` import loads); one at
  // a time, like every other measurement here.
  subpaths: {} as Record<string, ImportTime | string>,
  empty: {
    deno: await importTime('deno', `file://${EMPTY}`),
    node: await importTime('node', `file://${EMPTY}`),
  },
}

for (const name of ['service_principal', 'msi', 'core']) {
  imports.subpaths[name] = await importTime('deno', `file://${ROOT}src/public/${name}.ts`)
}

// ---------------------------------------------------------------------------------------------
// Emulator and phases

const emu = await startEmulator({
  tls: { cert: localhostCertPem, key: localhostKeyPem },
  config: {
    requestLogLimit: 100_000,
    tenants: [
      { id: SIXTY.node.ours.tenantId, displayName: 'Bench 3' },
      { id: SIXTY.node.azure.tenantId, displayName: 'Bench 4' },
    ],
    clients: [
      { clientId: CERT_CLIENT, tenantId: DEMO.tenantId, certificates: [rsa2048CertPem] },
      ...RUNTIMES.flatMap((r) =>
        LIBS.map((l) => ({
          clientId: SIXTY[r][l].clientId,
          tenantId: SIXTY[r][l].tenantId,
          secrets: [SIXTY_SECRET],
          tokenLifetimeSeconds: 60,
        }))
      ),
    ],
  },
})

const baseInput: PhaseInput = {
  origin: emu.origin,
  tenantId: DEMO.tenantId,
  clientId: DEMO.clientId,
  clientSecret: DEMO.clientSecret,
  certClientId: CERT_CLIENT,
  certKeyPem: rsa2048KeyPem,
  certPem: rsa2048CertPem,
  scope: SCOPE,
}

async function spawnPhase(
  runtime: Runtime,
  lib: Lib,
  phase: Phase,
  input: PhaseInput,
): Promise<PhaseResult> {
  const json = JSON.stringify(input)
  const [cmd, args] = runtime === 'deno'
    ? [Deno.execPath(), [
      'run',
      '-A',
      '--quiet',
      '--cert',
      caCertPath,
      CLIENT_DENO,
      lib,
      phase,
      json,
    ]]
    : ['node', [CLIENT_NODE, lib, phase, json, DIST, PHASES_JS]]
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdout: 'piped',
    stderr: 'piped',
    // @azure/identity's Node HTTP client trusts NODE_EXTRA_CA_CERTS (not --cert); every process
    // gets the same trust settings.
    env: { NODE_EXTRA_CA_CERTS: caCertPath, NO_COLOR: '1', NODE_NO_WARNINGS: '1' },
    signal: AbortSignal.timeout(240_000),
  }).output()
  const line = decode(out.stdout).trim().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(line) as PhaseResult
  } catch {
    return { ok: false, error: decode(out.stderr).trim().split('\n')[0] ?? 'no output' }
  }
}

interface Counted {
  result: PhaseResult
  requests: number
  tokenRequests: number
  metadataRequests: number
}

function count(entries: RequestLogEntry[]): Omit<Counted, 'result'> {
  const token = entries.filter((r) => r.route === 'entra.token').length
  return {
    requests: entries.length,
    tokenRequests: token,
    metadataRequests: entries.length - token,
  }
}

async function phase(
  runtime: Runtime,
  lib: Lib,
  name: Phase,
  extra: Partial<PhaseInput> = {},
): Promise<Counted> {
  emu.clearRequests()
  const result = await spawnPhase(runtime, lib, name, { ...baseInput, ...extra })
  if (!result.ok) console.error(`  ${runtime}/${lib} ${name} failed: ${result.error}`)
  return { result, ...count(emu.requests()) }
}

type Table = Record<Runtime, Record<Lib, Counted>>
const results: Record<string, Table> = {}
const empty = () => ({ deno: {}, node: {} }) as Table

for (const [key, name] of [['first', 'first'], ['firstCert', 'first-cert']] as const) {
  console.error(`running ${key} (x${REPEAT_FIRST}) …`)
  const runs: Record<string, Counted[]> = {}
  for (let i = 0; i < REPEAT_FIRST; i++) {
    for (const runtime of RUNTIMES) {
      for (const lib of LIBS) {
        ;(runs[`${runtime}/${lib}`] ??= []).push(await phase(runtime, lib, name))
      }
    }
  }
  results[key] = empty()
  for (const runtime of RUNTIMES) {
    for (const lib of LIBS) {
      const all = runs[`${runtime}/${lib}`]!
      const ok = all.filter((c) => c.result.ok)
      results[key]![runtime][lib] = ok.length === 0 ? all[0]! : {
        ...ok[0]!,
        result: { ...ok[0]!.result, firstMs: median(ok.map((c) => Number(c.result.firstMs))) },
        requests: Math.max(...ok.map((c) => c.requests)),
      }
    }
  }
}
for (
  const [key, name, extra] of [
    ['cached', 'cached', { durationMs: 2000, samples: 20_000 }],
    ['herd200', 'herd', { callers: 200 }],
    ['herd1000', 'herd', { callers: 1000 }],
  ] as const
) {
  console.error(`running ${key} …`)
  results[key] = empty()
  for (const runtime of RUNTIMES) {
    for (const lib of LIBS) results[key]![runtime][lib] = await phase(runtime, lib, name, extra)
  }
}

const sixtyInput = (runtime: Runtime, lib: Lib, extra: Partial<PhaseInput> = {}): PhaseInput => ({
  ...baseInput,
  ...SIXTY[runtime][lib],
  clientSecret: SIXTY_SECRET,
  calls: 100,
  spacingMs: 480,
  ...extra,
})
console.error('running the 60 s-token runs on a fake clock (ours) …')
emu.clearRequests()
const fake48 = await spawnPhase('deno', 'ours', 'sixty-fake', sixtyInput('deno', 'ours'))
const fake48Count = count(emu.requests())
emu.clearRequests()
const fakeHour = await spawnPhase(
  'deno',
  'ours',
  'sixty-fake',
  sixtyInput('deno', 'ours', { spacingMs: 1000, spanMs: 3_600_000 }),
)
const fakeHourCount = count(emu.requests())
let sixty: Table | undefined
if (!quick) {
  console.error('running the 60 s-token run in real time (48 s, every process in parallel) …')
  emu.clearRequests()
  const pairs = RUNTIMES.flatMap((r) => LIBS.map((l) => [r, l] as const))
  const outs = await Promise.all(
    pairs.map(([r, l]) => spawnPhase(r, l, 'sixty', sixtyInput(r, l))),
  )
  const log = emu.requests()
  sixty = empty()
  pairs.forEach(([r, l], i) => {
    const tenant = SIXTY[r][l].tenantId
    sixty![r][l] = {
      result: outs[i]!,
      ...count(log.filter((e) => e.path.startsWith(`/${tenant}/`))),
    }
  })
}
await emu.stop()

// ---------------------------------------------------------------------------------------------
// Bundles

type Size = { bytes: number; gzip: number } | { errors: number }

async function bundleSize(contents: string, options: esbuild.BuildOptions): Promise<Size> {
  try {
    const r = await esbuild.build({
      stdin: { contents, loader: 'ts', resolveDir: ROOT },
      bundle: true,
      minify: true,
      format: 'esm',
      write: false,
      logLevel: 'silent',
      ...options,
    })
    const out = r.outputFiles![0]!.contents
    const gz = new Blob([out as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new CompressionStream('gzip'))
    return { bytes: out.byteLength, gzip: (await new Response(gz).arrayBuffer()).byteLength }
  } catch (e) {
    return { errors: (e as { errors?: unknown[] }).errors?.length ?? -1 }
  }
}
console.error('bundling …')
const oursEntry = `import { ServicePrincipalAuthentication } from './mod.ts'
export const h = (t: string, c: string, s: string) => new ServicePrincipalAuthentication(
  { tenantId: t, servicePrincipalId: c, servicePrincipalPassword: s, env: {} }).getToken()`
const azureEntry = `import { ClientSecretCredential } from '@azure/identity'
export const h = (t: string, c: string, s: string) =>
  new ClientSecretCredential(t, c, s).getToken('${SCOPE}')`
const workerd: esbuild.BuildOptions = {
  platform: 'neutral',
  conditions: ['workerd', 'worker', 'browser'],
  mainFields: ['browser', 'module', 'main'],
}
const bundles = {
  ours: await bundleSize(oursEntry, workerd),
  azureNode: await bundleSize(azureEntry, { platform: 'node' }),
  azureWorkerd: await bundleSize(azureEntry, workerd),
}
await esbuild.stop()
await Deno.remove(work, { recursive: true })

// ---------------------------------------------------------------------------------------------
// Report

const n = (v: unknown, digits = 0) =>
  typeof v === 'number' && Number.isFinite(v)
    ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a'
/**
 * `a / b` as "12x" (with `suffix`, e.g. " less"); below 1 it is turned around and says so with
 * `inverse` (e.g. "1.2x more"), so that every ratio reads in favour of the side it names.
 */
const ratio = (a: unknown, b: unknown, suffix = '', inverse = ' (inverse)') => {
  if (typeof a !== 'number' || typeof b !== 'number' || !(a > 0) || !(b > 0)) return '—'
  const r = a / b >= 1 ? a / b : b / a
  return `${n(r, r < 10 ? 1 : 0)}x${a / b >= 1 ? suffix : inverse}`
}
const field = (t: Table | undefined, r: Runtime, l: Lib, f: string) => {
  const c = t?.[r]?.[l]
  return c?.result.ok ? c.result[f] : undefined
}
const failed = (t: Table | undefined, r: Runtime, l: Lib) => {
  const c = t?.[r]?.[l]
  return c && !c.result.ok ? `fails: ${String(c.result.error).slice(0, 90)}` : undefined
}
const reqs = (t: Table | undefined, r: Runtime, l: Lib) => {
  const c = t?.[r]?.[l]
  if (c === undefined) return 'n/a'
  if (!c.result.ok) return failed(t, r, l)!
  return c.metadataRequests > 0
    ? `${c.requests} (${c.tokenRequests} token + ${c.metadataRequests} metadata)`
    : `${c.requests}`
}
const imp = (v: ImportTime | string, f: keyof ImportTime, d = 1) =>
  typeof v === 'string' ? v : n(v[f], d)
const impNum = (v: ImportTime | string, f: keyof ImportTime) =>
  typeof v === 'string' ? undefined : v[f]
const size = (b: Size) =>
  'errors' in b ? `fails (${b.errors} errors)` : `${n(b.bytes)} / ${n(b.gzip)}`

type Row = [string, (r: Runtime) => [string, string, string]]
const numRow = (t: string, key: string, f: string, d: number, better: 'high' | 'low'): Row => [
  t,
  (r) => {
    const o = field(results[key], r, 'ours', f)
    const a = field(results[key], r, 'azure', f)
    return [
      failed(results[key], r, 'ours') ?? n(o, d),
      failed(results[key], r, 'azure') ?? n(a, d),
      better === 'high' ? ratio(o, a, '', ' fewer') : ratio(a, o, ' less', ' more'),
    ]
  },
]
const reqRow = (t: string, key: string): Row => [
  t,
  (r) => [reqs(results[key], r, 'ours'), reqs(results[key], r, 'azure'), ''],
]

const rows: Row[] = [
  [
    'import, in-process (ms, median of 5; ours: Deno mod.ts source, Node ESM build)',
    (r) => [
      imp(imports[r].ours, 'importMs'),
      imp(imports[r].azure, 'importMs'),
      ratio(
        impNum(imports[r].azure, 'importMs'),
        impNum(imports[r].ours, 'importMs'),
        ' less',
        ' more',
      ),
    ],
  ],
  [
    "import of an empty module: the runtime's floor (ms, median of 5)",
    (r) => [imp(imports.empty[r], 'importMs'), imp(imports.empty[r], 'importMs'), ''],
  ],
  [
    'process start → import → exit (ms, median of 5)',
    (r) => [
      imp(imports[r].ours, 'processMs', 0),
      imp(imports[r].azure, 'processMs', 0),
      ratio(
        impNum(imports[r].azure, 'processMs'),
        impNum(imports[r].ours, 'processMs'),
        ' less',
        ' more',
      ),
    ],
  ],
  numRow(
    `first token, secret: latency (ms, median of ${REPEAT_FIRST} processes)`,
    'first',
    'firstMs',
    1,
    'low',
  ),
  reqRow('first token, secret: upstream requests', 'first'),
  numRow(
    `first token, certificate: latency (ms, median of ${REPEAT_FIRST})`,
    'firstCert',
    'firstMs',
    1,
    'low',
  ),
  reqRow('first token, certificate: upstream requests', 'firstCert'),
  numRow('cached getToken(): calls/s', 'cached', 'perSecond', 0, 'high'),
  numRow('cached getToken(): p50 per call (µs)', 'cached', 'p50Us', 2, 'low'),
  numRow('cached getToken(): p99 per call (µs)', 'cached', 'p99Us', 2, 'low'),
  reqRow('200 concurrent cold callers: upstream requests', 'herd200'),
  numRow('200 concurrent cold callers: wall time (ms)', 'herd200', 'ms', 0, 'low'),
  reqRow('1000 concurrent cold callers: upstream requests', 'herd1000'),
  numRow('1000 concurrent cold callers: wall time (ms)', 'herd1000', 'ms', 0, 'low'),
  [
    '60 s tokens, 100 calls over 47.5 s real time: upstream requests',
    (r) =>
      sixty
        ? [reqs(sixty, r, 'ours'), reqs(sixty, r, 'azure'), '']
        : ['skipped (--quick)', 'skipped (--quick)', ''],
  ],
  [
    '60 s tokens, same run: calls slower than 2 ms (waited for the network, or a pause)',
    (r) =>
      sixty
        ? [
          n(field(sixty, r, 'ours', 'callsThatWaited')),
          n(field(sixty, r, 'azure', 'callsThatWaited')),
          '',
        ]
        : ['skipped', 'skipped', ''],
  ],
]

const cols = RUNTIMES.flatMap((r) => {
  const name = r === 'deno' ? 'Deno' : 'Node'
  return [`${name}: aml-edge-auth`, `${name}: @azure/identity`, `${name}: ratio`]
})
console.log(`machine: ${machine}`)
console.log(
  'libraries: aml-edge-auth (this checkout; Node: its ESM build) vs @azure/identity 4.14.1 ' +
    '(its Node build, on Deno through npm: and on Node from node_modules)',
)
console.log(`emulator: https on 127.0.0.1 (fixture CA), scope ${SCOPE}`)
console.log()
console.log(`| measure | ${cols.join(' | ')} |`)
console.log(`| --- | ${cols.map(() => '---:').join(' | ')} |`)
for (const [title, cells] of rows) {
  console.log(`| ${title} | ${RUNTIMES.flatMap((r) => cells(r)).join(' | ')} |`)
}
console.log()
console.log('| aml-edge-auth only | value |')
console.log('| --- | ---: |')
console.log(
  `| import of the ESM build in Deno (ms, median of 5) | ${imp(imports.denoDist, 'importMs')} |`,
)
for (const [name, t] of Object.entries(imports.subpaths)) {
  const entry = name.replace('_', '-')
  console.log(
    `| import of the \`/${entry}\` entry in Deno, source (ms, median of 5) | ${
      imp(t, 'importMs')
    } |`,
  )
}
console.log(
  `| 60 s tokens, 100 calls over 48 s of fake time (\`now\` option): upstream requests | ${
    fake48.ok ? fake48Count.requests : `fails: ${fake48.error}`
  } |`,
)
console.log(
  `| 60 s tokens, 1 call/s for a simulated hour (3,600 calls): upstream requests | ${
    fakeHour.ok ? fakeHourCount.requests : `fails: ${fakeHour.error}`
  } |`,
)
console.log()
console.log('| bundle of a secret-credential entry (esbuild --bundle --minify) | bytes / gzip |')
console.log('| --- | ---: |')
console.log(`| aml-edge-auth, neutral platform + workerd conditions | ${size(bundles.ours)} |`)
console.log(`| @azure/identity, --platform=node | ${size(bundles.azureNode)} |`)
console.log(
  `| @azure/identity, neutral platform + workerd conditions (no nodejs_compat) | ${
    size(bundles.azureWorkerd)
  } |`,
)
console.log()
console.log(
  'details: ' + JSON.stringify({
    sixty: sixty &&
      Object.fromEntries(
        RUNTIMES.flatMap((r) => LIBS.map((l) => [`${r}/${l}`, sixty![r][l].result])),
      ),
    fake48,
    fakeHour,
    cached: Object.fromEntries(
      RUNTIMES.flatMap((r) => LIBS.map((l) => [`${r}/${l}`, results.cached?.[r]?.[l]?.result])),
    ),
    herdDistinctTokens: Object.fromEntries(
      RUNTIMES.flatMap((r) =>
        LIBS.map((l) => [
          `${r}/${l}`,
          [
            field(results.herd200, r, l, 'distinctTokens'),
            field(results.herd1000, r, l, 'distinctTokens'),
          ],
        ])
      ),
    ),
  }),
)
