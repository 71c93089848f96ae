export { mulberry32 } from './random.js'
export { FakeClock } from './clock.js'
export { writeTinyLlamaGguf, resolveTinyModelOptions, tinyModelTensors, TINY_MOE_MODEL, TINY_SPLIT_MODEL, type TinyModelOptions, type ResolvedTinyModelOptions, type TinyModelTensor } from './tiny-gguf.js'
export { runnerInfo, modelInfo, unsignedRecord, nodeRecord, peerMetrics, placement, unsignedPlacementsEntry, unsignedPinsEntry, type RecordInit } from './records.js'
