// Bundle-size entry (d): the whole public API.
export * from '../../../mod.ts'
