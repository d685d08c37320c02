/*
 * usernet_native: the small native part of usernet.
 *
 * Theory of operation
 * -------------------
 * Node cannot open or poll a TAP device by itself (a TAP fd is a character device, which libuv's
 * stream machinery refuses, and threadpool reads drop most frames under load). This addon does
 * exactly these things and nothing else:
 *
 *  1. tapOpen(): open /dev/net/tun as IFF_TAP|IFF_NO_PI (with IFF_VNET_HDR and TUNSETOFFLOAD when
 *     the kernel has them) inside the user + network namespace of another process (by PID) or of a
 *     namespace path, create the interface or attach to an existing one, optionally configure it
 *     (MTU, MAC, address, default route, link up, lo up) and make it persistent.
 *     The kernel refuses setns(CLONE_NEWUSER) to a multithreaded process, and Node always has
 *     threads, so the namespace work runs in a child made with clone(CLONE_VM|CLONE_VFORK|
 *     CLONE_FILES): the child joins the namespaces, and the fd it opens is simply in our fd table
 *     when it exits (no SCM_RIGHTS round trip). The child makes raw syscalls only: no malloc, no
 *     locks, all signals blocked, its own stack.
 *  2. Reader: a uv_poll_t on the non-blocking fd; when readable, frames are read() in a batch into a
 *     JS-owned slab (64-byte aligned offsets), their (offset, length) pairs go into a JS-owned
 *     Int32Array, and JS is called once per batch. Nothing is allocated per frame.
 *  3. write()/writev(): synchronous writes of one frame, from one buffer or two (a header built in
 *     JS in front of a payload that stays where it is). Errors come back as -errno, not exceptions,
 *     so the caller counts drops (EIO: the container's link is down) without try/catch.
 *  4. A pidfd watcher (pidfd_open + uv_poll): the container's end is an event, not a guess.
 *  5. Datagram sockets for the NAT (UDP, ICMP ping, raw ICMP) with a batched reader that also
 *     drains the socket error queue: usernet_dgram.c, which shares the helpers below.
 *  6. socketOutq() and socketError(): SIOCOUTQ and SO_ERROR on a TCP socket's fd (Node's
 *     net.Socket has neither), so the NAT resets a host socket only once the peer has acknowledged
 *     every byte written to it, and tells a peer's reset from its FIN.
 *
 * Errors from tapOpen() are thrown as JS errors carrying code (EPERM, ...), errno (negative, as in
 * Node core), syscall (the step that failed) and a readable message.
 */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <linux/if_tun.h>
#include <linux/if_arp.h>
#include <linux/nsfs.h>

#include "usernet_echo.h"
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/sockios.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef IFF_VNET_HDR
#define IFF_VNET_HDR 0x4000
#endif

#define VNET_HDR_LEN 10
#define CHILD_STACK_SIZE (256 * 1024)

/* ------------------------------------------------------------------------------------------------
 * Helpers for N-API boilerplate (the non-static ones are shared with usernet_dgram.c, which
 * declares them; the addon is built with hidden visibility, so they stay inside it)
 * ---------------------------------------------------------------------------------------------- */

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

/* Throws an Error shaped like Node core's errno errors: code, errno (negative), syscall. A hint,
 * when given, ends the message and says what to do about it. */
void throw_errno_hint(napi_env env, int err, const char *syscall_name, const char *context,
                      const char *hint) {
  char msg[768];
  const char *name = uv_err_name(-err);
  const char *text = uv_strerror(-err);
  int n;
  if (context && context[0])
    n = snprintf(msg, sizeof msg, "%s: %s failed: %s (%s)", context, syscall_name, text, name);
  else
    n = snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall_name, text, name);
  if (hint && hint[0] && n > 0 && (size_t)n < sizeof msg)
    snprintf(msg + n, sizeof msg - (size_t)n, "; %s", hint);
  napi_value js_msg, js_code, error, js_errno, js_syscall;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_code);
  napi_create_error(env, js_code, js_msg, &error);
  napi_create_int32(env, -err, &js_errno);
  napi_set_named_property(env, error, "errno", js_errno);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &js_syscall);
  napi_set_named_property(env, error, "syscall", js_syscall);
  napi_throw(env, error);
}

void throw_errno(napi_env env, int err, const char *syscall_name, const char *context) {
  throw_errno_hint(env, err, syscall_name, context, NULL);
}

bool get_int32(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

bool get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return false;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

bool get_int_prop(napi_env env, napi_value obj, const char *name, int32_t *out) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return false;
  return get_int32(env, v, out);
}

bool get_uint_prop(napi_env env, napi_value obj, const char *name, uint32_t *out) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return false;
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

bool get_bool_prop(napi_env env, napi_value obj, const char *name, bool dflt) {
  napi_value v;
  bool b = dflt;
  if (!get_prop(env, obj, name, &v)) return dflt;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return dflt;
  return b;
}

/* Gets the bytes of any TypedArray/Buffer argument. */
bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) return false;
  napi_typedarray_type type;
  size_t length, byte_offset;
  void *ptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &byte_offset) != napi_ok)
    return false;
  size_t elem = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: elem = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
    default: elem = 1;
  }
  *data = ptr;
  *len = length * elem;
  return true;
}

/* ------------------------------------------------------------------------------------------------
 * tapOpen: the namespace child and the TAP setup
 * ---------------------------------------------------------------------------------------------- */

enum step {
  STEP_NONE = 0,
  STEP_SETNS_USER,
  STEP_SETNS_NET,
  STEP_SOCKET,
  STEP_IF_ABSENT,
  STEP_OPEN_TUN,
  STEP_TUNGETFEATURES,
  STEP_TUNSETIFF,
  STEP_TUNSETVNETHDRSZ,
  STEP_TUNSETOFFLOAD,
  STEP_TUNSETPERSIST,
  STEP_SIOCSIFMTU,
  STEP_SIOCSIFHWADDR,
  STEP_SIOCSIFTXQLEN,
  STEP_SIOCSIFADDR,
  STEP_SIOCSIFNETMASK,
  STEP_SIOCSIFFLAGS,
  STEP_SIOCSIFFLAGS_LO,
  STEP_SIOCADDRT,
  STEP_SIOCGIFHWADDR,
  STEP_SIOCGIFINDEX,
  STEP_SIOCGIFMTU,
  STEP_TUNGETIFF,
  STEP_CLONE,
};

static const char *step_names[] = {
  [STEP_NONE] = "tapOpen",
  [STEP_SETNS_USER] = "setns(CLONE_NEWUSER)",
  [STEP_SETNS_NET] = "setns(CLONE_NEWNET)",
  [STEP_SOCKET] = "socket(AF_INET)",
  [STEP_IF_ABSENT] = "attach (interface absent)",
  [STEP_OPEN_TUN] = "open(/dev/net/tun)",
  [STEP_TUNGETFEATURES] = "ioctl(TUNGETFEATURES)",
  [STEP_TUNSETIFF] = "ioctl(TUNSETIFF)",
  [STEP_TUNSETVNETHDRSZ] = "ioctl(TUNSETVNETHDRSZ)",
  [STEP_TUNSETOFFLOAD] = "ioctl(TUNSETOFFLOAD)",
  [STEP_TUNSETPERSIST] = "ioctl(TUNSETPERSIST)",
  [STEP_SIOCSIFMTU] = "ioctl(SIOCSIFMTU)",
  [STEP_SIOCSIFHWADDR] = "ioctl(SIOCSIFHWADDR)",
  [STEP_SIOCSIFTXQLEN] = "ioctl(SIOCSIFTXQLEN)",
  [STEP_SIOCSIFADDR] = "ioctl(SIOCSIFADDR)",
  [STEP_SIOCSIFNETMASK] = "ioctl(SIOCSIFNETMASK)",
  [STEP_SIOCSIFFLAGS] = "ioctl(SIOCSIFFLAGS)",
  [STEP_SIOCSIFFLAGS_LO] = "ioctl(SIOCSIFFLAGS lo)",
  [STEP_SIOCADDRT] = "ioctl(SIOCADDRT)",
  [STEP_SIOCGIFHWADDR] = "ioctl(SIOCGIFHWADDR)",
  [STEP_SIOCGIFINDEX] = "ioctl(SIOCGIFINDEX)",
  [STEP_SIOCGIFMTU] = "ioctl(SIOCGIFMTU)",
  [STEP_TUNGETIFF] = "ioctl(TUNGETIFF)",
  [STEP_CLONE] = "clone",
};

struct tap_job {
  /* inputs */
  int userns_fd;           /* -1: stay in our user namespace */
  int netns_fd;            /* -1: stay in our network namespace */
  char ifname[IFNAMSIZ];
  int want_vnet;
  int want_offload;
  int create;              /* create the interface when absent (else fail with ENODEV) */
  int persist;             /* -1 leave as is, 0 clear, 1 set */
  int mtu;                 /* 0: leave */
  int set_mac;
  unsigned char mac[6];
  int txqlen;              /* 0: leave */
  int set_addr;
  uint32_t addr_be;        /* network byte order */
  int prefix;
  int set_gateway;
  uint32_t gateway_be;
  int link_up;
  int lo_up;
  /* outputs */
  int fd;
  int err;
  int step;
  int existed;
  int vnet_hdr_len;
  unsigned features;
  unsigned offloads;
  int ifindex;
  int mtu_out;
  uint32_t addr_out_be;    /* the interface's IPv4 address (network order), 0 if none */
  int prefix_out;
  unsigned char hwaddr[6];
  char ifname_out[IFNAMSIZ];
};

static void ifr_init(struct ifreq *ifr, const char *name) {
  memset(ifr, 0, sizeof *ifr);
  size_t n = strnlen(name, IFNAMSIZ - 1);
  memcpy(ifr->ifr_name, name, n);
}

static void set_sin(struct sockaddr *sa, uint32_t addr_be) {
  struct sockaddr_in *sin = (struct sockaddr_in *)sa;
  memset(sin, 0, sizeof *sin);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = addr_be;
}

#define FAIL(j, s)        \
  do {                    \
    (j)->err = errno;     \
    (j)->step = (s);      \
    goto fail;            \
  } while (0)

/* Runs in the namespace child (or in-process when no namespace has to be joined).
 * Raw syscalls only: this may run on a borrowed stack while Node's other threads go on. */
static void tap_open_here(struct tap_job *j) {
  int fd = -1, sock = -1;
  struct ifreq ifr;

  sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) FAIL(j, STEP_SOCKET);

  ifr_init(&ifr, j->ifname);
  j->existed = ioctl(sock, SIOCGIFINDEX, &ifr) == 0;
  if (!j->existed && !j->create) {
    errno = ENODEV;
    FAIL(j, STEP_IF_ABSENT);
  }

  fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) FAIL(j, STEP_OPEN_TUN);

  unsigned features = 0;
  if (ioctl(fd, TUNGETFEATURES, &features) < 0) FAIL(j, STEP_TUNGETFEATURES);
  j->features = features;
  int vnet = j->want_vnet && (features & IFF_VNET_HDR);

  ifr_init(&ifr, j->ifname);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    /* An existing multi-queue TAP (usernet-slirp4netns's launcher makes one, to have the device
     * there before Node starts) takes another queue only when asked for one. */
    if (!(errno == EINVAL && j->existed)) FAIL(j, STEP_TUNSETIFF);
    ifr_init(&ifr, j->ifname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | (vnet ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      errno = EINVAL;
      FAIL(j, STEP_TUNSETIFF);
    }
  }
  memcpy(j->ifname_out, ifr.ifr_name, IFNAMSIZ);
  j->ifname_out[IFNAMSIZ - 1] = 0;

  if (vnet) {
    /* Set explicitly: a persistent TAP keeps what an earlier user set. */
    int hdr = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) FAIL(j, STEP_TUNSETVNETHDRSZ);
    j->vnet_hdr_len = VNET_HDR_LEN;
    unsigned off = j->want_offload ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0;
    if (ioctl(fd, TUNSETOFFLOAD, off) < 0) {
      if (ioctl(fd, TUNSETOFFLOAD, 0) < 0) FAIL(j, STEP_TUNSETOFFLOAD);
      off = 0;
    }
    j->offloads = off;
  } else {
    j->vnet_hdr_len = 0;
    j->offloads = 0;
    /* Without a vnet header we cannot take partial checksums or GSO frames: clear what an
     * earlier attachment may have left on a persistent device. Failure is harmless. */
    (void)ioctl(fd, TUNSETOFFLOAD, 0);
  }

  if (j->mtu > 0) {
    ifr_init(&ifr, j->ifname_out);
    ifr.ifr_mtu = j->mtu;
    if (ioctl(sock, SIOCSIFMTU, &ifr) < 0) FAIL(j, STEP_SIOCSIFMTU);
  }
  if (j->set_mac) {
    ifr_init(&ifr, j->ifname_out);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, j->mac, 6);
    if (ioctl(sock, SIOCSIFHWADDR, &ifr) < 0) FAIL(j, STEP_SIOCSIFHWADDR);
  }
  if (j->txqlen > 0) {
    ifr_init(&ifr, j->ifname_out);
    ifr.ifr_qlen = j->txqlen;
    if (ioctl(sock, SIOCSIFTXQLEN, &ifr) < 0) FAIL(j, STEP_SIOCSIFTXQLEN);
  }
  if (j->lo_up) {
    ifr_init(&ifr, "lo");
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) FAIL(j, STEP_SIOCSIFFLAGS_LO);
    if (!(ifr.ifr_flags & IFF_UP)) {
      ifr.ifr_flags |= IFF_UP;
      if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) FAIL(j, STEP_SIOCSIFFLAGS_LO);
    }
  }
  if (j->set_addr) {
    ifr_init(&ifr, j->ifname_out);
    set_sin(&ifr.ifr_addr, j->addr_be);
    if (ioctl(sock, SIOCSIFADDR, &ifr) < 0) FAIL(j, STEP_SIOCSIFADDR);
    uint32_t mask = j->prefix == 0 ? 0 : htonl(0xffffffffu << (32 - j->prefix));
    ifr_init(&ifr, j->ifname_out);
    set_sin(&ifr.ifr_netmask, mask);
    if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0) FAIL(j, STEP_SIOCSIFNETMASK);
  }
  if (j->link_up) {
    ifr_init(&ifr, j->ifname_out);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) FAIL(j, STEP_SIOCSIFFLAGS);
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) FAIL(j, STEP_SIOCSIFFLAGS);
  }
  if (j->set_gateway) {
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    set_sin(&rt.rt_dst, 0);
    set_sin(&rt.rt_genmask, 0);
    set_sin(&rt.rt_gateway, j->gateway_be);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = j->ifname_out;
    if (ioctl(sock, SIOCADDRT, &rt) < 0 && errno != EEXIST) FAIL(j, STEP_SIOCADDRT);
  }

  ifr_init(&ifr, j->ifname_out);
  if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0) FAIL(j, STEP_SIOCGIFHWADDR);
  memcpy(j->hwaddr, ifr.ifr_hwaddr.sa_data, 6);
  ifr_init(&ifr, j->ifname_out);
  if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0) FAIL(j, STEP_SIOCGIFINDEX);
  j->ifindex = ifr.ifr_ifindex;
  ifr_init(&ifr, j->ifname_out);
  if (ioctl(sock, SIOCGIFMTU, &ifr) < 0) FAIL(j, STEP_SIOCGIFMTU);
  j->mtu_out = ifr.ifr_mtu;
  /* Its IPv4 address, if it has one (a TAP someone else configured): no error when it has none. */
  ifr_init(&ifr, j->ifname_out);
  if (ioctl(sock, SIOCGIFADDR, &ifr) == 0) {
    j->addr_out_be = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    ifr_init(&ifr, j->ifname_out);
    if (ioctl(sock, SIOCGIFNETMASK, &ifr) == 0) {
      uint32_t mask = ntohl(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr);
      int p = 0;
      while (p < 32 && (mask & (0x80000000u >> p))) p++;
      j->prefix_out = p;
    }
  }

  /* Last, so that a failure above never leaves a half-configured persistent device behind. */
  if (j->persist >= 0) {
    if (ioctl(fd, TUNSETPERSIST, j->persist ? 1 : 0) < 0) FAIL(j, STEP_TUNSETPERSIST);
  }

  close(sock);
  j->fd = fd;
  j->err = 0;
  return;

fail:
  if (sock >= 0) close(sock);
  if (fd >= 0) close(fd);
  j->fd = -1;
}

/* A piece of work to run inside other namespaces (the namespace child's argument). */
struct ns_work {
  int userns_fd;            /* -1: stay in our user namespace */
  int netns_fd;             /* -1: stay in our network namespace */
  void (*fn)(void *arg);    /* raw syscalls only: see run_in_namespaces() */
  void *arg;
  int err;                  /* errno of a failed setns, and which: */
  int failed_step;          /* STEP_SETNS_USER or STEP_SETNS_NET, 0 when fn ran */
};

static int ns_child_main(void *arg) {
  struct ns_work *w = arg;
  if (w->userns_fd >= 0 && setns(w->userns_fd, CLONE_NEWUSER) < 0) {
    w->err = errno;
    w->failed_step = STEP_SETNS_USER;
    return 1;
  }
  if (w->netns_fd >= 0 && setns(w->netns_fd, CLONE_NEWNET) < 0) {
    w->err = errno;
    w->failed_step = STEP_SETNS_NET;
    return 1;
  }
  w->fn(w->arg);
  return 0;
}

/*
 * Runs w->fn(w->arg) inside w's namespaces: in a clone()d child that shares our memory and fd
 * table (CLONE_VM | CLONE_VFORK | CLONE_FILES, as passt does), since the kernel refuses
 * setns(CLONE_NEWUSER) to a multithreaded process. The child runs on a borrowed stack while
 * Node's other threads go on, so fn makes raw syscalls only (no malloc, no locks). In-process
 * when no namespace has to be joined. Returns 0 or an errno for the clone itself; a failed setns
 * is in w->err / w->failed_step.
 */
int run_in_namespaces(struct ns_work *w) {
  w->err = 0;
  w->failed_step = 0;
  if (w->userns_fd < 0 && w->netns_fd < 0) {
    w->fn(w->arg);
    return 0;
  }
  void *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return errno;
  sigset_t all, old;
  sigfillset(&all);
  /* No Node signal handler may run on the child's stack in our shared memory. */
  pthread_sigmask(SIG_BLOCK, &all, &old);
  /* exit signal 0: no SIGCHLD reaches libuv's child watcher; we reap with __WALL ourselves. */
  pid_t pid = clone(ns_child_main, (char *)stack + CHILD_STACK_SIZE,
                    CLONE_VM | CLONE_VFORK | CLONE_FILES, w);
  int clone_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) {
    munmap(stack, CHILD_STACK_SIZE);
    return clone_err;
  }
  int status;
  while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
  }
  munmap(stack, CHILD_STACK_SIZE);
  return 0;
}

static void tap_open_work(void *arg) {
  tap_open_here(arg);
}

/* Runs tap_open_here() inside the job's namespaces. Returns 0 or an errno for the clone itself. */
static int run_tap_job(struct tap_job *j) {
  struct ns_work w = {.userns_fd = j->userns_fd, .netns_fd = j->netns_fd, .fn = tap_open_work, .arg = j};
  int err = run_in_namespaces(&w);
  if (err) return err;
  if (w.failed_step) {
    j->err = w.err;
    j->step = w.failed_step;
    j->fd = -1;
  }
  return 0;
}

/* Same namespace as ours? Compares the nsfs inodes. */
static int same_ns(int fd, const char *self_path) {
  struct stat a, b;
  if (fstat(fd, &a) < 0 || stat(self_path, &b) < 0) return 0;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/*
 * The namespaces of a target given as { pid } or { netnsPath, usernsPath? } in `opts`: opens the
 * user and network namespace files (the netns's owner by NS_GET_USERNS when no usernsPath is
 * given), leaving -1 for one we are already in. Writes "WHAT(pid N)" or "WHAT(netns P)" (or
 * "WHAT(fallback)") into context. Returns 0, or an errno with *failed naming the step.
 */
int open_target_namespaces(napi_env env, napi_value opts, const char *what, const char *fallback,
                           int *userns_fd, int *netns_fd, char *context, size_t context_len,
                           const char **failed) {
  napi_value v;
  size_t n;
  char path[PATH_MAX];
  int32_t pid = 0;
  bool have_pid = get_int_prop(env, opts, "pid", &pid);
  char netns_path[PATH_MAX] = "", userns_path[PATH_MAX] = "";
  if (get_prop(env, opts, "netnsPath", &v))
    napi_get_value_string_utf8(env, v, netns_path, sizeof netns_path, &n);
  if (get_prop(env, opts, "usernsPath", &v))
    napi_get_value_string_utf8(env, v, userns_path, sizeof userns_path, &n);
  *userns_fd = -1;
  *netns_fd = -1;
  if (have_pid) {
    snprintf(context, context_len, "%s(pid %d)", what, pid);
    snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
    *netns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*netns_fd < 0) { *failed = "open(/proc/PID/ns/net)"; return errno; }
    snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
    *userns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*userns_fd < 0) { *failed = "open(/proc/PID/ns/user)"; return errno; }
  } else if (netns_path[0]) {
    snprintf(context, context_len, "%s(netns %s)", what, netns_path);
    *netns_fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (*netns_fd < 0) { *failed = "open(netns path)"; return errno; }
    if (userns_path[0]) {
      *userns_fd = open(userns_path, O_RDONLY | O_CLOEXEC);
      if (*userns_fd < 0) { *failed = "open(userns path)"; return errno; }
    } else {
      /* The namespace's owner: a rootless container's netns belongs to its user namespace. */
      *userns_fd = ioctl(*netns_fd, NS_GET_USERNS);
      if (*userns_fd < 0) {
        if (errno != EPERM) { *failed = "ioctl(NS_GET_USERNS)"; return errno; }
        *userns_fd = -1; /* owned by an ancestor of ours: nothing to join */
      } else {
        fcntl(*userns_fd, F_SETFD, FD_CLOEXEC);
      }
    }
  } else {
    snprintf(context, context_len, "%s(%s)", what, fallback);
  }
  /* Re-entering the namespace we are already in fails with EINVAL (user) or is pointless. */
  if (*userns_fd >= 0 && same_ns(*userns_fd, "/proc/self/ns/user")) {
    close(*userns_fd);
    *userns_fd = -1;
  }
  if (*netns_fd >= 0 && same_ns(*netns_fd, "/proc/thread-self/ns/net")) {
    close(*netns_fd);
    *netns_fd = -1;
  }
  return 0;
}

/*
 * tapOpen(options) -> { fd, ifname, ifindex, mtu, mac: Buffer(6), vnetHdrLen, offloads, features, existed,
 *                       address (IPv4, host order, 0 if none), prefix }
 * options: { ifname, pid?, netnsPath?, usernsPath?, vnetHdr, offload, create, persist (-1/0/1),
 *            mtu?, mac?: Buffer(6), txqlen?, address? (uint32, host order), prefix?,
 *            gateway? (uint32, host order), linkUp, loUp }
 */
static napi_value tap_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tapOpen(options) needs an options object");
    return NULL;
  }
  napi_value opts = argv[0];
  struct tap_job job;
  memset(&job, 0, sizeof job);
  job.userns_fd = -1;
  job.netns_fd = -1;
  job.fd = -1;
  job.persist = -1;

  napi_value v;
  char context[PATH_MAX + 64] = "";
  size_t n;
  if (!get_prop(env, opts, "ifname", &v) ||
      napi_get_value_string_utf8(env, v, job.ifname, sizeof job.ifname, &n) != napi_ok ||
      n == 0 || n >= IFNAMSIZ) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "tapOpen: ifname must be 1-15 characters");
    return NULL;
  }
  job.want_vnet = get_bool_prop(env, opts, "vnetHdr", true);
  job.want_offload = get_bool_prop(env, opts, "offload", true);
  job.create = get_bool_prop(env, opts, "create", true);
  int32_t i32;
  if (get_int_prop(env, opts, "persist", &i32)) job.persist = i32 < 0 ? -1 : (i32 ? 1 : 0);
  if (get_int_prop(env, opts, "mtu", &i32)) job.mtu = i32;
  if (get_int_prop(env, opts, "txqlen", &i32)) job.txqlen = i32;
  job.link_up = get_bool_prop(env, opts, "linkUp", false);
  job.lo_up = get_bool_prop(env, opts, "loUp", false);
  if (get_prop(env, opts, "mac", &v)) {
    uint8_t *data;
    size_t len;
    if (!get_bytes(env, v, &data, &len) || len != 6) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "tapOpen: mac must be 6 bytes");
      return NULL;
    }
    memcpy(job.mac, data, 6);
    job.set_mac = 1;
  }
  uint32_t u32;
  if (get_uint_prop(env, opts, "address", &u32)) {
    job.set_addr = 1;
    job.addr_be = htonl(u32);
    job.prefix = 32;
    if (get_int_prop(env, opts, "prefix", &i32)) {
      if (i32 < 0 || i32 > 32) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "tapOpen: prefix must be 0-32");
        return NULL;
      }
      job.prefix = i32;
    }
  }
  if (get_uint_prop(env, opts, "gateway", &u32)) {
    job.set_gateway = 1;
    job.gateway_be = htonl(u32);
  }

  /* Which namespaces to join. */
  const char *failed = NULL;
  int err = open_target_namespaces(env, opts, "tapOpen", job.ifname, &job.userns_fd, &job.netns_fd, context, sizeof context, &failed);
  if (err) goto out;

  err = run_tap_job(&job);
  if (err) { failed = "clone"; goto out; }
  if (job.fd < 0) {
    err = job.err ? job.err : EIO;
    failed = step_names[job.step];
    if (job.step == STEP_TUNSETIFF && job.existed && err == EINVAL) {
      char msg[PATH_MAX + 160];
      snprintf(msg, sizeof msg,
               "%s: interface %s exists and is not a TAP device, so it cannot be used",
               context, job.ifname);
      napi_value js_msg, js_code, error;
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg);
      napi_create_string_utf8(env, "EINVAL", NAPI_AUTO_LENGTH, &js_code);
      napi_create_error(env, js_code, js_msg, &error);
      napi_value js_errno;
      napi_create_int32(env, -EINVAL, &js_errno);
      napi_set_named_property(env, error, "errno", js_errno);
      if (job.userns_fd >= 0) close(job.userns_fd);
      if (job.netns_fd >= 0) close(job.netns_fd);
      napi_throw(env, error);
      return NULL;
    }
    goto out;
  }

out:
  if (job.userns_fd >= 0) close(job.userns_fd);
  if (job.netns_fd >= 0) close(job.netns_fd);
  if (failed) {
    if (job.fd >= 0) close(job.fd);
    throw_errno(env, err, failed, context);
    return NULL;
  }

  napi_value result, tmp;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, job.fd, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "fd", tmp));
  NAPI_CALL(env, napi_create_string_utf8(env, job.ifname_out, NAPI_AUTO_LENGTH, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "ifname", tmp));
  NAPI_CALL(env, napi_create_int32(env, job.ifindex, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "ifindex", tmp));
  NAPI_CALL(env, napi_create_int32(env, job.mtu_out, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "mtu", tmp));
  void *mac_data;
  NAPI_CALL(env, napi_create_buffer_copy(env, 6, job.hwaddr, &mac_data, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "mac", tmp));
  NAPI_CALL(env, napi_create_int32(env, job.vnet_hdr_len, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "vnetHdrLen", tmp));
  NAPI_CALL(env, napi_create_uint32(env, job.offloads, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "offloads", tmp));
  NAPI_CALL(env, napi_create_uint32(env, job.features, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "features", tmp));
  NAPI_CALL(env, napi_get_boolean(env, job.existed != 0, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "existed", tmp));
  NAPI_CALL(env, napi_create_uint32(env, ntohl(job.addr_out_be), &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "address", tmp));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)job.prefix_out, &tmp));
  NAPI_CALL(env, napi_set_named_property(env, result, "prefix", tmp));
  return result;
}

/* setPersist(fd, on): TUNSETPERSIST on an attached TAP fd. Throws on error. */
static napi_value set_persist(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  bool on = false;
  if (argc < 2 || !get_int32(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setPersist(fd, on)");
    return NULL;
  }
  if (ioctl(fd, TUNSETPERSIST, on ? 1 : 0) < 0) {
    throw_errno(env, errno, "ioctl(TUNSETPERSIST)", "setPersist");
    return NULL;
  }
  return NULL;
}

/* closeFd(fd): close(2), returning 0 or -errno. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeFd(fd)");
    return NULL;
  }
  int r = close(fd) < 0 ? -errno : 0;
  NAPI_CALL(env, napi_create_int32(env, r, &result));
  return result;
}

/* dupFd(fd) -> a duplicate (F_DUPFD_CLOEXEC), or -errno (EMFILE...). Published ports re-wrap an
 * accepted socket in a net.Socket that reads with onread ({fd, onread}); net.Server hands out
 * sockets without it. Never throws on I/O errors. */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dupFd(fd)");
    return NULL;
  }
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (r < 0) r = -errno;
  NAPI_CALL(env, napi_create_int32(env, r, &result));
  return result;
}

/* socketOutq(fd) -> bytes of the TCP send queue not yet acknowledged by the peer (SIOCOUTQ:
 * write_seq - snd_una, so a FIN not yet acknowledged counts as one), or -errno. The NAT polls it
 * before resetting a host socket: a reset discards that queue, and through the kernel the peer
 * would have read those bytes before the reset. Never throws on I/O errors. */
static napi_value socket_outq(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "socketOutq(fd)");
    return NULL;
  }
  int queued = 0;
  int r = ioctl(fd, SIOCOUTQ, &queued) < 0 ? -errno : queued;
  NAPI_CALL(env, napi_create_int32(env, r, &result));
  return result;
}

/* socketError(fd) -> the socket's pending error (SO_ERROR, which clears it: ECONNRESET after a
 * reset, 0 if none), or -errno. libuv reports the end of a TCP stream when POLLHUP follows a short
 * read, without reading the error, so a reset that arrives with the last bytes looks like a FIN;
 * the NAT asks the kernel which it was. Never throws on I/O errors. */
static napi_value socket_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "socketError(fd)");
    return NULL;
  }
  int pending = 0;
  socklen_t len = sizeof pending;
  int r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &len) < 0 ? -errno : pending;
  NAPI_CALL(env, napi_create_int32(env, r, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * Writes
 * ---------------------------------------------------------------------------------------------- */

/* write(fd, buf, offset, length) -> bytes written or -errno. Never throws on I/O errors. */
static napi_value write_frame(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, off, len;
  uint8_t *data;
  size_t size;
  if (argc < 4 || !get_int32(env, argv[0], &fd) || !get_bytes(env, argv[1], &data, &size) ||
      !get_int32(env, argv[2], &off) || !get_int32(env, argv[3], &len)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "write(fd, buffer, offset, length)");
    return NULL;
  }
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > size) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "write: offset/length outside the buffer");
    return NULL;
  }
  ssize_t w;
  do {
    w = write(fd, data + off, (size_t)len);
  } while (w < 0 && errno == EINTR);
  NAPI_CALL(env, napi_create_int32(env, w < 0 ? -errno : (int32_t)w, &result));
  return result;
}

/* writev(fd, buf1, off1, len1, buf2, off2, len2) -> bytes or -errno: one frame from two pieces. */
static napi_value writev_frame(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, o1, l1, o2, l2;
  uint8_t *d1, *d2;
  size_t s1, s2;
  if (argc < 7 || !get_int32(env, argv[0], &fd) || !get_bytes(env, argv[1], &d1, &s1) ||
      !get_int32(env, argv[2], &o1) || !get_int32(env, argv[3], &l1) ||
      !get_bytes(env, argv[4], &d2, &s2) || !get_int32(env, argv[5], &o2) ||
      !get_int32(env, argv[6], &l2)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "writev(fd, buf1, off1, len1, buf2, off2, len2)");
    return NULL;
  }
  if (o1 < 0 || l1 < 0 || (size_t)o1 + (size_t)l1 > s1 || o2 < 0 || l2 < 0 ||
      (size_t)o2 + (size_t)l2 > s2) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "writev: offset/length outside a buffer");
    return NULL;
  }
  struct iovec iov[2] = {{d1 + o1, (size_t)l1}, {d2 + o2, (size_t)l2}};
  ssize_t w;
  do {
    w = writev(fd, iov, 2);
  } while (w < 0 && errno == EINTR);
  NAPI_CALL(env, napi_create_int32(env, w < 0 ? -errno : (int32_t)w, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * The batched reader
 * ---------------------------------------------------------------------------------------------- */

typedef struct reader {
  uv_poll_t poll;
  napi_env env;
  int fd;
  int closing;
  int stopped;
  int hooked; /* an env cleanup hook is registered for it */
  int close_fd;
  uint8_t *slab;
  size_t slab_len;
  int32_t *meta;
  size_t meta_pairs;
  size_t max_frame;
  int budget;
  napi_ref slab_ref;
  napi_ref meta_ref;
  napi_ref cb_ref;
  napi_ref closed_ref; /* optional onClosed callback, NULL when none */
  napi_async_context actx;
  struct reader_echo *echo; /* the gateway's echo answered here (usernet_echo.c), or NULL */
} reader_t;

/* Slots of a port's fastPath Float64Array and indices of its counters: they must match
 * FAST_PATH_* in src/link/port.ts and src/link/counters.ts (test/unit/fast-echo.test.ts and the
 * e2e ping test check the counters add up). */
enum { FP_OPEN = 0, FP_MTU = 1, FP_ECHOES = 2, FP_LAST_MAC = 3, FP_LAST_IP = 4, FP_IP_ID = 5, FP_SLOTS = 6 };
enum {
  C_RX_FRAMES = 0, C_RX_BYTES = 1, C_TX_FRAMES = 2, C_TX_BYTES = 3, C_DROP_LINK_DOWN = 14,
  C_DROP_QUEUE_FULL = 15, C_DROP_TX_ERROR = 16, C_RX_UNICAST = 19, C_COUNTER_COUNT = 21
};

struct reader_echo {
  struct echo_target target;
  size_t vnet_hdr_len;
  double *port_fp, *port_counters, *gw_fp, *gw_counters;
  napi_ref refs[4];
};

static void reader_echo_free(napi_env env, reader_t *r) {
  struct reader_echo *e = r->echo;
  if (!e) return;
  r->echo = NULL;
  for (int i = 0; i < 4; i++) napi_delete_reference(env, e->refs[i]);
  free(e);
}

/* One frame read from the TAP: answered here if it is the gateway's echo (returns 1: the slot
 * is free again), else left for JS (returns 0). Counts what the switch and the ports would. */
static int reader_try_echo(reader_t *r, uint8_t *frame, size_t len) {
  struct reader_echo *e = r->echo;
  double *pfp = e->port_fp, *gfp = e->gw_fp;
  if (pfp[FP_OPEN] == 0 || gfp[FP_OPEN] == 0) return 0;
  uint16_t id = (uint16_t)(((uint32_t)gfp[FP_IP_ID] + 1) & 0xffff);
  size_t n = echo_answer_in_place(&e->target, frame, len, e->vnet_hdr_len, (size_t)gfp[FP_MTU] + 18,
                                  (size_t)pfp[FP_MTU] + 18, id);
  if (n == 0) return 0;
  const size_t request_len = len - e->vnet_hdr_len;
  const size_t reply_len = n - e->vnet_hdr_len;
  /* The sender, now the reply's destination: for the switch's and the gateway's learning. */
  const uint8_t *mac = frame + e->vnet_hdr_len;
  const uint8_t *ip = mac + 14 + 16;
  gfp[FP_IP_ID] = id;
  double *pc = e->port_counters, *gc = e->gw_counters;
  /* The request: into the switch from the TAP port, unicast to the gateway port. */
  pc[C_RX_FRAMES] += 1;
  pc[C_RX_BYTES] += (double)request_len;
  pc[C_RX_UNICAST] += 1;
  gc[C_TX_FRAMES] += 1;
  gc[C_TX_BYTES] += (double)request_len;
  /* The reply: into the switch from the gateway port, out of the TAP port. */
  gc[C_RX_FRAMES] += 1;
  gc[C_RX_BYTES] += (double)reply_len;
  gc[C_RX_UNICAST] += 1;
  gfp[FP_ECHOES] += 1;
  pfp[FP_ECHOES] += 1;
  pfp[FP_LAST_MAC] = (double)((uint64_t)mac[0] << 40 | (uint64_t)mac[1] << 32 | (uint64_t)mac[2] << 24 |
                              (uint64_t)mac[3] << 16 | (uint64_t)mac[4] << 8 | mac[5]);
  pfp[FP_LAST_IP] = (double)((uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3]);
  ssize_t w;
  do {
    w = write(r->fd, frame, n);
  } while (w < 0 && errno == EINTR);
  if (w >= 0) {
    pc[C_TX_FRAMES] += 1;
    pc[C_TX_BYTES] += (double)reply_len;
  } else if (errno == EIO) {
    pc[C_DROP_LINK_DOWN] += 1;
  } else if (errno == EAGAIN || errno == ENOBUFS) {
    pc[C_DROP_QUEUE_FULL] += 1;
  } else {
    pc[C_DROP_TX_ERROR] += 1;
  }
  return 1;
}

/* libuv has released the handle: only now may the fd be closed (closing it while libuv still
 * knew it could make libuv act on a reused fd number). Then tell JS, if it asked. */
/* The environment is being torn down (the process is exiting) with this reader still open:
 * stop polling, so that no batch is delivered into a dying env. */
static void reader_env_teardown(void *arg) {
  reader_t *r = arg;
  r->hooked = 0;
  if (r->closing || r->stopped) return;
  r->stopped = 1;
  uv_poll_stop(&r->poll);
}

static void reader_unhook(reader_t *r) {
  if (!r->hooked) return;
  r->hooked = 0;
  napi_remove_env_cleanup_hook(r->env, reader_env_teardown, r);
}

static void reader_on_closed(uv_handle_t *h) {
  reader_t *r = h->data;
  napi_env env = r->env;
  reader_unhook(r);
  if (r->close_fd && r->fd >= 0) close(r->fd);
  if (r->closed_ref) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value cb, recv, ret;
      napi_get_reference_value(env, r->closed_ref, &cb);
      napi_get_global(env, &recv);
      if (napi_make_callback(env, r->actx, recv, cb, 0, NULL, &ret) != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) {
          napi_value exc;
          napi_get_and_clear_last_exception(env, &exc);
          napi_fatal_exception(env, exc);
        }
      }
      napi_close_handle_scope(env, scope);
    }
    napi_delete_reference(env, r->closed_ref);
  }
  reader_echo_free(env, r);
  napi_delete_reference(env, r->slab_ref);
  napi_delete_reference(env, r->meta_ref);
  napi_delete_reference(env, r->cb_ref);
  napi_async_destroy(env, r->actx);
  free(r);
}

/* Calls onBatch(count, error) in a callback scope; uncaught exceptions go to process. */
static void reader_deliver(reader_t *r, int count, int error) {
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], ret;
  napi_get_reference_value(env, r->cb_ref, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
  napi_create_int32(env, count, &argv[0]);
  napi_create_int32(env, error, &argv[1]);
  napi_status st = napi_make_callback(env, r->actx, recv, cb, 2, argv, &ret);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void reader_on_poll(uv_poll_t *h, int status, int events) {
  reader_t *r = h->data;
  if (r->closing || r->stopped) return;
  if (status < 0) {
    uv_poll_stop(&r->poll);
    r->stopped = 1;
    reader_deliver(r, 0, status);
    return;
  }
  size_t off = 0;
  int n = 0, err = 0;
  /* Frames answered here do not count against the batch, reads do: a ping flood still returns
   * to the event loop after `budget` reads. */
  for (int reads = 0; reads < r->budget && n < r->budget && off + r->max_frame <= r->slab_len; reads++) {
    ssize_t k = read(r->fd, r->slab + off, r->max_frame);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) err = errno;
      break;
    }
    if (k == 0) break;
    if (r->echo && reader_try_echo(r, r->slab + off, (size_t)k)) continue;
    r->meta[2 * n] = (int32_t)off;
    r->meta[2 * n + 1] = (int32_t)k;
    n++;
    off += ((size_t)k + 63) & ~(size_t)63;
  }
  if (err) {
    /* A hard read error (EBADFD: the device is gone) would fire forever: stop, then report. */
    uv_poll_stop(&r->poll);
    r->stopped = 1;
  }
  if (n > 0 || err) reader_deliver(r, n, err ? -err : 0);
}

static void reader_finalize_external(napi_env env, void *data, void *hint) {
  /* The reader is freed by its close callback; the external only points at it. Readers that are
   * never closed live as long as the process (they are in use by definition). */
}

/*
 * startReader(fd, slab: Buffer, meta: Int32Array, maxFrame, budget, onBatch(n, err), closeFd)
 *   -> handle. Frames are at meta[2i] (offset into slab), length meta[2i+1]; valid only during
 *   the callback. err is 0 or a negative errno (reading has then stopped).
 */
static napi_value start_reader(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, max_frame, budget;
  uint8_t *slab;
  size_t slab_len;
  uint8_t *meta;
  size_t meta_len;
  bool close_fd_flag = true;
  napi_valuetype cbt;
  if (argc < 6 || !get_int32(env, argv[0], &fd) || !get_bytes(env, argv[1], &slab, &slab_len) ||
      !get_bytes(env, argv[2], &meta, &meta_len) || !get_int32(env, argv[3], &max_frame) ||
      !get_int32(env, argv[4], &budget) || napi_typeof(env, argv[5], &cbt) != napi_ok ||
      cbt != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "startReader(fd, slab, meta, maxFrame, budget, onBatch, closeFd)");
    return NULL;
  }
  if (argc >= 7) napi_get_value_bool(env, argv[6], &close_fd_flag);
  if (max_frame <= 0 || (size_t)max_frame > slab_len || budget <= 0 ||
      (size_t)budget * 2 * sizeof(int32_t) > meta_len || ((uintptr_t)meta & 3)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "startReader: slab smaller than maxFrame, or meta too small for budget");
    return NULL;
  }
  reader_t *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, "ENOMEM", "startReader: out of memory");
    return NULL;
  }
  r->env = env;
  r->fd = fd;
  r->close_fd = close_fd_flag;
  r->slab = slab;
  r->slab_len = slab_len;
  r->meta = (int32_t *)meta;
  r->meta_pairs = meta_len / 8;
  r->max_frame = (size_t)max_frame;
  r->budget = budget;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) {
    free(r);
    throw_errno(env, -rc, "uv_poll_init", "startReader");
    return NULL;
  }
  r->poll.data = r;
  napi_create_reference(env, argv[1], 1, &r->slab_ref);
  napi_create_reference(env, argv[2], 1, &r->meta_ref);
  napi_create_reference(env, argv[5], 1, &r->cb_ref);
  napi_value resource_name;
  napi_create_string_utf8(env, "usernet.TapReader", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &r->actx);
  rc = uv_poll_start(&r->poll, UV_READABLE, reader_on_poll);
  if (rc < 0) {
    r->closing = 1;
    r->close_fd = 0;
    uv_close((uv_handle_t *)&r->poll, reader_on_closed);
    throw_errno(env, -rc, "uv_poll_start", "startReader");
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, reader_env_teardown, r) == napi_ok) r->hooked = 1;
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, r, reader_finalize_external, NULL, &ext));
  return ext;
}

static reader_t *get_reader(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* closeReader(handle[, onClosed]): stops polling at once (no batch callback after this returns)
 * and closes the fd (if the reader owns it) once libuv has released the handle, then calls
 * onClosed(). Idempotent: a second call does nothing (and never calls its onClosed). */
static napi_value close_reader(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r = argc ? get_reader(env, argv[0]) : NULL;
  if (!r) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeReader(handle[, onClosed])");
    return NULL;
  }
  if (!r->closing) {
    if (argc >= 2) {
      napi_valuetype t;
      napi_typeof(env, argv[1], &t);
      if (t == napi_function) napi_create_reference(env, argv[1], 1, &r->closed_ref);
    }
    r->closing = 1;
    reader_unhook(r);
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, reader_on_closed);
  }
  return NULL;
}

/* A Float64Array property of `cfg` with at least `min` elements, kept alive by *ref. */
static double *get_f64_prop(napi_env env, napi_value cfg, const char *name, size_t min, napi_ref *ref) {
  napi_value v;
  bool is_ta = false;
  if (!get_prop(env, cfg, name, &v) || napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return NULL;
  napi_typedarray_type type;
  size_t length, byte_offset;
  void *ptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &byte_offset) != napi_ok) return NULL;
  if (type != napi_float64_array || length < min) return NULL;
  if (napi_create_reference(env, v, 1, ref) != napi_ok) return NULL;
  return ptr;
}

/*
 * readerFastEcho(handle, cfg | null): the reader answers the gateway's ICMP echo itself
 * (usernet_echo.c) with cfg = { vnetHdrLen, macHi, macLo, ip, dnsIp, portFastPath,
 * portCounters, gatewayFastPath, gatewayCounters } (Float64Arrays it reads and counts into),
 * or stops doing so (null).
 */
static napi_value reader_fast_echo(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r = argc ? get_reader(env, argv[0]) : NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (!r || (t != napi_null && t != napi_object)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "readerFastEcho(handle, config | null)");
    return NULL;
  }
  reader_echo_free(env, r);
  if (t == napi_null || r->closing) return NULL;
  struct reader_echo *e = calloc(1, sizeof *e);
  if (!e) {
    napi_throw_error(env, "ENOMEM", "readerFastEcho: out of memory");
    return NULL;
  }
  napi_value cfg = argv[1];
  int32_t vnet = -1;
  uint32_t mac_hi = 0, mac_lo = 0, ip = 0, dns_ip = 0;
  napi_value v;
  bool ok = get_prop(env, cfg, "vnetHdrLen", &v) && napi_get_value_int32(env, v, &vnet) == napi_ok &&
            get_prop(env, cfg, "macHi", &v) && napi_get_value_uint32(env, v, &mac_hi) == napi_ok &&
            get_prop(env, cfg, "macLo", &v) && napi_get_value_uint32(env, v, &mac_lo) == napi_ok &&
            get_prop(env, cfg, "ip", &v) && napi_get_value_uint32(env, v, &ip) == napi_ok &&
            get_prop(env, cfg, "dnsIp", &v) && napi_get_value_uint32(env, v, &dns_ip) == napi_ok &&
            (vnet == 0 || vnet == VNET_HDR_LEN);
  int nrefs = 0;
  if (ok) ok = (e->port_fp = get_f64_prop(env, cfg, "portFastPath", FP_SLOTS, &e->refs[nrefs])) && ++nrefs;
  if (ok) ok = (e->port_counters = get_f64_prop(env, cfg, "portCounters", C_COUNTER_COUNT, &e->refs[nrefs])) && ++nrefs;
  if (ok) ok = (e->gw_fp = get_f64_prop(env, cfg, "gatewayFastPath", FP_SLOTS, &e->refs[nrefs])) && ++nrefs;
  if (ok) ok = (e->gw_counters = get_f64_prop(env, cfg, "gatewayCounters", C_COUNTER_COUNT, &e->refs[nrefs])) && ++nrefs;
  if (!ok) {
    for (int i = 0; i < nrefs; i++) napi_delete_reference(env, e->refs[i]);
    free(e);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "readerFastEcho: config needs vnetHdrLen (0 or 10), macHi, macLo, ip, dnsIp, and "
                          "Float64Arrays portFastPath, portCounters, gatewayFastPath, gatewayCounters of their full size");
    return NULL;
  }
  e->vnet_hdr_len = (size_t)vnet;
  echo_target_set(&e->target, mac_hi, mac_lo, ip, dns_ip);
  r->echo = e;
  return NULL;
}

/* pauseReader(handle, paused): stop or restart polling without closing. */
static napi_value pause_reader(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r = argc ? get_reader(env, argv[0]) : NULL;
  bool paused = false;
  if (!r || argc < 2 || napi_get_value_bool(env, argv[1], &paused) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pauseReader(handle, paused)");
    return NULL;
  }
  if (r->closing) return NULL;
  if (paused && !r->stopped) {
    uv_poll_stop(&r->poll);
    r->stopped = 1;
  } else if (!paused && r->stopped) {
    r->stopped = 0;
    uv_poll_start(&r->poll, UV_READABLE, reader_on_poll);
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * pidfd watcher
 * ---------------------------------------------------------------------------------------------- */

typedef struct watcher {
  uv_poll_t poll;
  napi_env env;
  int fd;
  int closing;
  int fired;
  napi_ref cb_ref;
  napi_async_context actx;
} watcher_t;

static void watcher_on_closed(uv_handle_t *h) {
  watcher_t *w = h->data;
  close(w->fd);
  napi_delete_reference(w->env, w->cb_ref);
  napi_async_destroy(w->env, w->actx);
  free(w);
}

static void watcher_on_poll(uv_poll_t *h, int status, int events) {
  watcher_t *w = h->data;
  if (w->closing || w->fired) return;
  w->fired = 1;
  uv_poll_stop(&w->poll);
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[1], ret;
  napi_get_reference_value(env, w->cb_ref, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
  napi_create_int32(env, status, &argv[0]);
  if (napi_make_callback(env, w->actx, recv, cb, 1, argv, &ret) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void watcher_finalize_external(napi_env env, void *data, void *hint) {}

/* watchPid(pid, onExit(status)) -> handle. onExit fires once, when the process has exited.
 * Throws ESRCH when there is no such process. */
static napi_value watch_pid(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t pid;
  napi_valuetype t;
  if (argc < 2 || !get_int32(env, argv[0], &pid) || napi_typeof(env, argv[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "watchPid(pid, onExit)");
    return NULL;
  }
  int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (fd < 0) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "watchPid(%d)", pid);
    throw_errno(env, errno, "pidfd_open", ctx);
    return NULL;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) {
    close(fd);
    napi_throw_error(env, "ENOMEM", "watchPid: out of memory");
    return NULL;
  }
  w->env = env;
  w->fd = fd;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc < 0) {
    close(fd);
    free(w);
    throw_errno(env, -rc, "uv_poll_init", "watchPid");
    return NULL;
  }
  w->poll.data = w;
  napi_create_reference(env, argv[1], 1, &w->cb_ref);
  napi_value resource_name;
  napi_create_string_utf8(env, "usernet.PidWatch", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &w->actx);
  uv_poll_start(&w->poll, UV_READABLE, watcher_on_poll);
  /* A watcher alone must not keep the daemon alive. */
  uv_unref((uv_handle_t *)&w->poll);
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, w, watcher_finalize_external, NULL, &ext));
  return ext;
}

/* unwatch(handle): stop watching (idempotent); no callback after this returns. */
static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "unwatch(handle)");
    return NULL;
  }
  watcher_t *w = p;
  if (!w->closing) {
    w->closing = 1;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, watcher_on_closed);
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Peer credentials of a UNIX socket
 * ---------------------------------------------------------------------------------------------- */

/* peerCredentials(fd) -> { pid, uid, gid } of the process at the other end (SO_PEERCRED, as the
 * kernel recorded it at connect()), or throws with the errno. The control API refuses other
 * users with it: the socket's mode is the first guard, this the second. */
static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int32(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "peerCredentials(fd)");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    throw_errno(env, errno, "getsockopt(SO_PEERCRED)", "peerCredentials");
    return NULL;
  }
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, (int32_t)cred.pid, &v));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", v));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)cred.uid, &v));
  NAPI_CALL(env, napi_set_named_property(env, result, "uid", v));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)cred.gid, &v));
  NAPI_CALL(env, napi_set_named_property(env, result, "gid", v));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * tcpSockets: the TCP sockets inside a container (sock_diag), for a daemon that restarts
 * ---------------------------------------------------------------------------------------------- */

/* Room for the dump: an inet_diag_msg is 72 bytes plus its netlink header, ~90 per socket. */
#define DIAG_BUF_SIZE (8 * 1024 * 1024)

struct diag_job {
  uint8_t *buf;     /* DIAG_BUF_SIZE bytes, filled by the child with the netlink replies */
  size_t used;
  int err;
  int step;         /* 0, or which call failed */
  int truncated;
};

static const char *diag_steps[] = {"", "socket(NETLINK_SOCK_DIAG)", "sendto(SOCK_DIAG_BY_FAMILY)", "recv(NETLINK_SOCK_DIAG)"};

/* In the container's namespaces: one SOCK_DIAG_BY_FAMILY dump of its IPv4 TCP sockets, every
 * state but LISTEN, read whole into j->buf. Raw syscalls only (see run_in_namespaces). */
static void tcp_diag_work(void *arg) {
  struct diag_job *j = arg;
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) { j->err = errno; j->step = 1; return; }
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  memset(&msg, 0, sizeof msg);
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 0xffffffffu & ~(1u << 10 /* TCP_LISTEN */);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (sendto(nl, &msg, sizeof msg, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
    j->err = errno; j->step = 2; close(nl); return;
  }
  for (;;) {
    if (DIAG_BUF_SIZE - j->used < 65536) { j->truncated = 1; break; }
    ssize_t n = recv(nl, j->buf + j->used, 65536, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      j->err = errno; j->step = 3; break;
    }
    if (n == 0) break;
    /* The dump ends with NLMSG_DONE (or an NLMSG_ERROR): keep it, the parent stops there. */
    struct nlmsghdr *h = (struct nlmsghdr *)(j->buf + j->used);
    int len = (int)n, done = 0;
    for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len))
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) done = 1;
    j->used += (size_t)n;
    if (done) break;
  }
  close(nl);
}

/*
 * tcpSockets(target) -> [{ state, src, sport, dst, dport }] — the IPv4 TCP sockets (all states
 * but LISTEN; state as the kernel numbers it: 1 ESTABLISHED, 2 SYN_SENT, ...) in the network
 * namespace of target { pid } or { netnsPath, usernsPath? }; addresses as host-order uint32.
 * A daemon that restarts uses it to find the connections its predecessor carried, which are
 * now dead on the host side, and reset them. Throws with the errno and the failing step.
 */
static napi_value tcp_sockets(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tcpSockets(target) needs { pid } or { netnsPath }");
    return NULL;
  }
  char context[PATH_MAX + 64] = "";
  const char *failed = NULL;
  struct ns_work w = {.userns_fd = -1, .netns_fd = -1, .fn = tcp_diag_work};
  struct diag_job job = {0};
  int err = open_target_namespaces(env, argv[0], "tcpSockets", "own namespace", &w.userns_fd, &w.netns_fd, context, sizeof context, &failed);
  if (err) goto out;
  job.buf = mmap(NULL, DIAG_BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (job.buf == MAP_FAILED) { job.buf = NULL; err = errno; failed = "mmap"; goto out; }
  w.arg = &job;
  err = run_in_namespaces(&w);
  if (err) { failed = "clone"; goto out; }
  if (w.failed_step) { err = w.err; failed = step_names[w.failed_step]; goto out; }
  if (job.step) { err = job.err; failed = diag_steps[job.step]; goto out; }

  napi_value result, item, v;
  NAPI_CALL(env, napi_create_array(env, &result));
  uint32_t count = 0;
  int len = (int)job.used;
  for (struct nlmsghdr *h = (struct nlmsghdr *)job.buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_DONE) break;
    if (h->nlmsg_type == NLMSG_ERROR) {
      struct nlmsgerr *e = NLMSG_DATA(h);
      if (e->error != 0) { err = -e->error; failed = "NETLINK_SOCK_DIAG dump"; goto out; }
      break;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) continue;
    struct inet_diag_msg *m = NLMSG_DATA(h);
    NAPI_CALL(env, napi_create_object(env, &item));
    NAPI_CALL(env, napi_create_uint32(env, m->idiag_state, &v));
    NAPI_CALL(env, napi_set_named_property(env, item, "state", v));
    NAPI_CALL(env, napi_create_uint32(env, ntohl(m->id.idiag_src[0]), &v));
    NAPI_CALL(env, napi_set_named_property(env, item, "src", v));
    NAPI_CALL(env, napi_create_uint32(env, ntohs(m->id.idiag_sport), &v));
    NAPI_CALL(env, napi_set_named_property(env, item, "sport", v));
    NAPI_CALL(env, napi_create_uint32(env, ntohl(m->id.idiag_dst[0]), &v));
    NAPI_CALL(env, napi_set_named_property(env, item, "dst", v));
    NAPI_CALL(env, napi_create_uint32(env, ntohs(m->id.idiag_dport), &v));
    NAPI_CALL(env, napi_set_named_property(env, item, "dport", v));
    NAPI_CALL(env, napi_set_element(env, result, count++, item));
  }
  if (job.truncated) {
    NAPI_CALL(env, napi_get_boolean(env, true, &v));
    NAPI_CALL(env, napi_set_named_property(env, result, "truncated", v));
  }
  munmap(job.buf, DIAG_BUF_SIZE);
  if (w.userns_fd >= 0) close(w.userns_fd);
  if (w.netns_fd >= 0) close(w.netns_fd);
  return result;

out:
  if (job.buf) munmap(job.buf, DIAG_BUF_SIZE);
  if (w.userns_fd >= 0) close(w.userns_fd);
  if (w.netns_fd >= 0) close(w.netns_fd);
  throw_errno(env, err, failed, context);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------------- */

/* usernet_dgram.c */
napi_status usernet_dgram_register(napi_env env, napi_value exports);
/* usernet_sandbox.c */
napi_status usernet_sandbox_register(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_default, NULL},
    {"setPersist", NULL, set_persist, NULL, NULL, NULL, napi_default, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
    {"dupFd", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
    {"write", NULL, write_frame, NULL, NULL, NULL, napi_default, NULL},
    {"writev", NULL, writev_frame, NULL, NULL, NULL, napi_default, NULL},
    {"socketOutq", NULL, socket_outq, NULL, NULL, NULL, napi_default, NULL},
    {"socketError", NULL, socket_error, NULL, NULL, NULL, napi_default, NULL},
    {"startReader", NULL, start_reader, NULL, NULL, NULL, napi_default, NULL},
    {"closeReader", NULL, close_reader, NULL, NULL, NULL, napi_default, NULL},
    {"pauseReader", NULL, pause_reader, NULL, NULL, NULL, napi_default, NULL},
    {"readerFastEcho", NULL, reader_fast_echo, NULL, NULL, NULL, napi_default, NULL},
    {"watchPid", NULL, watch_pid, NULL, NULL, NULL, napi_default, NULL},
    {"unwatch", NULL, unwatch, NULL, NULL, NULL, napi_default, NULL},
    {"peerCredentials", NULL, peer_credentials, NULL, NULL, NULL, napi_default, NULL},
    {"tcpSockets", NULL, tcp_sockets, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value vnet_len;
  napi_create_int32(env, VNET_HDR_LEN, &vnet_len);
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_set_named_property(env, exports, "VNET_HDR_LEN", vnet_len);
  if (usernet_dgram_register(env, exports) != napi_ok) return NULL;
  if (usernet_sandbox_register(env, exports) != napi_ok) return NULL;
  if (usernet_echo_register(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
