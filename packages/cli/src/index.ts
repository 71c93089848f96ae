export { main } from './main.js'
export { status, formatStatus, resolveApi, resolveUpConfig, type StatusData, type StatusRow, type UpFlags } from './commands.js'
