// libp2p 3 calls Promise.withResolvers, which Node 20 lacks.
import '@llmesh/kit/polyfill'
