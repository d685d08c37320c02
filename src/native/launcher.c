/*
 * usernet-slirp4netns (native launcher): what has to happen before Node starts.
 *
 * Node runs several threads from its first instruction, and the kernel refuses a multithreaded
 * process setns(CLONE_NEWUSER) and unshare(CLONE_NEWNS). slirp4netns's --enable-sandbox needs
 * both: it joins the target's user namespace (so that, unprivileged, it holds capabilities
 * there) and runs in a mount namespace of its own, where it later pivots into an empty root.
 * So this small program does those two steps, single-threaded, and then execs Node on
 * dist/src/slirp/cli.js with the same arguments (same PID: rootlesskit and Podman track it).
 * USERNET_SLIRP_MOUNTNS=1 tells the JavaScript the mount namespace is its own; it pivots after
 * opening the TAP and the API socket, before signalling ready.
 *
 * It also creates the TAP, when it does not exist yet, before Node starts: slirp4netns has it
 * there within milliseconds, and some callers (slirp4netns's own DHCP test) use it without waiting
 * for the ready fd. Only without -c (with -c the device must appear configured). It is made
 * multi-queue, non-persistent, and its fd passed to Node
 * (USERNET_SLIRP_TAPFD); Node opens a second queue, configures it as usual, and closes this one.
 * Not with --network (the daemon opens the TAP there). Any failure here is left to Node to meet
 * and report.
 *
 * Its option scan uses getopt_long with the
 * option table of slirp4netns 1.2, so it reads argv exactly as the JavaScript parser does; a
 * malformed command line is left to the JavaScript to report.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef USERNET_NODE
#define USERNET_NODE "node"
#endif

static void die(const char *what) {
  fprintf(stderr, "usernet-slirp4netns: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* The project directory: this executable is PROJECT/build/Release/usernet-slirp4netns. */
static void project_dir(char *out, size_t size) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) die("readlink(/proc/self/exe)");
  self[n] = '\0';
  for (int up = 0; up < 3; up++) {
    char *slash = strrchr(self, '/');
    if (!slash) break;
    *slash = '\0';
  }
  snprintf(out, size, "%s", self);
}

/* Sends/receives one fd over a UNIX socket. */
static int send_fd(int sock, int fd) {
  char byte = 'T';
  struct iovec iov = {&byte, 1};
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock) {
  char byte;
  struct iovec iov = {&byte, 1};
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

/*
 * Creates TAPNAME in the target's network namespace if it is absent; returns the TAP's fd (a
 * queue of a multi-queue, non-persistent device), or -1 (absent target, existing device, error).
 * A forked child joins the namespaces, so this process stays where it is.
 */
static int early_tap(const char *target, const char *netns_type, const char *userns, const char *tapname) {
  char netns[PATH_MAX], user[PATH_MAX];
  if (strcmp(netns_type, "pid") == 0) {
    snprintf(netns, sizeof netns, "/proc/%s/ns/net", target);
    snprintf(user, sizeof user, "/proc/%s/ns/user", target);
  } else {
    snprintf(netns, sizeof netns, "%s", target);
    user[0] = '\0';
  }
  if (userns) snprintf(user, sizeof user, "%s", userns);
  int netfd = open(netns, O_RDONLY | O_CLOEXEC);
  if (netfd < 0) return -1;
  /* Without a user namespace named, the one that owns the network namespace. */
  int userfd = user[0] ? open(user, O_RDONLY | O_CLOEXEC) : ioctl(netfd, NS_GET_USERNS);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    close(netfd);
    if (userfd >= 0) close(userfd);
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    if (userfd >= 0 && setns(userfd, CLONE_NEWUSER) < 0 && errno != EINVAL) _exit(1);
    if (setns(netfd, CLONE_NEWNET) < 0) _exit(1);
    if (if_nametoindex(tapname) != 0) _exit(0); /* there already: Node attaches to it */
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) _exit(1);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", tapname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) _exit(1);
    _exit(send_fd(sv[1], fd) == 0 ? 0 : 1);
  }
  close(sv[1]);
  close(netfd);
  if (userfd >= 0) close(userfd);
  int fd = pid > 0 ? recv_fd(sv[0]) : -1;
  close(sv[0]);
  if (pid > 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  return fd;
}

int main(int argc, char **argv) {
  /* A copy: GNU getopt permutes the array it scans. */
  char **scan = calloc((size_t)argc + 1, sizeof *scan);
  if (!scan) die("calloc");
  for (int i = 0; i < argc; i++) scan[i] = argv[i];

  enum { O_SANDBOX = 1000, O_USERNS, O_NETNS_TYPE, O_NETWORK, O_INFO, O_CONFIGURE, O_OTHER_ARG, O_OTHER_FLAG };
  static const struct option longopts[] = {
      {"configure", no_argument, NULL, O_CONFIGURE},
      {"exit-fd", required_argument, NULL, O_OTHER_ARG},
      {"ready-fd", required_argument, NULL, O_OTHER_ARG},
      {"mtu", required_argument, NULL, O_OTHER_ARG},
      {"cidr", required_argument, NULL, O_OTHER_ARG},
      {"disable-host-loopback", no_argument, NULL, O_OTHER_FLAG},
      {"no-host-loopback", no_argument, NULL, O_OTHER_FLAG},
      {"netns-type", required_argument, NULL, O_NETNS_TYPE},
      {"userns-path", required_argument, NULL, O_USERNS},
      {"api-socket", required_argument, NULL, O_OTHER_ARG},
      {"enable-ipv6", no_argument, NULL, O_OTHER_FLAG},
      {"enable-sandbox", no_argument, NULL, O_SANDBOX},
      {"create-sandbox", no_argument, NULL, O_SANDBOX},
      {"enable-seccomp", no_argument, NULL, O_OTHER_FLAG},
      {"help", no_argument, NULL, O_INFO},
      {"version", no_argument, NULL, O_INFO},
      {"outbound-addr", required_argument, NULL, O_OTHER_ARG},
      {"outbound-addr6", required_argument, NULL, O_OTHER_ARG},
      {"disable-dns", no_argument, NULL, O_OTHER_FLAG},
      {"macaddress", required_argument, NULL, O_OTHER_ARG},
      {"target-type", required_argument, NULL, O_OTHER_ARG},
      {"network", required_argument, NULL, O_NETWORK},
      {"socket", required_argument, NULL, O_OTHER_ARG},
      {0, 0, 0, 0},
  };
  int sandbox = 0, bad = 0, joining = 0, info = 0, configure = 0, c;
  const char *userns = NULL, *netns_type = "pid";
  opterr = 0;
  while ((c = getopt_long(argc, scan, "ce:r:m:a:6hv", longopts, NULL)) != -1) {
    if (c == O_SANDBOX) sandbox = 1;
    else if (c == O_USERNS) userns = optarg;
    else if (c == O_NETNS_TYPE) netns_type = optarg;
    else if (c == O_NETWORK) joining = 1;
    else if (c == O_CONFIGURE || c == 'c') configure = 1;
    else if (c == O_INFO || c == 'h' || c == 'v') info = 1;
    else if (c == '?' || c == ':') bad = 1;
  }
  const char *target = optind < argc ? scan[optind] : NULL;
  const char *tapname = optind + 1 < argc ? scan[optind + 1] : "tap0";

  /* Not with -c: a TAP must not be seen before it is configured (callers wait for the device,
   * then look for its address); Node creates and configures it in one step then. */
  if (!bad && !info && !joining && !configure && target && strlen(tapname) < IFNAMSIZ) {
    int fd = early_tap(target, netns_type, userns, tapname);
    if (fd >= 0) {
      /* Inherited by Node (no close-on-exec), which closes it once its own queue is open. */
      char num[16];
      fcntl(fd, F_SETFD, 0);
      snprintf(num, sizeof num, "%d", fd);
      if (setenv("USERNET_SLIRP_TAPFD", num, 1) < 0) die("setenv");
    }
  }

  if (sandbox && !bad && target) {
    /* Unprivileged, join the target's user namespace first (as slirp4netns does): there we hold
     * the capabilities a mount namespace and, later, pivot_root need. */
    char path[PATH_MAX];
    const char *uns = userns;
    if (!uns && strcmp(netns_type, "pid") == 0) {
      snprintf(path, sizeof path, "/proc/%s/ns/user", target);
      uns = path;
    }
    if (uns && geteuid() != 0) {
      int fd = open(uns, O_RDONLY | O_CLOEXEC);
      if (fd < 0) die(uns);
      if (setns(fd, CLONE_NEWUSER) < 0 && errno != EINVAL) die("setns(CLONE_NEWUSER)");
      close(fd);
    }
    if (unshare(CLONE_NEWNS) < 0) die("--enable-sandbox: unshare(CLONE_NEWNS)");
    /* Nothing done in here may reach the caller's mounts (slirp4netns's sandbox-no-unmount). */
    if (mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) die("--enable-sandbox: making / a slave mount");
    if (setenv("USERNET_SLIRP_MOUNTNS", "1", 1) < 0) die("setenv");
  }
  free(scan);

  char dir[PATH_MAX], script[PATH_MAX + 64];
  project_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/bin/usernet-slirp4netns.js", dir);
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die("calloc");
  args[0] = (char *)USERNET_NODE;
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  execvp(args[0], args);
  die("exec " USERNET_NODE);
  return 1;
}
