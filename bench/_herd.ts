// A cold herd: N concurrent getToken() calls on an empty cache, answered by a loopback token
// server over real HTTP. Returns how many upstream requests were made.
import { createTokenCache, TokenAuthentication } from '../mod.ts'

export async function herd(n: number): Promise<{ requests: number; ms: number }> {
  let requests = 0
  await using server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {} }, () => {
    requests++
    return Response.json({ access_token: 'tok', expires_in: 3600 })
  })
  const url = `http://127.0.0.1:${server.addr.port}/token`
  const auth = new TokenAuthentication(async () => {
    const body = await (await fetch(url)).json()
    return { token: body.access_token, expiresOn: Math.floor(Date.now() / 1000) + body.expires_in }
  }, { cache: createTokenCache() })
  const t0 = performance.now()
  await Promise.all(Array.from({ length: n }, () => auth.getToken()))
  return { requests, ms: performance.now() - t0 }
}
