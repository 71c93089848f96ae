export { Agent, type AgentInfo, type RoutedResponse, type MeshView, type ViewNode } from './agent.js'
export { parseConfig, AgentConfigSchema, ConfigError, DEFAULT_API_PORT, DEFAULT_P2P_PORT, type AgentConfig, type AgentConfigInput } from './config.js'
export { AGENT_VERSION } from './constants.js'
