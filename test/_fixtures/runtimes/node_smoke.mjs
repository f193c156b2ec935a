// The Node leg of the runtime matrix: `node node_smoke.mjs <aml-edge-auth.mjs> <smoke.mjs>` with
// the smoke env (JSON, without `lib`) on stdin. It imports the ESM build of the module exactly as
// a Node user would (a file produced by `deno bundle --platform browser --format esm mod.ts`),
// runs the portable smoke suite with it, and prints the results as JSON on stdout. Only this
// driver touches Node APIs (argv, stdin); the module and the suite use web standards only.
import process from 'node:process'
import { pathToFileURL } from 'node:url'

const [libPath, smokePath] = process.argv.slice(2)
let input = ''
for await (const chunk of process.stdin) input += chunk
const lib = await import(pathToFileURL(libPath).href)
const { smoke } = await import(pathToFileURL(smokePath).href)
const results = await smoke({ ...JSON.parse(input), lib })
process.stdout.write(JSON.stringify({ node: process.versions.node, results }) + '\n')
