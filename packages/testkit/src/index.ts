export { mulberry32 } from './random.js'
export { FakeClock } from './clock.js'
export { writeTinyLlamaGguf, resolveTinyModelOptions, type TinyModelOptions, type ResolvedTinyModelOptions } from './tiny-gguf.js'
export { runnerInfo, modelInfo, unsignedRecord, nodeRecord, peerMetrics, placement, unsignedPlacementsEntry, unsignedPinsEntry, type RecordInit } from './records.js'
