// The Worker of the workerd leg of the runtime matrix: POST / with the smoke env (JSON, without
// `lib`) runs the portable smoke suite inside workerd against the public API bundled into this
// Worker, and answers with the results. Bundled with `deno bundle --platform browser`.
import * as lib from '../../../mod.ts'
import { smoke, type SmokeEnv } from '../../runtimes/smoke.ts'

export default {
  async fetch(request: Request): Promise<Response> {
    if (request.method !== 'POST') return new Response('POST the smoke env', { status: 405 })
    const data = await request.json() as Omit<SmokeEnv, 'lib'>
    return Response.json(await smoke({ ...data, lib }))
  },
}
