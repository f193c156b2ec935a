// deno-lint-ignore-file no-console
/**
 * `deno task emulator`: runs the identity emulator on loopback.
 *
 * ```sh
 * deno task emulator [--port 8400] [--hostname 127.0.0.1] [--config emulator.json]
 *                    [--tls-cert cert.pem --tls-key key.pem] [--arc-key-dir DIR]
 *                    [--print-env SOURCE]
 * ```
 *
 * @module
 */
import {
  DEMO,
  type EmulatorConfig,
  emulatorEnv,
  type EmulatorEnvSource,
  ENV_SOURCES,
} from './src/index.ts'
import { startEmulator } from './serve.ts'

const USAGE = `Usage: deno task emulator [options]

  --port N             port to listen on (default 8400; 0 = any free port)
  --hostname H         interface to bind (default 127.0.0.1)
  --config FILE        JSON configuration (see workers/emulator/README.md)
  --tls-cert FILE      serve https with this PEM certificate (chain)
  --tls-key FILE       ... and this PEM key
  --arc-key-dir DIR    folder for Azure Arc key files (default: a temporary folder)
  --print-env SOURCE   print the env vars for SOURCE and exit
                       (${ENV_SOURCES.join(', ')})
  --help               this text
`

function parseArgs(args: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    const eq = a.indexOf('=')
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1)
    } else if (a === '--help') {
      out.help = true
    } else {
      const v = args[i + 1]
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`)
      out[a.slice(2)] = v
      i++
    }
  }
  const known = [
    'port',
    'hostname',
    'config',
    'tls-cert',
    'tls-key',
    'arc-key-dir',
    'print-env',
    'help',
  ]
  for (const k of Object.keys(out)) if (!known.includes(k)) throw new Error(`unknown option --${k}`)
  return out
}

/** Reads a JSON config; `clients[].certificateFiles` are read relative to the file. */
async function loadConfig(path: string): Promise<EmulatorConfig> {
  const config = JSON.parse(await Deno.readTextFile(path)) as EmulatorConfig & {
    clients?: { certificateFiles?: string[]; certificates?: string[] }[]
  }
  const base = new URL(`file://${await Deno.realPath(path)}`)
  for (const c of config.clients ?? []) {
    for (const f of c.certificateFiles ?? []) {
      c.certificates = [...(c.certificates ?? []), await Deno.readTextFile(new URL(f, base))]
    }
    delete c.certificateFiles
  }
  return config
}

async function main(): Promise<number> {
  let flags: Record<string, string | true>
  try {
    flags = parseArgs(Deno.args)
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`)
    return 2
  }
  if (flags.help) {
    console.log(USAGE)
    return 0
  }
  const str = (k: string) => (typeof flags[k] === 'string' ? flags[k] as string : undefined)
  const port = Number(str('port') ?? 8400)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('--port must be an integer between 0 and 65535')
    return 2
  }
  const hostname = str('hostname') ?? '127.0.0.1'
  const certFile = str('tls-cert')
  const keyFile = str('tls-key')
  if (Boolean(certFile) !== Boolean(keyFile)) {
    console.error('--tls-cert and --tls-key go together')
    return 2
  }
  const config = str('config') ? await loadConfig(str('config')!) : {}
  const printEnv = str('print-env')
  if (printEnv) {
    if (!ENV_SOURCES.includes(printEnv as EmulatorEnvSource)) {
      console.error(`--print-env must be one of: ${ENV_SOURCES.join(', ')}`)
      return 2
    }
    const host = hostname === '0.0.0.0' ? '127.0.0.1' : hostname
    const origin = `${certFile ? 'https' : 'http'}://${host}:${port}`
    const secret = config.managedIdentity?.secret
    const env = emulatorEnv(origin, printEnv as EmulatorEnvSource, secret ? { secret } : {})
    for (const [k, v] of Object.entries(env)) console.log(`export ${k}='${v}'`)
    return 0
  }
  const emu = await startEmulator({
    port,
    hostname,
    config,
    ...(certFile && keyFile
      ? { tls: { cert: await Deno.readTextFile(certFile), key: await Deno.readTextFile(keyFile) } }
      : {}),
    ...(str('arc-key-dir') ? { arcKeyDir: str('arc-key-dir')! } : {}),
  })
  const demo = config.demo !== false
  const lines = [
    `Identity emulator listening on ${emu.origin}`,
    `  authority host:   ${emu.origin}   (token endpoint: ${emu.origin}/<tenant>/oauth2/v2.0/token)`,
    `  control API:      ${emu.origin}/__emulator/`,
    `  Arc key folder:   ${emu.arcKeyDir}`,
  ]
  if (demo) {
    lines.push(
      '',
      'Demo credentials:',
      `  tenant            ${DEMO.tenantId} (${DEMO.tenantDomain})`,
      `  client id         ${DEMO.clientId}`,
      `  client secret     ${DEMO.clientSecret}`,
      `  public client id  ${DEMO.publicClientId}`,
      `  user              ${DEMO.user.username} (${DEMO.user.objectId})`,
      `  system identity   client ${DEMO.systemIdentity.clientId}, object ${DEMO.systemIdentity.objectId}`,
      `  user identity     client ${DEMO.userIdentity.clientId}, object ${DEMO.userIdentity.objectId}`,
      `  MSI secret        ${emu.settings().managedIdentity.secret}`,
      `  subscriptions     ${DEMO.subscriptions.map((s) => s.subscriptionId).join(', ')}`,
    )
  }
  lines.push('', 'Managed identity env (deno task emulator --print-env <source>):')
  for (const source of ENV_SOURCES.filter((s) => s !== 'service-principal')) {
    lines.push(
      `  ${source}: ${Object.entries(emu.env(source)).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    )
  }
  console.log(lines.join('\n'))
  const stop = () => {
    emu.stop().then(() => Deno.exit(0))
  }
  Deno.addSignalListener('SIGINT', stop)
  if (Deno.build.os !== 'windows') Deno.addSignalListener('SIGTERM', stop)
  return await new Promise<number>(() => {})
}

if (import.meta.main) Deno.exit(await main())
