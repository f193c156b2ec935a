/**
 * Test certificates and keys (see `certs/README.md` for how they were made). Test-only: the
 * private keys are public.
 *
 * @module
 */

function read(name: string): string {
  return Deno.readTextFileSync(new URL(`./certs/${name}`, import.meta.url))
}

/** Password of `rsa2048.encrypted.pem` and `rsa2048.pfx`. */
export const FIXTURE_PASSWORD = 'aml-edge-auth-test'

/** RSA-2048 private key, unencrypted PKCS#8 PEM. */
export const rsa2048KeyPem: string = read('rsa2048.key.pem')
/** The same RSA-2048 key as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`). */
export const rsa2048Pkcs1Pem: string = read('rsa2048.pkcs1.pem')
/** The same RSA-2048 key as encrypted PKCS#8 PEM (password {@link FIXTURE_PASSWORD}). */
export const rsa2048EncryptedPem: string = read('rsa2048.encrypted.pem')
/** Self-signed certificate of the RSA-2048 key. */
export const rsa2048CertPem: string = read('rsa2048.cert.pem')
/** PKCS#12 of the RSA-2048 key and certificate (password {@link FIXTURE_PASSWORD}). */
export const rsa2048Pfx: Uint8Array = Deno.readFileSync(
  new URL('./certs/rsa2048.pfx', import.meta.url),
)
/** RSA-4096 private key, PKCS#8 PEM. */
export const rsa4096KeyPem: string = read('rsa4096.key.pem')
/** Self-signed certificate of the RSA-4096 key. */
export const rsa4096CertPem: string = read('rsa4096.cert.pem')
/** The test CA's private key (PKCS#8 PEM). */
export const caKeyPem: string = read('ca.key.pem')
/** The test CA certificate. */
export const caCertPem: string = read('ca.cert.pem')
/** Private key (PKCS#8 PEM) of the CA-issued client certificate. */
export const chainKeyPem: string = read('chain.key.pem')
/** The CA-issued client certificate followed by the CA certificate. */
export const chainPem: string = read('chain.pem')
/** TLS key for `localhost` / `127.0.0.1`, PKCS#8 PEM. */
export const localhostKeyPem: string = read('localhost.key.pem')
/** TLS certificate for `localhost` / `127.0.0.1`, issued by the test CA. */
export const localhostCertPem: string = read('localhost.cert.pem')
/** Absolute path of the test CA certificate, for `deno run --cert` / `DENO_CERT`. */
export const caCertPath: string = new URL('./certs/ca.cert.pem', import.meta.url).pathname
