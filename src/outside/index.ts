/** The in-memory outside: a HostStack for packet-level tests of the whole network, in-process. */
export { MemoryOutside, MemoryTcpSocket, OutsideHost, systemError } from './memory-outside.js';
export type { HttpAnswer, HttpRequest, MemoryOutsideOptions, OutsideDatagram, OutsideTcpConnection, OutsideTcpListener, OutsideUdpSocket } from './memory-outside.js';
