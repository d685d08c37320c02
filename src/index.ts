/**
 * usernet as a library: the switch, its ports and the packet codecs, for programs and tests that
 * build topologies in memory and drive them frame by frame; and the daemon for embedding.
 */
export { Switch, fitsMtu, type SwitchOptions } from './switch/switch.js';
export { Fdb, type FdbEntrySnapshot, type FdbOptions } from './switch/fdb.js';
export { Port, PortKind, type FrameTap, type PortOptions } from './link/port.js';
export { MemoryPort, type MemoryPortOptions, type ReceivedFrame, type VnetFields } from './link/memory-port.js';
export { TapPort, type TapPortOptions } from './link/tap-port.js';
export { Frame } from './link/frame.js';
export * as counters from './link/counters.js';
export * as packet from './packet/index.js';
export { Daemon, type DaemonConfig } from './control/daemon.js';
export { request as apiRequest } from './control/client.js';
export * from './errors.js';
