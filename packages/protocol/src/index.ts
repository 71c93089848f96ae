export * from './constants.js'
export * from './errors.js'
export * from './records.js'
export * from './infer.js'
