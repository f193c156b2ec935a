// Bundle-size entry (e), for reference: the floor every credential shares (base class, HTTP layer,
// token cache, errors, clouds), measured through the smallest credential, a token callback.
import { TokenAuthentication } from '../../../mod.ts'

/** Returns an ARM bearer header from a token callback. */
export function armHeader(
  getToken: (resource: string) => Promise<{ token: string; expiresOn: number }>,
): Promise<{ Authorization: string }> {
  return new TokenAuthentication(getToken).getAuthenticationHeader()
}
