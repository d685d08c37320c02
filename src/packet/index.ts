/** Packet codecs: pure functions and reusable views over buffers. No I/O here. */
export * from './status.js';
export * from './mac.js';
export * from './ip-address.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './ipv6.js';
export * from './icmp.js';
export * from './udp.js';
export * from './tcp.js';
export * from './virtio-net.js';
export * from './offload.js';
export * from './pcap.js';
export * from './pcapng.js';
export * from './dhcp.js';
export * from './dns.js';
