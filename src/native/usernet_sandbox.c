/*
 * usernet-slirp4netns's --enable-sandbox and --enable-seccomp.
 *
 * sandboxEnter(): in the process's own mount namespace (made by the launcher before Node started,
 * src/native/launcher.c), pivot into an empty tmpfs root that holds only /etc and /run (bound
 * from the old root; read-only where the kernel allows), detach the old root, and drop the
 * capabilities of the calling thread to CAP_NET_BIND_SERVICE. pivot_root changes the root and
 * working directory of every thread of the process; capabilities, though, belong to each thread,
 * and this drops them on the main thread only — the one that runs all JavaScript. The other
 * threads (libuv's pool, V8's workers) run no code of ours that could ask for a privileged
 * operation, and seccompDeny() closes the privileged system calls to every thread.
 *
 * seccompDeny(): a seccomp filter on every thread (SECCOMP_FILTER_FLAG_TSYNC, which also sets
 * no_new_privs on them) that fails with EPERM the system calls a network helper never needs and
 * an attacker would want: mounting and namespaces, module and kexec loading, ptrace and other
 * processes' memory, bpf, keyrings, clock and host settings, reboot, swap; clone with namespace
 * flags; clone3 gets ENOSYS (its flags are out of a filter's reach, and glibc falls back to
 * clone). Everything else is allowed: a deny list, as slirp4netns's own filter is, because the
 * calls a Node process makes are too many to enumerate safely.
 */
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

void throw_errno(napi_env env, int err, const char *syscall_name, const char *context);

/* Binds `from` at `to` (recursively) and tries to make it read-only; returns 1 if read-only. */
static int bind_dir(const char *from, const char *to, int *err, const char **step) {
  if (mkdir(to, 0755) < 0 && errno != EEXIST) {
    *err = errno;
    *step = "mkdir";
    return -1;
  }
  if (mount(from, to, NULL, MS_BIND | MS_REC, NULL) < 0) {
    *err = errno;
    *step = "mount(MS_BIND)";
    return -1;
  }
  /* A remount must keep the flags the kernel locked on that mount (nosuid, nodev, noexec). */
  struct statvfs sv;
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV;
  if (statvfs(to, &sv) == 0 && (sv.f_flag & ST_NOEXEC)) flags |= MS_NOEXEC;
  return mount(NULL, to, NULL, flags, NULL) == 0 ? 1 : 0;
}

static napi_value sandbox_enter(napi_env env, napi_callback_info info) {
  int err = 0;
  const char *step = NULL;
  const char *root = "/tmp";
  if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755") < 0) {
    throw_errno(env, errno, "mount(tmpfs)", "sandbox");
    return NULL;
  }
  int etc_ro = bind_dir("/etc", "/tmp/etc", &err, &step);
  if (etc_ro < 0) {
    throw_errno(env, err, step, "sandbox: /etc");
    return NULL;
  }
  int run_ro = bind_dir("/run", "/tmp/run", &err, &step);
  if (run_ro < 0) {
    throw_errno(env, err, step, "sandbox: /run");
    return NULL;
  }
  if (mkdir("/tmp/old", 0700) < 0 && errno != EEXIST) {
    throw_errno(env, errno, "mkdir", "sandbox: /old");
    return NULL;
  }
  if (chdir(root) < 0) {
    throw_errno(env, errno, "chdir", "sandbox");
    return NULL;
  }
  if (syscall(SYS_pivot_root, ".", "old") < 0) {
    throw_errno(env, errno, "pivot_root", "sandbox");
    return NULL;
  }
  if (chdir("/") < 0) {
    throw_errno(env, errno, "chdir", "sandbox");
    return NULL;
  }
  if (umount2("/old", MNT_DETACH) < 0) {
    throw_errno(env, errno, "umount2(/old)", "sandbox");
    return NULL;
  }
  rmdir("/old");
  int root_ro = mount("tmpfs", "/", "tmpfs", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755") == 0;

  /* Capabilities: only CAP_NET_BIND_SERVICE stays (forwards to ports below 1024). */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    throw_errno(env, errno, "prctl(PR_SET_NO_NEW_PRIVS)", "sandbox");
    return NULL;
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap <= 63; cap++) {
    if (cap == CAP_NET_BIND_SERVICE) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM) {
      throw_errno(env, errno, "prctl(PR_CAPBSET_DROP)", "sandbox");
      return NULL;
    }
  }
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capget, &hdr, data) < 0) {
    throw_errno(env, errno, "capget", "sandbox");
    return NULL;
  }
  uint32_t keep = data[0].permitted & (1u << CAP_NET_BIND_SERVICE);
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = keep;
  if (syscall(SYS_capset, &hdr, data) < 0) {
    throw_errno(env, errno, "capset", "sandbox");
    return NULL;
  }

  napi_value result, v;
  napi_create_object(env, &result);
  napi_get_boolean(env, etc_ro == 1, &v);
  napi_set_named_property(env, result, "etcReadOnly", v);
  napi_get_boolean(env, run_ro == 1, &v);
  napi_set_named_property(env, result, "runReadOnly", v);
  napi_get_boolean(env, root_ro, &v);
  napi_set_named_property(env, result, "rootReadOnly", v);
  napi_get_boolean(env, keep != 0, &v);
  napi_set_named_property(env, result, "netBindService", v);
  return result;
}

#if defined(__x86_64__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

static const int denied[] = {
#define D(name) __NR_##name,
#ifdef __NR_mount
    D(mount)
#endif
#ifdef __NR_umount2
    D(umount2)
#endif
#ifdef __NR_pivot_root
    D(pivot_root)
#endif
#ifdef __NR_chroot
    D(chroot)
#endif
#ifdef __NR_unshare
    D(unshare)
#endif
#ifdef __NR_setns
    D(setns)
#endif
#ifdef __NR_move_mount
    D(move_mount) D(open_tree) D(fsopen) D(fsconfig) D(fsmount) D(fspick)
#endif
#ifdef __NR_mount_setattr
    D(mount_setattr)
#endif
#ifdef __NR_ptrace
    D(ptrace)
#endif
#ifdef __NR_process_vm_readv
    D(process_vm_readv) D(process_vm_writev)
#endif
#ifdef __NR_pidfd_getfd
    D(pidfd_getfd)
#endif
#ifdef __NR_kcmp
    D(kcmp)
#endif
#ifdef __NR_kexec_load
    D(kexec_load)
#endif
#ifdef __NR_kexec_file_load
    D(kexec_file_load)
#endif
#ifdef __NR_init_module
    D(init_module) D(finit_module) D(delete_module)
#endif
#ifdef __NR_bpf
    D(bpf)
#endif
#ifdef __NR_perf_event_open
    D(perf_event_open)
#endif
#ifdef __NR_keyctl
    D(keyctl) D(add_key) D(request_key)
#endif
#ifdef __NR_swapon
    D(swapon) D(swapoff)
#endif
#ifdef __NR_reboot
    D(reboot)
#endif
#ifdef __NR_sethostname
    D(sethostname) D(setdomainname)
#endif
#ifdef __NR_acct
    D(acct)
#endif
#ifdef __NR_quotactl
    D(quotactl)
#endif
#ifdef __NR_open_by_handle_at
    D(open_by_handle_at)
#endif
#ifdef __NR_userfaultfd
    D(userfaultfd)
#endif
#ifdef __NR_settimeofday
    D(settimeofday)
#endif
#ifdef __NR_clock_settime
    D(clock_settime) D(clock_adjtime) D(adjtimex)
#endif
#ifdef __NR_syslog
    D(syslog)
#endif
#ifdef __NR_iopl
    D(iopl) D(ioperm)
#endif
#ifdef __NR_personality
    D(personality)
#endif
#ifdef __NR_vhangup
    D(vhangup)
#endif
#ifdef __NR_uselib
    D(uselib)
#endif
#ifdef __NR_lookup_dcookie
    D(lookup_dcookie)
#endif
#ifdef __NR_mknod
    D(mknod)
#endif
#ifdef __NR_mknodat
    D(mknodat)
#endif
#undef D
};

static napi_value seccomp_deny(napi_env env, napi_callback_info info) {
#ifndef SANDBOX_AUDIT_ARCH
  throw_errno(env, ENOSYS, "seccomp", "seccompDeny: no filter for this architecture");
  return NULL;
#else
  enum { N = sizeof denied / sizeof denied[0] };
  struct sock_filter prog[N + 16];
  size_t n = 0;
#define S(code, k) prog[n++] = (struct sock_filter)BPF_STMT(code, k)
#define J(code, k, jt, jf) prog[n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf)
  S(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  J(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_AUDIT_ARCH, 1, 0);
  S(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS); /* another ABI: never ours */
  S(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  /* The x32 ABI's numbers have bit 30 set: none of ours. */
  J(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
  S(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
#endif
  /* Layout after the deny block (c0 = first + N):
   *   c0 JEQ clone        ? c1 : c3          c4 RET ALLOW
   *   c1 LD  args[0]                         c5 RET ERRNO(EPERM)
   *   c2 JSET NS_FLAGS    ? c5 : c4          c6 RET ERRNO(ENOSYS)
   *   c3 JEQ clone3       ? c6 : c4
   * A jump goes to pc + 1 + offset; deny check i (at first + i) goes to c5. */
  size_t first = n;
  for (size_t i = 0; i < N; i++) J(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)denied[i], (uint8_t)(N + 4 - i), 0);
  J(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 2);
  S(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  J(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 2, 1);
#ifdef __NR_clone3
  J(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 2, 0);
#else
  J(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff, 2, 0);
#endif
  S(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  S(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  S(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
  if (n != first + N + 7) {
    throw_errno(env, EINVAL, "seccomp", "seccompDeny: filter layout");
    return NULL;
  }
#undef S
#undef J
  struct sock_fprog fprog = {(unsigned short)n, prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    throw_errno(env, errno, "prctl(PR_SET_NO_NEW_PRIVS)", "seccompDeny");
    return NULL;
  }
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  if (r != 0) {
    /* r > 0: the id of a thread that could not be synchronised. */
    throw_errno(env, r > 0 ? ESRCH : errno, "seccomp(SECCOMP_FILTER_FLAG_TSYNC)", "seccompDeny");
    return NULL;
  }
  napi_value result;
  napi_create_uint32(env, (uint32_t)N, &result);
  return result;
#endif
}

napi_status usernet_sandbox_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sandboxEnter", NULL, sandbox_enter, NULL, NULL, NULL, napi_default, NULL},
      {"seccompDeny", NULL, seccomp_deny, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
