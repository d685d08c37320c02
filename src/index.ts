/**
 * usernet as a library. For tests that drive a whole network frame by frame: the Lab (networks
 * with their gateway, DHCP and DNS, the NAT and published ports, scripted containers, an
 * in-memory outside, one virtual clock and one seeded random source), recording, replay and
 * probes. Below it, the parts: the switch, its ports, the packet codecs, the clock, random and
 * host-stack interfaces. And the daemon, for embedding. Only TAP ports and real host sockets load
 * the native addon, when first used (ERR_NATIVE_NOT_BUILT if it is not built).
 */
export { Lab, LabNetwork, type LabOptions, type LeaseSnapshot } from './lab/lab.js';
export { ScriptedHost, ScriptedTcpConnection, ScriptedHostError, type Lease, type ScriptedHostOptions } from './lab/scripted-host.js';
export { FrameProbe, ProbeError, replayCapture, type FrameMatch, type ProbedFrame, type ProbeOptions, type ReplayOptions } from './lab/probe.js';
export { Recorder, type CaptureDirection, type CaptureFormat, type RecorderOptions } from './lab/recorder.js';
export { decodeFrame, type FrameInfo, type ArpInfo, type Ipv4Info, type TcpInfo, type UdpInfo, type IcmpInfo, type DhcpInfo } from './lab/frame-info.js';
export { HostSocketGuard, HostSocketForbiddenError } from './lab/host-guard.js';
export { MemoryOutside, OutsideHost, type MemoryOutsideOptions, type OutsideDatagram, type OutsideTcpConnection, type OutsideTcpListener, type OutsideUdpSocket, type HttpRequest, type HttpAnswer } from './outside/index.js';
export { SystemClock, VirtualClock, systemClock, type Clock, type Timer, type VirtualClockOptions } from './platform/clock.js';
export { SeededRandom, SystemRandom, systemRandom, type Random } from './platform/random.js';
export { SystemHostStack, systemHostStack, type HostStack } from './platform/host-stack.js';
export { Network, type NetworkConfig, type NetworkSpec } from './gateway/network.js';
export { Nat, type NatOptions } from './nat/nat.js';
export type { PublishedPort } from './nat/publish.js';
export type { ConntrackEntryJson, ConntrackTupleJson } from './nat/conntrack-format.js';
export { Switch, fitsMtu, type SwitchOptions } from './switch/switch.js';
export { Fdb, type FdbEntrySnapshot, type FdbOptions } from './switch/fdb.js';
export { Port, PortKind, type FrameTap, type PortOptions } from './link/port.js';
export type { FrameSink } from './link/sink.js';
export { MemoryPort, type MemoryPortOptions, type ReceivedFrame, type VnetFields } from './link/memory-port.js';
export { TapPort, type TapPortOptions } from './link/tap-port.js';
export { Frame } from './link/frame.js';
export * as counters from './link/counters.js';
export * as packet from './packet/index.js';
export { Daemon, type DaemonConfig } from './control/daemon.js';
export { request as apiRequest } from './control/client.js';
export * from './errors.js';
