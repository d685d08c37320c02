/*
 * usernet_dgram: native datagram sockets for the NAT.
 *
 * Theory of operation
 * -------------------
 * The NAT speaks to the outside world through ordinary host sockets, and Node's dgram module is
 * not enough for that: it cannot read the socket error queue (IP_RECVERR tells *which*
 * destination an ICMP port/host unreachable was about, with the offender and the MTU), cannot
 * open ICMP ping sockets or raw ICMP sockets, and allocates a Buffer and an rinfo object per
 * datagram. This file adds, next to the TAP reader of usernet_native.c and in the same style:
 *
 *  1. dgramOpen(): a non-blocking, close-on-exec AF_INET socket of one of three kinds, bound:
 *       udp       SOCK_DGRAM IPPROTO_UDP   payloads; source address and port per datagram
 *       ping      SOCK_DGRAM IPPROTO_ICMP  ICMP messages without the IP header; the kernel owns
 *                                          the echo identifier (the bound "port") and checksum;
 *                                          allowed to groups in net.ipv4.ping_group_range
 *       raw-icmp  SOCK_RAW   IPPROTO_ICMP  sends ICMP messages (checksum is the caller's), receives
 *                                          every ICMP packet for the host *with* its IPv4 header;
 *                                          needs CAP_NET_RAW
 *     IP_RECVERR is on by default for udp and ping (off for raw-icmp, which sees ICMP errors as
 *     packets anyway).
 *     `pktinfo` (udp) turns on IP_PKTINFO: a socket bound to 0.0.0.0 (a published port) learns
 *     which of the host's addresses each datagram was sent to, and answers from that address.
 *  2. sendTo(): one sendto(2), returning bytes or -errno (never throwing on I/O errors); with a
 *     source address, sendmsg(2) with IP_PKTINFO's ipi_spec_dst sets the reply's source. With
 *     IP_RECVERR Linux also stores an arriving ICMP error in sk_err, and the *next* send on the
 *     socket fails with it without sending anything (an unconnected UDP socket included). The
 *     error is also in the error queue, where the reader reports it properly, so sendTo retries
 *     once after such an error (ECONNREFUSED, EHOSTUNREACH, ...): one ICMP error never costs the
 *     next datagram. EMSGSIZE is not retried (a too-big datagram fails synchronously and queues a
 *     local error, which a retry would queue twice), so after an ICMP "fragmentation needed" the
 *     next send can return -EMSGSIZE without having been sent.
 *  3. The reader: a uv_poll_t (UV_READABLE | UV_PRIORITIZED) on the socket. Each wake reads up to
 *     `budget` datagrams with recvmmsg(2) into a JS-owned slab, then drains the error queue
 *     (recvmsg(MSG_ERRQUEUE)) into a second JS-owned Int32Array, and calls JS once.
 *
 * Slab layout. recvmmsg needs every message's buffer before it knows any length, so a call gets
 * one DGRAM_SLOT (64 KiB: any IPv4 datagram fits, so nothing is ever truncated) per message, as
 * many as fit in the rest of the slab; after the call each datagram is moved down to the next
 * 64-byte aligned offset, so a batch of small datagrams takes little room and the next call gets
 * the space back. A slab of budget x 64 KiB lets one call take a whole batch; any slab of at least
 * 64 KiB works (with more calls). Quoted payloads of errors go after the datagrams. Everything in
 * the slab and both meta arrays is valid only during the callback, so one slab and one pair of
 * meta arrays can serve every reader of the process.
 *
 * Error queue and libuv. A queued error makes the socket poll with POLLERR, which libuv's poll
 * handle reports as UV_EBADF *and stops the handle* unless POLLPRI came with it. The reader sets
 * SO_SELECT_ERR_QUEUE (errors then poll as POLLERR|POLLPRI) and watches UV_PRIORITIZED, so an
 * error arrives as a UV_PRIORITIZED wake; should libuv still report UV_EBADF on a descriptor that
 * is open, the reader treats it as that wake and restarts the handle.
 *
 * Row layouts (documented as constants in addon.ts, exported here as DGRAM_* numbers):
 *   datagram  [offset, length, sourceAddr (uint32 host order as int32 bits), sourcePort (0 for
 *             ICMP kinds), destinationAddr (the address the datagram was sent to, from IP_PKTINFO
 *             on a socket opened with pktinfo; 0 otherwise)]
 *   error     [-errno, origin (SO_EE_ORIGIN_*), icmpType, icmpCode, offenderAddr, dstAddr, dstPort,
 *             info (ee_info: the MTU for "fragmentation needed"/EMSGSIZE), dataOffset, dataLength]
 *
 * IPv4 only: addresses are uint32 columns. IPv6 would be new kinds (udp6, ...) with their own row
 * layouts (16-byte addresses written into the slab, their offsets in the address columns); the
 * reader already asks the socket for its family and refuses anything but AF_INET.
 */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/errqueue.h>

#ifndef SO_SELECT_ERR_QUEUE
#define SO_SELECT_ERR_QUEUE 45
#endif
#ifndef IP_RECVERR
#define IP_RECVERR 11
#endif

/* One message's room in a recvmmsg call: the largest IPv4 datagram (65535 with its header). */
#define DGRAM_SLOT 65536
#define DGRAM_ALIGN 64
#define DGRAM_ROW 5
/* Room for the one control message a datagram can carry (IP_PKTINFO). */
#define DGRAM_CONTROL CMSG_SPACE(sizeof(struct in_pktinfo))
#define DGRAM_ERR_ROW 10
/* recvmmsg takes at most UIO_MAXIOV messages per call. */
#define DGRAM_MAX_VLEN 1024
/* Asynchronous errors (sk_err) a wake may consume before it gives up; each call clears one. */
#define DGRAM_SOFT_ERRORS_PER_WAKE 16

/* Shared with usernet_native.c. */
void throw_errno(napi_env env, int err, const char *syscall_name, const char *context);
void throw_errno_hint(napi_env env, int err, const char *syscall_name, const char *context,
                      const char *hint);
bool get_int32(napi_env env, napi_value v, int32_t *out);
bool get_prop(napi_env env, napi_value obj, const char *name, napi_value *out);
bool get_int_prop(napi_env env, napi_value obj, const char *name, int32_t *out);
bool get_uint_prop(napi_env env, napi_value obj, const char *name, uint32_t *out);
bool get_bool_prop(napi_env env, napi_value obj, const char *name, bool dflt);
bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);

#define NAPI_CALL(env, call)                                                              \
  do {                                                                                    \
    napi_status status__ = (call);                                                        \
    if (status__ != napi_ok) {                                                            \
      const napi_extended_error_info *info__ = NULL;                                      \
      napi_get_last_error_info((env), &info__);                                           \
      bool pending__ = false;                                                             \
      napi_is_exception_pending((env), &pending__);                                       \
      if (!pending__) {                                                                   \
        napi_throw_error((env), "USERNET_NATIVE_INTERNAL",                                \
                         info__ && info__->error_message ? info__->error_message          \
                                                         : "N-API call failed");          \
      }                                                                                   \
      return NULL;                                                                        \
    }                                                                                     \
  } while (0)

static bool get_int32_array(napi_env env, napi_value v, int32_t **data, size_t *count) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return false;
  napi_typedarray_type type;
  size_t length, byte_offset;
  void *ptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &byte_offset) != napi_ok ||
      type != napi_int32_array)
    return false;
  *data = ptr;
  *count = length;
  return true;
}

static void format_addr(char *out, size_t size, uint32_t addr_host) {
  snprintf(out, size, "%u.%u.%u.%u", addr_host >> 24, (addr_host >> 16) & 255,
           (addr_host >> 8) & 255, addr_host & 255);
}

/* The first line of a /proc/sys file, for error hints ("" when unreadable). */
static void read_sysctl(const char *path, char *out, size_t size) {
  out[0] = 0;
  FILE *f = fopen(path, "re");
  if (!f) return;
  if (fgets(out, (int)size, f)) {
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = 0;
    for (char *p = out; *p; p++)
      if (*p == '\t') *p = ' ';
  }
  fclose(f);
}

/* ------------------------------------------------------------------------------------------------
 * dgramOpen
 * ---------------------------------------------------------------------------------------------- */

enum dgram_kind { KIND_UDP, KIND_PING, KIND_RAW_ICMP };

static const char *kind_names[] = {[KIND_UDP] = "udp", [KIND_PING] = "ping",
                                   [KIND_RAW_ICMP] = "raw-icmp"};

/* Sets a buffer size: the *FORCE option first (CAP_NET_ADMIN may exceed net.core.[rw]mem_max),
 * else the ordinary one, which the kernel caps at the sysctl. Returns 0 or an errno. */
static int set_buffer_size(int fd, int force_opt, int opt, int size) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof size) == 0) return 0;
  if (setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size) == 0) return 0;
  return errno;
}

static int get_int_sockopt(int fd, int level, int opt) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

/*
 * dgramOpen({ kind, bindAddress?, bindPort?, recvErr?, recvBufferSize?, sendBufferSize? })
 *   -> { fd, port, recvBufferSize, sendBufferSize }
 */
static napi_value dgram_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dgramOpen(options) needs an options object");
    return NULL;
  }
  napi_value opts = argv[0], v;
  char kind_str[16] = "";
  size_t n = 0;
  enum dgram_kind kind;
  if (!get_prop(env, opts, "kind", &v) ||
      napi_get_value_string_utf8(env, v, kind_str, sizeof kind_str, &n) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "dgramOpen: kind must be 'udp', 'ping' or 'raw-icmp'");
    return NULL;
  }
  if (strcmp(kind_str, "udp") == 0) kind = KIND_UDP;
  else if (strcmp(kind_str, "ping") == 0) kind = KIND_PING;
  else if (strcmp(kind_str, "raw-icmp") == 0) kind = KIND_RAW_ICMP;
  else {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "dgramOpen: kind must be 'udp', 'ping' or 'raw-icmp'");
    return NULL;
  }

  uint32_t bind_addr = 0;
  int32_t bind_port = 0, rcvbuf = 0, sndbuf = 0;
  if (get_prop(env, opts, "bindAddress", &v) && napi_get_value_uint32(env, v, &bind_addr) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dgramOpen: bindAddress must be a uint32");
    return NULL;
  }
  if (get_prop(env, opts, "bindPort", &v) &&
      (!get_int32(env, v, &bind_port) || bind_port < 0 || bind_port > 65535)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "dgramOpen: bindPort must be 0-65535");
    return NULL;
  }
  if ((get_prop(env, opts, "recvBufferSize", &v) && (!get_int32(env, v, &rcvbuf) || rcvbuf <= 0)) ||
      (get_prop(env, opts, "sendBufferSize", &v) && (!get_int32(env, v, &sndbuf) || sndbuf <= 0))) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "dgramOpen: recvBufferSize/sendBufferSize must be positive int32s");
    return NULL;
  }
  if (kind == KIND_RAW_ICMP) bind_port = 0; /* raw sockets have no ports */
  bool recv_err = get_bool_prop(env, opts, "recvErr", kind != KIND_RAW_ICMP);
  bool pktinfo = kind == KIND_UDP && get_bool_prop(env, opts, "pktinfo", false);

  char addr_text[16], context[64], hint[256] = "";
  format_addr(addr_text, sizeof addr_text, bind_addr);
  snprintf(context, sizeof context, "dgramOpen(%s %s:%d)", kind_names[kind], addr_text, bind_port);

  int type = kind == KIND_RAW_ICMP ? SOCK_RAW : SOCK_DGRAM;
  int proto = kind == KIND_UDP ? IPPROTO_UDP : IPPROTO_ICMP;
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0) {
    int err = errno;
    if (kind == KIND_PING && (err == EACCES || err == EPERM)) {
      char range[64];
      read_sysctl("/proc/sys/net/ipv4/ping_group_range", range, sizeof range);
      snprintf(hint, sizeof hint,
               "ping sockets are allowed only to groups in net.ipv4.ping_group_range (now \"%s\", "
               "this process has gid %u): widen the range or use a raw ICMP socket",
               range, (unsigned)getegid());
    } else if (kind == KIND_RAW_ICMP && (err == EACCES || err == EPERM)) {
      snprintf(hint, sizeof hint, "raw ICMP sockets need CAP_NET_RAW");
    }
    throw_errno_hint(env, err, kind == KIND_UDP ? "socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)"
                               : kind == KIND_PING ? "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)"
                                                   : "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
                     context, hint);
    return NULL;
  }

  int one = 1, err = 0;
  const char *failed = NULL;
  if (recv_err && setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one) < 0) {
    err = errno;
    failed = "setsockopt(IP_RECVERR)";
    goto fail;
  }
  /* Errors then poll as POLLERR|POLLPRI, which libuv delivers (see the theory above). */
  (void)setsockopt(fd, SOL_SOCKET, SO_SELECT_ERR_QUEUE, &one, sizeof one);
  if (pktinfo && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) {
    err = errno;
    failed = "setsockopt(IP_PKTINFO)";
    goto fail;
  }
  if (rcvbuf > 0 && (err = set_buffer_size(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf)) != 0) {
    failed = "setsockopt(SO_RCVBUF)";
    goto fail;
  }
  if (sndbuf > 0 && (err = set_buffer_size(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf)) != 0) {
    failed = "setsockopt(SO_SNDBUF)";
    goto fail;
  }

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(bind_addr);
  sa.sin_port = htons((uint16_t)bind_port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    err = errno;
    failed = "bind";
    if (err == EADDRINUSE) {
      snprintf(hint, sizeof hint, "another socket is bound to %s %s:%d; pick another %s",
               kind == KIND_PING ? "ping identifier" : "port", addr_text, bind_port,
               kind == KIND_PING ? "identifier" : "port (0: any free one)");
    } else if (err == EACCES && bind_port > 0) {
      char start[32];
      read_sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start", start, sizeof start);
      snprintf(hint, sizeof hint,
               "ports below %s (net.ipv4.ip_unprivileged_port_start) need CAP_NET_BIND_SERVICE",
               start[0] ? start : "1024");
    } else if (err == EADDRNOTAVAIL) {
      snprintf(hint, sizeof hint, "%s is not an address of this host", addr_text);
    }
    goto fail;
  }
  socklen_t salen = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
    err = errno;
    failed = "getsockname";
    goto fail;
  }

  napi_value result, tmp;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, fd, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "fd", tmp));
  NAPI_CALL(env, napi_create_int32(env, kind == KIND_RAW_ICMP ? 0 : ntohs(sa.sin_port), &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "port", tmp));
  NAPI_CALL(env, napi_create_int32(env, get_int_sockopt(fd, SOL_SOCKET, SO_RCVBUF), &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "recvBufferSize", tmp));
  NAPI_CALL(env, napi_create_int32(env, get_int_sockopt(fd, SOL_SOCKET, SO_SNDBUF), &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "sendBufferSize", tmp));
  return result;

fail:
  close(fd);
  throw_errno_hint(env, err, failed, context, hint);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * sendTo
 * ---------------------------------------------------------------------------------------------- */

/* Errors that an ICMP error stored in sk_err can make a send return (icmp_err_convert() and
 * the ICMP handlers of udp/ping/raw), less EMSGSIZE (see below). */
static bool is_async_send_error(int err) {
  switch (err) {
    case ECONNREFUSED: case EHOSTUNREACH: case ENETUNREACH: case EHOSTDOWN: case ENONET:
    case ENOPROTOOPT: case EOPNOTSUPP: case EPROTO:
      return true;
    default:
      return false;
  }
}

/* sendTo(fd, buf, offset, length, addr (uint32 host order), port[, srcAddr]) -> bytes sent or
 * -errno. A non-zero srcAddr is the datagram's source address (IP_PKTINFO ipi_spec_dst). */
static napi_value dgram_send_to(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, off, len, port;
  uint32_t addr;
  uint8_t *data;
  size_t size;
  if (argc < 6 || !get_int32(env, argv[0], &fd) || !get_bytes(env, argv[1], &data, &size) ||
      !get_int32(env, argv[2], &off) || !get_int32(env, argv[3], &len) ||
      napi_get_value_uint32(env, argv[4], &addr) != napi_ok || !get_int32(env, argv[5], &port)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "sendTo(fd, buffer, offset, length, addr, port)");
    return NULL;
  }
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > size || port < 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "sendTo: offset/length outside the buffer, or port not 0-65535");
    return NULL;
  }
  uint32_t src_addr = 0;
  if (argc >= 7) {
    napi_valuetype st = napi_undefined;
    napi_typeof(env, argv[6], &st);
    if (st != napi_undefined && napi_get_value_uint32(env, argv[6], &src_addr) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sendTo: srcAddr must be a uint32");
      return NULL;
    }
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(addr);
  sa.sin_port = htons((uint16_t)port);
  struct iovec iov = {.iov_base = data + off, .iov_len = (size_t)len};
  union {
    char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
    struct cmsghdr align;
  } control;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_name = &sa;
  m.msg_namelen = sizeof sa;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (src_addr != 0) {
    memset(&control, 0, sizeof control);
    m.msg_control = control.buf;
    m.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);
    pi->ipi_spec_dst.s_addr = htonl(src_addr);
  }
  ssize_t w;
  int err = 0, retried = 0;
  for (;;) {
    w = sendmsg(fd, &m, MSG_DONTWAIT);
    if (w >= 0) break;
    err = errno;
    if (err == EINTR) continue;
    /* The failure may have been an earlier datagram's ICMP error (sk_err), consumed by this call
     * with nothing sent: try once more. A real failure fails again, at the cost of one syscall.
     * Not EMSGSIZE: a datagram too big fails synchronously *and* queues a local error, which a
     * retry would queue twice; and not errors that only a bad call produces. */
    if (retried || !is_async_send_error(err)) break;
    retried = 1;
  }
  NAPI_CALL(env, napi_create_int32(env, w < 0 ? -err : (int32_t)w, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * The batched datagram reader
 * ---------------------------------------------------------------------------------------------- */

typedef struct dgram_reader {
  uv_poll_t poll;
  napi_env env;
  int fd;
  bool closing;   /* closeDgramReader called: no callback any more */
  bool closed;    /* the close callback has run: resources released */
  bool finalized; /* the JS handle is gone: free with the close */
  bool paused;
  bool failed;    /* a hard error stopped it for good */
  bool hooked;    /* an env cleanup hook is registered for it */
  bool close_fd;
  uint8_t *slab;
  size_t slab_len;
  int32_t *meta;
  int budget;
  int32_t *err_meta;
  int err_rows;
  int vlen_max;
  struct mmsghdr *msgs;
  struct iovec *iovs;
  struct sockaddr_in *names;
  uint8_t *controls; /* DGRAM_CONTROL bytes per message */
  napi_ref slab_ref;
  napi_ref meta_ref;
  napi_ref err_meta_ref;
  napi_ref cb_ref;
  napi_ref closed_ref; /* optional onClosed callback, NULL when none */
  napi_async_context actx;
} dgram_reader_t;

/* Marks the handles of this file so that a TAP reader's handle (or any other external) passed
 * here is refused rather than misread. */
static const napi_type_tag dgram_reader_tag = {0x7573657264677261ULL, 0x6d52656164657231ULL};

static void dgram_call(dgram_reader_t *r, napi_ref fn, size_t argc, napi_value *argv) {
  napi_env env = r->env;
  napi_value cb, recv, ret;
  napi_get_reference_value(env, fn, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
  if (napi_make_callback(env, r->actx, recv, cb, argc, argv, &ret) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
}

static void dgram_deliver(dgram_reader_t *r, int count, int errors) {
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  napi_create_int32(env, count, &argv[0]);
  napi_create_int32(env, errors, &argv[1]);
  dgram_call(r, r->cb_ref, 2, argv);
  napi_close_handle_scope(env, scope);
}

/* libuv has released the handle: only now may the fd be closed. Then tell JS, if it asked. */
/* The environment is being torn down (the process is exiting) with this reader still open, as
 * an unref'd reader may be: stop polling, so that no batch is delivered into a dying env (a
 * datagram still queued would otherwise call back into freed JS state). */
static void dgram_reader_env_teardown(void *arg) {
  dgram_reader_t *r = arg;
  r->hooked = false;
  if (r->closing || r->failed) return;
  r->failed = true;
  uv_poll_stop(&r->poll);
}

static void dgram_reader_unhook(dgram_reader_t *r) {
  if (!r->hooked) return;
  r->hooked = false;
  napi_remove_env_cleanup_hook(r->env, dgram_reader_env_teardown, r);
}

static void dgram_reader_on_closed(uv_handle_t *h) {
  dgram_reader_t *r = h->data;
  napi_env env = r->env;
  dgram_reader_unhook(r);
  if (r->close_fd && r->fd >= 0) close(r->fd);
  if (r->closed_ref) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      dgram_call(r, r->closed_ref, 0, NULL);
      napi_close_handle_scope(env, scope);
    }
    napi_delete_reference(env, r->closed_ref);
    r->closed_ref = NULL;
  }
  napi_delete_reference(env, r->slab_ref);
  napi_delete_reference(env, r->meta_ref);
  napi_delete_reference(env, r->err_meta_ref);
  napi_delete_reference(env, r->cb_ref);
  napi_async_destroy(env, r->actx);
  free(r->msgs);
  free(r->iovs);
  free(r->names);
  free(r->controls);
  r->msgs = NULL;
  r->iovs = NULL;
  r->names = NULL;
  r->controls = NULL;
  r->closed = true;
  if (r->finalized) free(r);
}

/* The JS handle was collected. A reader that was never closed keeps polling (it is a live socket)
 * and lives as long as the process; a closed one is freed by whichever of the two comes last. */
static void dgram_reader_finalize(napi_env env, void *data, void *hint) {
  dgram_reader_t *r = data;
  r->finalized = true;
  if (r->closed) free(r);
}

static bool is_hard_recv_error(int err) {
  return err == EBADF || err == ENOTSOCK || err == EFAULT || err == EINVAL;
}

static inline size_t align_up(size_t n) {
  return (n + DGRAM_ALIGN - 1) & ~(size_t)(DGRAM_ALIGN - 1);
}

/* Reads up to budget datagrams into the slab from offset 0; returns how many, *off past them. */
static int read_datagrams(dgram_reader_t *r, size_t *off_io, int *hard_err) {
  size_t off = 0;
  int n = 0, soft = 0;
  while (n < r->budget) {
    size_t room = r->slab_len - off;
    int k = (int)(room / DGRAM_SLOT);
    if (k > r->budget - n) k = r->budget - n;
    if (k > r->vlen_max) k = r->vlen_max;
    if (k <= 0) break;
    for (int i = 0; i < k; i++) {
      r->iovs[i].iov_base = r->slab + off + (size_t)i * DGRAM_SLOT;
      r->iovs[i].iov_len = DGRAM_SLOT;
      struct msghdr *m = &r->msgs[i].msg_hdr;
      m->msg_name = &r->names[i];
      m->msg_namelen = sizeof r->names[i];
      m->msg_iov = &r->iovs[i];
      m->msg_iovlen = 1;
      m->msg_control = r->controls + (size_t)i * DGRAM_CONTROL;
      m->msg_controllen = DGRAM_CONTROL;
      m->msg_flags = 0;
      r->msgs[i].msg_len = 0;
    }
    int got = recvmmsg(r->fd, r->msgs, (unsigned)k, MSG_DONTWAIT, NULL);
    if (got < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (is_hard_recv_error(e)) {
        *hard_err = e;
        break;
      }
      if (e == ENOMEM || e == ENOBUFS) break; /* try again on the next wake */
      /* An asynchronous error (an ICMP error in sk_err): this call consumed it. The error queue
       * has the details; go on reading. */
      if (++soft > DGRAM_SOFT_ERRORS_PER_WAKE) break;
      continue;
    }
    size_t base = off; /* message i was received at base + i * DGRAM_SLOT */
    for (int i = 0; i < got; i++) {
      size_t len = r->msgs[i].msg_len;
      if (len > DGRAM_SLOT) len = DGRAM_SLOT;
      uint8_t *src = r->slab + base + (size_t)i * DGRAM_SLOT;
      /* Pack: each datagram moves down to the aligned end of the one before; that is never past
       * its own slot, so no datagram still to be moved is overwritten. */
      size_t dst_off = off;
      if (r->slab + dst_off != src) memmove(r->slab + dst_off, src, len);
      struct sockaddr_in *sin = &r->names[i];
      bool have_name = r->msgs[i].msg_hdr.msg_namelen >= sizeof *sin && sin->sin_family == AF_INET;
      int32_t *row = r->meta + (size_t)n * DGRAM_ROW;
      row[0] = (int32_t)dst_off;
      row[1] = (int32_t)len;
      row[2] = have_name ? (int32_t)ntohl(sin->sin_addr.s_addr) : 0;
      row[3] = have_name ? (int32_t)ntohs(sin->sin_port) : 0;
      row[4] = 0;
      struct msghdr *mh = &r->msgs[i].msg_hdr;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
          struct in_pktinfo pi;
          memcpy(&pi, CMSG_DATA(c), sizeof pi);
          row[4] = (int32_t)ntohl(pi.ipi_addr.s_addr);
        }
      }
      n++;
      off = dst_off + align_up(len);
    }
    if (got < k) break; /* the queue is empty (or an error waits for the next call) */
  }
  *off_io = off;
  return n;
}

/* Drains up to err_rows errors from the error queue; quoted data goes at *off_io onwards. */
static int read_errors(dgram_reader_t *r, size_t *off_io) {
  size_t off = *off_io;
  int e = 0;
  union {
    char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in)) + 64];
    struct cmsghdr align;
  } control;
  while (e < r->err_rows) {
    size_t room = r->slab_len - off;
    struct iovec iov = {r->slab + off, room < DGRAM_SLOT ? room : DGRAM_SLOT};
    struct sockaddr_in dst;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    memset(&dst, 0, sizeof dst);
    m.msg_name = &dst;
    m.msg_namelen = sizeof dst;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control.buf;
    m.msg_controllen = sizeof control.buf;
    ssize_t k = recvmsg(r->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR) continue;
      break; /* EAGAIN: drained */
    }
    if ((size_t)k > iov.iov_len) k = (ssize_t)iov.iov_len;
    int32_t *row = r->err_meta + (size_t)e * DGRAM_ERR_ROW;
    memset(row, 0, DGRAM_ERR_ROW * sizeof *row);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_RECVERR) continue;
      struct sock_extended_err ee;
      memcpy(&ee, CMSG_DATA(c), sizeof ee);
      row[0] = -(int32_t)ee.ee_errno;
      row[1] = ee.ee_origin;
      row[2] = ee.ee_type;
      row[3] = ee.ee_code;
      row[7] = (int32_t)ee.ee_info;
      if (c->cmsg_len >= CMSG_LEN(sizeof ee + sizeof(struct sockaddr_in))) {
        struct sockaddr_in offender;
        memcpy(&offender, CMSG_DATA(c) + sizeof ee, sizeof offender);
        if (offender.sin_family == AF_INET) row[4] = (int32_t)ntohl(offender.sin_addr.s_addr);
      }
    }
    if (m.msg_namelen >= sizeof dst && dst.sin_family == AF_INET) {
      row[5] = (int32_t)ntohl(dst.sin_addr.s_addr);
      row[6] = ntohs(dst.sin_port);
    }
    row[8] = (int32_t)off;
    row[9] = (int32_t)k;
    off += align_up((size_t)k);
    if (off > r->slab_len) off = r->slab_len; /* a slab whose length is not a multiple of 64 */
    e++;
  }
  *off_io = off;
  return e;
}

static void dgram_reader_on_poll(uv_poll_t *h, int status, int events) {
  dgram_reader_t *r = h->data;
  if (r->closing || r->failed) return;
  bool restart = false;
  if (status == UV_EBADF && fcntl(r->fd, F_GETFD) >= 0) {
    /* libuv's reading of POLLERR without POLLPRI: a pending socket error on an open descriptor.
     * libuv has stopped the handle; read as for an error wake, then start it again. */
    status = 0;
    events = UV_READABLE | UV_PRIORITIZED;
    restart = true;
  }
  if (status < 0) {
    uv_poll_stop(&r->poll);
    r->failed = true;
    dgram_deliver(r, status, 0);
    return;
  }
  size_t off = 0;
  int hard = 0;
  int n = read_datagrams(r, &off, &hard);
  int e = 0;
  /* Whenever an error is pending, whatever IP_RECVERR says now: an error queue left full would
   * keep the descriptor polling as ready forever. Without one this costs one EAGAIN. */
  if (!hard && (events & UV_PRIORITIZED)) e = read_errors(r, &off);
  if (hard) {
    /* A hard error (EBADF: the fd is gone) would fire forever: stop, then report once. */
    uv_poll_stop(&r->poll);
    r->failed = true;
  } else if (restart && !r->paused) {
    uv_poll_start(&r->poll, UV_READABLE | UV_PRIORITIZED, dgram_reader_on_poll);
  }
  if (n > 0 || e > 0) dgram_deliver(r, n, e);
  if (hard && !r->closing) dgram_deliver(r, -hard, 0);
}

/*
 * startDgramReader(fd, slab, meta: Int32Array, budget, onBatch(count, errors), errMeta: Int32Array,
 *                  closeFd) -> handle
 */
static napi_value start_dgram_reader(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, budget;
  uint8_t *slab;
  size_t slab_len, meta_count, err_count;
  int32_t *meta, *err_meta;
  bool close_fd_flag = true;
  napi_valuetype cbt;
  if (argc < 6 || !get_int32(env, argv[0], &fd) || !get_bytes(env, argv[1], &slab, &slab_len) ||
      !get_int32_array(env, argv[2], &meta, &meta_count) || !get_int32(env, argv[3], &budget) ||
      napi_typeof(env, argv[4], &cbt) != napi_ok || cbt != napi_function ||
      !get_int32_array(env, argv[5], &err_meta, &err_count)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "startDgramReader(fd, slab, meta: Int32Array, budget, onBatch, "
                          "errMeta: Int32Array, closeFd)");
    return NULL;
  }
  if (argc >= 7) napi_get_value_bool(env, argv[6], &close_fd_flag);
  if (fd < 0 || slab_len < DGRAM_SLOT || slab_len > INT32_MAX || budget <= 0 ||
      (size_t)budget * DGRAM_ROW > meta_count || err_count < DGRAM_ERR_ROW) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "startDgramReader: the slab needs at least 65536 bytes (and at most "
                           "2 GiB), meta budget x 4 int32s, errMeta at least one row of 10");
    return NULL;
  }
  int domain = get_int_sockopt(fd, SOL_SOCKET, SO_DOMAIN);
  if (domain < 0) {
    throw_errno(env, errno, "getsockopt(SO_DOMAIN)", "startDgramReader");
    return NULL;
  }
  int type = get_int_sockopt(fd, SOL_SOCKET, SO_TYPE);
  if (domain != AF_INET || (type != SOCK_DGRAM && type != SOCK_RAW)) {
    throw_errno_hint(env, domain != AF_INET ? EAFNOSUPPORT : EPROTOTYPE, "getsockopt(SO_DOMAIN)",
                     "startDgramReader", "only AF_INET datagram and raw sockets can be read");
    return NULL;
  }
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_SELECT_ERR_QUEUE, &one, sizeof one);

  dgram_reader_t *r = calloc(1, sizeof *r);
  int vlen = budget < DGRAM_MAX_VLEN ? budget : DGRAM_MAX_VLEN;
  size_t slots = slab_len / DGRAM_SLOT;
  if (slots < (size_t)vlen) vlen = (int)slots;
  if (r) {
    r->msgs = calloc((size_t)vlen, sizeof *r->msgs);
    r->iovs = calloc((size_t)vlen, sizeof *r->iovs);
    r->names = calloc((size_t)vlen, sizeof *r->names);
    r->controls = calloc((size_t)vlen, DGRAM_CONTROL);
  }
  if (!r || !r->msgs || !r->iovs || !r->names || !r->controls) {
    if (r) {
      free(r->msgs);
      free(r->iovs);
      free(r->names);
      free(r->controls);
      free(r);
    }
    napi_throw_error(env, "ENOMEM", "startDgramReader: out of memory");
    return NULL;
  }
  r->env = env;
  r->fd = fd;
  r->close_fd = close_fd_flag;
  r->slab = slab;
  r->slab_len = slab_len;
  r->meta = meta;
  r->budget = budget;
  r->err_meta = err_meta;
  r->err_rows = (int)(err_count / DGRAM_ERR_ROW);
  r->vlen_max = vlen;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) {
    free(r->msgs);
    free(r->iovs);
    free(r->names);
    free(r->controls);
    free(r);
    throw_errno(env, -rc, "uv_poll_init", "startDgramReader");
    return NULL;
  }
  r->poll.data = r;
  napi_create_reference(env, argv[1], 1, &r->slab_ref);
  napi_create_reference(env, argv[2], 1, &r->meta_ref);
  napi_create_reference(env, argv[5], 1, &r->err_meta_ref);
  napi_create_reference(env, argv[4], 1, &r->cb_ref);
  napi_value resource_name;
  napi_create_string_utf8(env, "usernet.DgramReader", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &r->actx);
  napi_value ext;
  if (napi_create_external(env, r, dgram_reader_finalize, NULL, &ext) != napi_ok ||
      napi_type_tag_object(env, ext, &dgram_reader_tag) != napi_ok) {
    r->closing = true;
    r->close_fd = false;
    r->finalized = true; /* no JS handle will ever finalize it */
    uv_close((uv_handle_t *)&r->poll, dgram_reader_on_closed);
    napi_throw_error(env, "USERNET_NATIVE_INTERNAL", "startDgramReader: cannot create the handle");
    return NULL;
  }
  rc = uv_poll_start(&r->poll, UV_READABLE | UV_PRIORITIZED, dgram_reader_on_poll);
  if (rc < 0) {
    r->closing = true;
    r->close_fd = false;
    uv_close((uv_handle_t *)&r->poll, dgram_reader_on_closed);
    throw_errno(env, -rc, "uv_poll_start", "startDgramReader");
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, dgram_reader_env_teardown, r) == napi_ok) r->hooked = true;
  return ext;
}

static dgram_reader_t *get_dgram_reader(napi_env env, napi_value v) {
  bool ok = false;
  if (napi_check_object_type_tag(env, v, &dgram_reader_tag, &ok) != napi_ok || !ok) return NULL;
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* closeDgramReader(handle[, onClosed]): stops polling at once (no batch callback after this
 * returns), closes the fd (if the reader owns it) once libuv has released the handle, then calls
 * onClosed(). Idempotent: a later call does nothing (and never calls its onClosed). */
static napi_value close_dgram_reader(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  dgram_reader_t *r = argc ? get_dgram_reader(env, argv[0]) : NULL;
  if (!r) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeDgramReader(handle[, onClosed])");
    return NULL;
  }
  if (!r->closing) {
    if (argc >= 2) {
      napi_valuetype t;
      napi_typeof(env, argv[1], &t);
      if (t == napi_function) napi_create_reference(env, argv[1], 1, &r->closed_ref);
    }
    r->closing = true;
    dgram_reader_unhook(r);
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, dgram_reader_on_closed);
  }
  return NULL;
}

/* pauseDgramReader(handle, paused): stop or restart polling without closing (the kernel queues,
 * then drops, what arrives meanwhile). */
static napi_value pause_dgram_reader(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  dgram_reader_t *r = argc ? get_dgram_reader(env, argv[0]) : NULL;
  bool paused = false;
  if (!r || argc < 2 || napi_get_value_bool(env, argv[1], &paused) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pauseDgramReader(handle, paused)");
    return NULL;
  }
  if (r->closing || r->failed || paused == r->paused) return NULL;
  r->paused = paused;
  if (paused) uv_poll_stop(&r->poll);
  else uv_poll_start(&r->poll, UV_READABLE | UV_PRIORITIZED, dgram_reader_on_poll);
  return NULL;
}

/* refDgramReader(handle, ref): whether the reader keeps the event loop alive (it does, like any
 * live socket, until told otherwise). */
static napi_value ref_dgram_reader(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  dgram_reader_t *r = argc ? get_dgram_reader(env, argv[0]) : NULL;
  bool ref = true;
  if (!r || argc < 2 || napi_get_value_bool(env, argv[1], &ref) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "refDgramReader(handle, ref)");
    return NULL;
  }
  if (r->closing) return NULL;
  if (ref) uv_ref((uv_handle_t *)&r->poll);
  else uv_unref((uv_handle_t *)&r->poll);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Registration (called from usernet_native.c's module init)
 * ---------------------------------------------------------------------------------------------- */

napi_status usernet_dgram_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"dgramOpen", NULL, dgram_open, NULL, NULL, NULL, napi_default, NULL},
    {"sendTo", NULL, dgram_send_to, NULL, NULL, NULL, napi_default, NULL},
    {"startDgramReader", NULL, start_dgram_reader, NULL, NULL, NULL, napi_default, NULL},
    {"closeDgramReader", NULL, close_dgram_reader, NULL, NULL, NULL, napi_default, NULL},
    {"pauseDgramReader", NULL, pause_dgram_reader, NULL, NULL, NULL, napi_default, NULL},
    {"refDgramReader", NULL, ref_dgram_reader, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_status st = napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  if (st != napi_ok) return st;
  static const struct {
    const char *name;
    int value;
  } numbers[] = {
    {"DGRAM_SLOT", DGRAM_SLOT},
    {"DGRAM_ROW", DGRAM_ROW},
    {"DGRAM_ERR_ROW", DGRAM_ERR_ROW},
  };
  for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
    napi_value v;
    if ((st = napi_create_int32(env, numbers[i].value, &v)) != napi_ok) return st;
    if ((st = napi_set_named_property(env, exports, numbers[i].name, v)) != napi_ok) return st;
  }
  return napi_ok;
}
