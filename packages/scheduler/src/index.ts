export { route, type RouteInput, type RouteResult, type RouteTarget } from './route.js'
