export { Dispatch } from './machine.js'
export { Dispatcher, type DispatcherInit } from './dispatcher.js'
export type {
  DispatchSpec, DispatchView, DispatchAction, TryAction, WaitAction, FailAction, DoneAction,
  DispatchOutcome, Served, AttemptFailure, Waited
} from './types.js'
