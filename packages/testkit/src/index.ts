export { mulberry32 } from './random.js'
export { FakeClock } from './clock.js'
export { writeTinyLlamaGguf, resolveTinyModelOptions, type TinyModelOptions, type ResolvedTinyModelOptions } from './tiny-gguf.js'
