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
 * Without --enable-sandbox it only execs Node. Its option scan uses getopt_long with the
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
#include <sys/mount.h>
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

int main(int argc, char **argv) {
  /* A copy: GNU getopt permutes the array it scans. */
  char **scan = calloc((size_t)argc + 1, sizeof *scan);
  if (!scan) die("calloc");
  for (int i = 0; i < argc; i++) scan[i] = argv[i];

  enum { O_SANDBOX = 1000, O_USERNS, O_NETNS_TYPE, O_OTHER_ARG, O_OTHER_FLAG };
  static const struct option longopts[] = {
      {"configure", no_argument, NULL, O_OTHER_FLAG},
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
      {"help", no_argument, NULL, O_OTHER_FLAG},
      {"version", no_argument, NULL, O_OTHER_FLAG},
      {"outbound-addr", required_argument, NULL, O_OTHER_ARG},
      {"outbound-addr6", required_argument, NULL, O_OTHER_ARG},
      {"disable-dns", no_argument, NULL, O_OTHER_FLAG},
      {"macaddress", required_argument, NULL, O_OTHER_ARG},
      {"target-type", required_argument, NULL, O_OTHER_ARG},
      {"network", required_argument, NULL, O_OTHER_ARG},
      {"socket", required_argument, NULL, O_OTHER_ARG},
      {0, 0, 0, 0},
  };
  int sandbox = 0, bad = 0, c;
  const char *userns = NULL, *netns_type = "pid";
  opterr = 0;
  while ((c = getopt_long(argc, scan, "ce:r:m:a:6hv", longopts, NULL)) != -1) {
    if (c == O_SANDBOX) sandbox = 1;
    else if (c == O_USERNS) userns = optarg;
    else if (c == O_NETNS_TYPE) netns_type = optarg;
    else if (c == '?' || c == ':') bad = 1;
  }
  const char *target = optind < argc ? scan[optind] : NULL;

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
