#!/usr/bin/python3
"""Writes charts/tokenwarehouse/files/seccomp/twd.json, twd's seccomp profile (docs/security.md).

The allow list is the union of (1) the system calls recorded from twd serving
seccomp_profile_test.sh's workload (`TW_TWD_WRAPPER="strace -f -qq -o FILE"`) and from the
init container's `chown`, given as strace output files on the command line, and (2) the
reviewed families below that twd reaches on paths a short workload may miss (pinned arenas,
block devices, the peers-file watcher, RDMA and CUDA loaded at run time, error paths). Calls that
create namespaces, trace or read other processes, load kernel code or change identities are
never allowed; clone3 answers ENOSYS (glibc falls back to clone, whose namespace flags are
refused), as container runtimes' default profiles do.

    tests/twd/gen_seccomp_profile.py TRACE [TRACE ...]
"""
import json
import os
import re
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "charts",
                   "tokenwarehouse", "files", "seccomp", "twd.json")

REVIEWED = """
read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek
fsync fdatasync sync_file_range fallocate ftruncate
io_uring_setup io_uring_enter io_uring_register
open openat close close_range dup dup2 dup3 pipe pipe2 fcntl flock ioctl
stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2
getdents64 readlink readlinkat getcwd umask
unlink unlinkat rename renameat renameat2 mkdir mkdirat chmod fchmod fchmodat
chown fchown lchown fchownat
inotify_init1 inotify_add_watch inotify_rm_watch
mmap munmap mremap mprotect madvise mincore brk membarrier
mlock mlock2 munlock mlockall munlockall get_mempolicy set_mempolicy mbind
socket socketpair bind listen accept accept4 connect shutdown getsockname getpeername
getsockopt setsockopt sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg
epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
poll ppoll select pselect6 eventfd eventfd2 timerfd_create timerfd_settime timerfd_gettime
clock_gettime clock_getres clock_nanosleep nanosleep gettimeofday time
futex futex_waitv set_robust_list get_robust_list set_tid_address rseq
sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_getscheduler
getpid getppid gettid getuid geteuid getgid getegid getgroups getresuid getresgid
capget prctl arch_prctl prlimit64 getrlimit getrusage uname sysinfo getrandom
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigtimedwait rt_sigpending rt_sigsuspend
sigaltstack tgkill tkill kill restart_syscall
execve exit exit_group wait4
"""

NEVER = set("""
ptrace process_vm_readv process_vm_writev process_madvise pidfd_getfd kcmp
mount umount2 pivot_root chroot unshare setns fsopen fsmount fsconfig move_mount open_tree
keyctl add_key request_key bpf perf_event_open userfaultfd personality
kexec_load kexec_file_load init_module finit_module delete_module
open_by_handle_at name_to_handle_at
setuid setgid setreuid setregid setresuid setresgid setfsuid setfsgid setgroups capset
reboot swapon swapoff acct quotactl syslog vhangup iopl ioperm
settimeofday clock_settime clock_adjtime adjtimex
clone3
""".split())

# clone without namespace flags (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET),
# the rule container runtimes use; clone3 cannot be filtered by flags and answers ENOSYS.
CLONE_NS_FLAGS = 0x7E020000


def traced(path):
    names = set()
    for line in open(path, errors="replace"):
        m = re.match(r"^(?:\d+ +)?([a-z_0-9]+)\(", line)
        if m:
            names.add(m.group(1))
    return names


def main():
    allowed = set(REVIEWED.split())
    for path in sys.argv[1:]:
        allowed |= traced(path)
    refused = allowed & NEVER
    if refused - {"clone3"}:
        sys.exit("twd made system calls the profile never allows: %s" % sorted(refused))
    allowed -= NEVER
    allowed.discard("clone")
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        # Native ABIs only: a 32-bit entry into a 64-bit kernel gets the default action.
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }
    with open(OUT, "w") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
    print("%s: %d system calls allowed" % (os.path.relpath(OUT), len(allowed) + 1))


if __name__ == "__main__":
    main()
