/**
 * Typed access to the native addon (src/native/usernet_native.c, built by node-gyp on install).
 * The addon is loaded lazily and once; a missing build is reported with the command that fixes it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { UsernetError } from '../errors.js';

export interface TapOpenOptions {
  /** Interface name inside the namespace (created when absent, attached when present). */
  ifname: string;
  /** Join the user + network namespaces of this process. */
  pid?: number;
  /** Or join this network namespace (its owning user namespace is found and joined too). */
  netnsPath?: string;
  /** Explicit user namespace to join with netnsPath. */
  usernsPath?: string;
  /** Ask for IFF_VNET_HDR (used when the kernel has it). Default true. */
  vnetHdr?: boolean;
  /** Ask for TUNSETOFFLOAD checksum + TSO4/6 (with vnetHdr). Default true. */
  offload?: boolean;
  /** Create the interface if absent (default true); false fails with ENODEV. */
  create?: boolean;
  /** -1 leave, 0 clear, 1 set TUNSETPERSIST. */
  persist?: -1 | 0 | 1;
  mtu?: number;
  mac?: Uint8Array;
  txqlen?: number;
  /** IPv4 address as uint32 (host order) with its prefix length. */
  address?: number;
  prefix?: number;
  /** Default route via this uint32 address. */
  gateway?: number;
  linkUp?: boolean;
  loUp?: boolean;
}

export interface TapOpenResult {
  fd: number;
  ifname: string;
  ifindex: number;
  mtu: number;
  mac: Buffer;
  /** 10 when frames carry a virtio-net header, else 0. */
  vnetHdrLen: number;
  /** TUN_F_* bits in effect. */
  offloads: number;
  /** TUNGETFEATURES. */
  features: number;
  /** The interface existed before (attached rather than created). */
  existed: boolean;
}

/** Opaque handles owned by the addon. */
export type ReaderHandle = { readonly __reader: unique symbol };
export type WatchHandle = { readonly __watch: unique symbol };

export interface NativeAddon {
  readonly VNET_HDR_LEN: number;
  tapOpen(options: TapOpenOptions): TapOpenResult;
  setPersist(fd: number, on: boolean): void;
  /** 0 or -errno. */
  closeFd(fd: number): number;
  /** Bytes written or -errno. */
  write(fd: number, buf: Uint8Array, off: number, len: number): number;
  /** One frame from two pieces; bytes written or -errno. */
  writev(fd: number, b1: Uint8Array, o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number;
  startReader(
    fd: number,
    slab: Uint8Array,
    meta: Int32Array,
    maxFrame: number,
    budget: number,
    onBatch: (count: number, error: number) => void,
    closeFd: boolean,
  ): ReaderHandle;
  /** Stops reading now; closes the fd once libuv has let go of it, then calls onClosed. */
  closeReader(handle: ReaderHandle, onClosed?: () => void): void;
  pauseReader(handle: ReaderHandle, paused: boolean): void;
  watchPid(pid: number, onExit: (status: number) => void): WatchHandle;
  unwatch(handle: WatchHandle): void;
}

/** The project root: the nearest directory above this file that holds binding.gyp. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new UsernetError('ERR_NATIVE_NOT_FOUND', 'cannot find the usernet package root (binding.gyp)');
    dir = parent;
  }
}

let cached: NativeAddon | undefined;

/** Loads the addon once. Throws ERR_NATIVE_NOT_BUILT with the fix when it is missing. */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = projectRoot();
  const path = join(root, 'build', 'Release', 'usernet_native.node');
  if (!existsSync(path)) {
    throw new UsernetError('ERR_NATIVE_NOT_BUILT', `the native TAP addon is not built (${path} is missing): run "npm ci" or "npm rebuild" in ${root}`);
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeAddon;
  return cached;
}

/** Node's negative-errno convention to a name (EIO, EBADFD, ...), for counters and messages. */
export function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno);
  } catch {
    return `errno ${-negErrno}`;
  }
}
