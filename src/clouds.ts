/**
 * Sovereign clouds: where to sign in, which ARM and Azure ML audiences to ask for.
 *
 * @module
 */
import type { Env } from './env.ts'
import { _checkEndpoint, _checkString } from './_validate.ts'

/** Names of the built-in clouds. */
export type CloudName = 'AzureCloud' | 'AzureChinaCloud' | 'AzureUSGovernment'

/** Endpoints of one Azure cloud. Pass a custom object for air-gapped clouds. */
export interface Cloud {
  /** Cloud name, e.g. `AzureCloud`. */
  readonly name: string
  /** Microsoft Entra authority host, e.g. `https://login.microsoftonline.com`. */
  readonly activeDirectory: string
  /** ARM endpoint, e.g. `https://management.azure.com/`. */
  readonly resourceManager: string
  /** ARM token audience, e.g. `https://management.core.windows.net/`. */
  readonly activeDirectoryResourceId: string
  /** Azure ML resource id, e.g. `https://ml.azure.com`. */
  readonly amlResourceId: string
}

const FIELDS = [
  'name',
  'activeDirectory',
  'resourceManager',
  'activeDirectoryResourceId',
  'amlResourceId',
] as const

/** A frozen cloud from its five values, in the order of {@linkcode FIELDS}. */
function cloud(...values: string[]): Cloud {
  return Object.freeze(Object.fromEntries(FIELDS.map((k, i) => [k, values[i]]))) as unknown as Cloud
}

/**
 * The public Azure cloud.
 *
 * @example Read an endpoint
 * ```ts
 * import { AzureCloud } from '@aml-edge/auth'
 * console.assert(AzureCloud.amlResourceId === 'https://ml.azure.com')
 * ```
 */
export const AzureCloud: Cloud = cloud(
  'AzureCloud',
  'https://login.microsoftonline.com',
  'https://management.azure.com/',
  'https://management.core.windows.net/',
  'https://ml.azure.com',
)

/**
 * Azure operated by 21Vianet (China).
 *
 * @example Use the China cloud
 * ```ts
 * import { AzureChinaCloud } from '@aml-edge/auth'
 * console.assert(AzureChinaCloud.activeDirectory === 'https://login.chinacloudapi.cn')
 * ```
 */
export const AzureChinaCloud: Cloud = cloud(
  'AzureChinaCloud',
  'https://login.chinacloudapi.cn',
  'https://management.chinacloudapi.cn',
  'https://management.core.chinacloudapi.cn/',
  'https://ml.azure.cn',
)

/**
 * Azure US Government.
 *
 * @example Use the US Government cloud
 * ```ts
 * import { AzureUSGovernment } from '@aml-edge/auth'
 * console.assert(AzureUSGovernment.amlResourceId === 'https://ml.azure.us')
 * ```
 */
export const AzureUSGovernment: Cloud = cloud(
  'AzureUSGovernment',
  'https://login.microsoftonline.us',
  'https://management.usgovcloudapi.net/',
  'https://management.core.usgovcloudapi.net/',
  'https://ml.azure.us',
)

const CLOUDS: readonly Cloud[] = [AzureCloud, AzureChinaCloud, AzureUSGovernment]

/**
 * Looks a built-in cloud up by name (case-insensitive).
 *
 * @param name `AzureCloud`, `AzureChinaCloud` or `AzureUSGovernment`
 * @returns the cloud
 * @throws {TypeError} for an unknown name, listing the valid ones
 *
 * @example Pick a cloud by name
 * ```ts
 * import { getCloud } from '@aml-edge/auth'
 * console.assert(getCloud('azurechinacloud').name === 'AzureChinaCloud')
 * ```
 */
export function getCloud(name: string): Cloud {
  const found = CLOUDS.find((c) => c.name.toLowerCase() === String(name).toLowerCase())
  if (found) return found
  throw new TypeError(
    `Unknown cloud; use ${CLOUDS.map((c) => c.name).join(', ')} or a Cloud object`,
  )
}

/**
 * The cloud for a credential: the option (a name or an object), else `AZUREML_CURRENT_CLOUD`,
 * else `AzureCloud`. A custom cloud object is validated (https endpoints unless loopback).
 */
export function resolveCloud(option: CloudName | Cloud | string | undefined, env: Env): Cloud {
  option ??= env.AZUREML_CURRENT_CLOUD || 'AzureCloud'
  if (typeof option === 'string') return getCloud(option)
  if (!option || typeof option !== 'object') {
    throw new TypeError('cloud must be a cloud name or a Cloud object')
  }
  const c = option as unknown as Record<string, unknown>
  return cloud(...FIELDS.map((k, i) => {
    const name = 'cloud.' + k
    // activeDirectory and resourceManager are URLs (ARM always with a trailing slash).
    return i === 1 || i === 2
      ? _checkEndpoint(c[k], name) + (i === 2 ? '/' : '')
      : _checkString(c[k], name)
  }))
}

/** The `.default` scope of a resource id; the ARM one keeps its double slash by design. */
export function _scopeOf(resource: string): string {
  return resource + '/.default'
}

/** The resource id of a scope: strips a trailing `/.default`. */
export function _resourceOf(scope: string): string {
  return scope.endsWith('/.default') ? scope.slice(0, -'/.default'.length) : scope
}
