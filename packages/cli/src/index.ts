export { main, checkConfig, cliVersion, type CliIo } from './main.js'
export { status, formatStatus, resolveApi, resolveUpConfig, type StatusData, type StatusRow, type UpFlags } from './commands.js'
export { UsageError, EXIT_FAILURE, EXIT_USAGE } from './usage-error.js'
export { launchdPlist, systemdUnit, serviceStopTimeoutMs, type ServiceSpec } from './service.js'
