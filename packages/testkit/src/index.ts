export { mulberry32 } from './random.js'
export { FakeClock } from './clock.js'
