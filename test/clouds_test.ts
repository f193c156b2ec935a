import { assertEquals, assertStrictEquals, assertThrows } from '@std/assert'
import { AzureChinaCloud, AzureCloud, AzureUSGovernment, getCloud } from '@aml-edge/auth'
import { _resourceOf, _scopeOf, resolveCloud } from '../src/clouds.ts'

Deno.test('getCloud() returns the three built-in clouds with the SPEC endpoints', () => {
  assertStrictEquals(getCloud('AzureCloud'), AzureCloud)
  assertEquals(AzureCloud.activeDirectory, 'https://login.microsoftonline.com')
  assertEquals(AzureCloud.resourceManager, 'https://management.azure.com/')
  assertEquals(
    AzureChinaCloud.activeDirectoryResourceId,
    'https://management.core.chinacloudapi.cn/',
  )
  assertEquals(AzureChinaCloud.resourceManager, 'https://management.chinacloudapi.cn')
  assertEquals(AzureUSGovernment.activeDirectory, 'https://login.microsoftonline.us')
  assertEquals(AzureUSGovernment.amlResourceId, 'https://ml.azure.us')
  assertStrictEquals(getCloud('azureusgovernment'), AzureUSGovernment)
})

Deno.test('getCloud() throws a TypeError listing the valid names', () => {
  assertThrows(
    () => getCloud('AzureGermanCloud'),
    TypeError,
    'AzureCloud, AzureChinaCloud, AzureUSGovernment',
  )
})

Deno.test('_scopeOf() keeps the ARM double slash; _resourceOf() strips /.default', () => {
  assertEquals(
    _scopeOf(AzureCloud.activeDirectoryResourceId),
    'https://management.core.windows.net//.default',
  )
  assertEquals(_scopeOf(AzureCloud.amlResourceId), 'https://ml.azure.com/.default')
  assertEquals(
    _resourceOf('https://management.core.windows.net//.default'),
    'https://management.core.windows.net/',
  )
  assertEquals(_resourceOf('https://ml.azure.com/.default'), 'https://ml.azure.com')
})

Deno.test('resolveCloud() accepts a custom air-gapped cloud and validates it', () => {
  const c = resolveCloud({
    name: 'Airgap',
    activeDirectory: 'https://login.airgap.example/',
    resourceManager: 'https://arm.airgap.example',
    activeDirectoryResourceId: 'https://arm.airgap.example/',
    amlResourceId: 'https://ml.airgap.example',
  }, {})
  assertEquals(c.activeDirectory, 'https://login.airgap.example')
  assertEquals(c.resourceManager, 'https://arm.airgap.example/')
  assertThrows(
    () => resolveCloud({ ...c, resourceManager: 'ftp://x' }, {}),
    TypeError,
    'cloud.resourceManager',
  )
  assertThrows(() => resolveCloud({ ...c, name: '' }, {}), TypeError, 'cloud.name')
  // Loopback http is accepted for emulators.
  assertEquals(
    resolveCloud({ ...c, activeDirectory: 'http://127.0.0.1:8400' }, {}).activeDirectory,
    'http://127.0.0.1:8400',
  )
})

Deno.test('resolveCloud() uses AZUREML_CURRENT_CLOUD, else AzureCloud', () => {
  assertStrictEquals(
    resolveCloud(undefined, { AZUREML_CURRENT_CLOUD: 'AzureChinaCloud' }),
    AzureChinaCloud,
  )
  assertStrictEquals(resolveCloud(undefined, {}), AzureCloud)
  assertThrows(() => resolveCloud(undefined, { AZUREML_CURRENT_CLOUD: 'Nope' }), TypeError)
})
