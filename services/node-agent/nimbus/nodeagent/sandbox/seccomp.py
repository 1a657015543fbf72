"""The seccomp profile of a sandbox, as OCI config.json's linux.seccomp. Pure data.

An allowlist, like Docker's default profile (moby profiles/seccomp/default.json) for a container
with no capabilities: a blocklist would fail open for every syscall newer than it, because runc's
libseccomp silently drops names it does not know. Syscalls not listed fail with EPERM (runc answers
ENOSYS for ones newer than the profile, so libc falls back).

Differences from Docker's: no ptrace, process_vm_*, io_uring (a large, often-exploited surface),
personality changes or keyring calls; clone may not create namespaces; and listen(2) is allowed
only for runtimes whose shim must serve inside the sandbox (`provided`), whose shim then forbids
it to everything it starts by stacking its own filter (runtimes/provided/bootstrap.py).

Sockets: only the families a function uses. AF_UNIX (the shim's channel to the agent, and
socketpair), AF_INET and AF_INET6 (the function's own connections), and AF_NETLINK with protocol
NETLINK_ROUTE alone: glibc's getifaddrs (Node.js' os.networkInterfaces(), Python's
socket.if_nameindex()) and getaddrinfo's AI_ADDRCONFIG (Node.js' net.connect) read the sandbox's own
interface list through it, which is loopback only. Every other family fails with EPERM: the rest
of netlink (uevents, audit, sock_diag, netfilter, xfrm...), AF_ALG (the kernel's crypto API),
AF_PACKET, AF_KEY, AF_VSOCK, Bluetooth, and the many protocol families a function never needs,
each a kernel surface of its own.
"""

from __future__ import annotations

from typing import Any

_ALLOWED = """
accept accept4 access alarm arch_prctl bind brk capget capset chdir chmod chown clock_getres
clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchown
fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync
ftruncate futex futex_waitv futimesat getcpu getcwd getdents getdents64 getegid geteuid getgid
getgroups getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresuid getrlimit get_robust_list getrusage getsid getsockname getsockopt gettid gettimeofday
getuid getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
io_destroy io_getevents io_pgetevents ioprio_get ioprio_set io_setup io_submit kill lchown lgetxattr
link linkat listxattr llistxattr lremovexattr lseek lsetxattr lstat madvise membarrier memfd_create
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedsend mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap nanosleep newfstatat open openat openat2 pause pidfd_open pidfd_send_signal pipe
pipe2 poll ppoll prctl pread64 preadv preadv2 prlimit64 pselect6 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages removexattr rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp select semctl semget semop semtimedop sendfile sendmmsg sendmsg sendto setfsgid setfsuid
setgid setgroups setitimer setpgid setpriority setregid setresgid setresuid setreuid setrlimit
set_robust_list setsid setsockopt set_tid_address setuid setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 splice stat statfs statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill truncate
umask uname unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid write writev
""".split()

# Namespace flags clone(2) must not carry
# (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET): Docker's mask; with no capabilities
# most would fail anyway, but a user namespace would not.
_CLONE_NS_MASK = 0x7E020000
_AF_UNIX, _AF_INET, _AF_INET6, _AF_NETLINK = 1, 2, 10, 16
_NETLINK_ROUTE = 0
_ENOSYS = 38


def profile(*, allow_listen: bool) -> dict[str, Any]:
    names = sorted(_ALLOWED + (["listen"] if allow_listen else []))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        # x86_64 only: 32-bit and x32 entry points (another way to name syscalls) are refused.
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            # The socket families of the docstring; rules for one syscall are alternatives.
            *(
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}],
                }
                for family in (_AF_UNIX, _AF_INET, _AF_INET6)
            ),
            # The args of one rule must all match: netlink, and only its routing protocol.
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": _AF_NETLINK, "op": "SCMP_CMP_EQ"},
                    {"index": 2, "value": _NETLINK_ROUTE, "op": "SCMP_CMP_EQ"},
                ],
            },
            {
                "names": ["socketpair"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": _AF_UNIX, "op": "SCMP_CMP_EQ"}],
            },
            # Only the default execution domain (0) and the query form (0xffffffff).
            *(
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}],
                }
                for v in (0, 0xFFFFFFFF)
            ),
            # Threads and fork, but no new namespaces.
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": _CLONE_NS_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc use clone.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
        ],
    }
