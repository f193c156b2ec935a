/**
 * Azure Machine Learning and Microsoft Entra ID authentication for web-standard runtimes
 * (Deno, Node 20+, Bun, Cloudflare Workers), using only `fetch` and Web Crypto. The classes carry
 * the names of the Python SDK's `azureml.core.authentication`; every one is a `@azure/core-auth`
 * `TokenCredential`, and every token goes through one single-flight cache.
 *
 * This entry exports everything. Each credential also has its own entry that carries only what it
 * needs (`@aml-edge/auth/service-principal`, `/msi`, `/interactive`, `/azure-cli`,
 * `/azureml-token`, `/deno-kv`, and `/core` for what they share), for a faster import.
 *
 * @example Get an ARM header from a token callback
 * ```ts
 * import { TokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = new TokenAuthentication(() => ({ token: 'opaque', expiresOn: 4102444800 }))
 * const header = await auth.getAuthenticationHeader()
 * console.assert(header.Authorization === 'Bearer opaque')
 * ```
 *
 * @module
 */
export * from './src/public/core.ts'
export * from './src/public/service_principal.ts'
export * from './src/public/msi.ts'
export * from './src/public/interactive.ts'
export * from './src/public/azure_cli.ts'
export * from './src/public/azureml_token.ts'
export * from './src/public/deno_kv.ts'
