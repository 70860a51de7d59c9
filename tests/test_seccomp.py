"""deploy/pod-stats.seccomp.json: the agent's seccomp profile (a kubelet Localhost profile).

An allowlist: what `pod-stats serve` was seen calling (strace -f of a whole serve run with
pods coming and going, scrapes, SIGTERM: tests/helpers/trace_serve.py), plus the calls that
another glibc, Python or kernel may make instead of those (MARGIN). Everything else fails
with ENOSYS, which glibc takes as "old kernel" and falls back from. The real test runs
`pod-stats serve` under the profile (libseccomp, as runc loads it) and scrapes pod figures.

`python tests/test_seccomp.py --write` regenerates the profile from the lists below.
"""

import ctypes
import ctypes.util
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import free_port, serve_command

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "deploy" / "pod-stats.seccomp.json"
RUNNER = ROOT / "tests" / "helpers" / "seccomp_exec.py"
ENOSYS = 38

# What a traced serve run called, recording included (kernel 6.18, Debian 12's glibc, Python
# 3.11; the trailing calls of SIGTERM and exit included).
TRACED = {
    "accept4",
    "access",
    "arch_prctl",
    "bind",
    "bpf",
    "brk",
    "capset",
    "clone3",
    "close",
    "connect",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "execve",
    "exit",
    "exit_group",
    "faccessat2",
    "fchown",
    "fcntl",
    "fdatasync",
    "flock",
    "ftruncate",
    "futex",
    "getcwd",
    "getdents64",
    "geteuid",
    "getpeername",
    "getpid",
    "getrandom",
    "getsockname",
    "gettid",
    "ioctl",
    "listen",
    "lseek",
    "madvise",
    "membarrier",
    "mkdir",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "newfstatat",
    "openat",
    "perf_event_open",
    "poll",
    "prctl",
    "pread64",
    "prlimit64",
    "pwrite64",
    "read",
    "readlink",
    "recvfrom",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sendto",
    "set_robust_list",
    "set_tid_address",
    "setsockopt",
    "shutdown",
    "socket",
    "socketpair",
    "sysinfo",
    "uname",
    "unlink",
    "write",
}

# Not seen, but what the same code may call elsewhere: older/newer glibc and Python pick other
# members of a family (clone for clone3, fstat/statx for newfstatat, ...), vDSO fallbacks for
# clocks, TLS and the API-server client (connect, getpeername, sendmsg), signal delivery, and
# what a container runtime's init does between applying the profile and exec.
MARGIN = {
    # threads, signals, exit
    "clone",
    "sigaltstack",
    "tgkill",
    "kill",
    "getppid",
    "restart_syscall",
    "sched_yield",
    "sched_getaffinity",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    # the recording's SQLite: a directory sync, a mode kept; the *at calls of architectures
    # without the old ones (arm64 has no mkdir, unlink, chown)
    "fsync",
    "fchmod",
    "mkdirat",
    "unlinkat",
    "fchownat",
    # files (statfs: libbpf checks tracefs/bpffs types; readlinkat, statx, fstat: other libcs)
    "open",
    "stat",
    "fstat",
    "lstat",
    "statx",
    "statfs",
    "fstatfs",
    "readlinkat",
    "faccessat",
    "getdents",
    "readv",
    "writev",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "close_range",
    "fadvise64",
    "umask",
    "chdir",
    "fchdir",
    # memory and time
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getrlimit",
    "setrlimit",
    "mlock",
    "munlock",
    # waiting
    "ppoll",
    "select",
    "pselect6",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    # sockets (HTTP server, TLS, API-server client)
    "accept",
    "getsockopt",
    "sendmsg",
    "recvmsg",
    # identity and capabilities (the drop after attach; runtimes' init before exec)
    "getuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "capget",
    "setgroups",
    "setuid",
    "setgid",
    "setresuid",
    "setresgid",
    "getpriority",
    "execveat",
}

# Never: what a compromised agent would want and pod-stats does not need.
FORBIDDEN = {
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "bpf_unused",
    "iopl",
    "ioperm",
    "personality",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "syslog",
    "quotactl",
    "lookup_dcookie",
    "perf_event_open_unused",
    "io_uring_setup",
    "io_uring_enter",
    "fsopen",
    "fsmount",
    "move_mount",
    "open_tree",
    "mknod",
    "mknodat",
}


def render_profile() -> str:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": sorted(TRACED | MARGIN), "action": "SCMP_ACT_ALLOW"}],
    }
    return json.dumps(profile, indent=2) + "\n"


def _libseccomp():
    return ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")


def test_profile_is_rendered_from_the_lists():
    assert PROFILE.read_text() == render_profile(), (
        "deploy/pod-stats.seccomp.json is out of date: run .venv/bin/python tests/test_seccomp.py --write"
    )


def test_profile_allows_bpf_and_nothing_dangerous():
    profile = json.loads(PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    (rule,) = profile["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
    allowed = set(rule["names"])
    assert {"bpf", "perf_event_open", "capset", "prctl"} <= allowed
    assert not allowed & FORBIDDEN, allowed & FORBIDDEN
    assert len(allowed) < 150  # the runtimes' defaults allow ~350


def test_every_name_is_a_syscall_libseccomp_knows():
    lib = _libseccomp()
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    unknown = [
        name
        for name in TRACED | MARGIN | FORBIDDEN - {"bpf_unused", "perf_event_open_unused"}
        if lib.seccomp_syscall_resolve_name(name.encode()) < 0
    ]
    assert unknown == [], unknown


def test_the_daemonset_uses_the_profile():
    documents = [doc for doc in yaml.safe_load_all((ROOT / "deploy" / "daemonset.yaml").read_text()) if doc]
    daemonset = next(doc for doc in documents if doc["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": PROFILE.name}


# -- a real agent under the profile ----------------------------------------------------------


def _serve_under(profile: Path, log_dir: Path, *extra: str):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(RUNNER),
            str(profile),
            "--",
            *serve_command(port, log_dir, 0.5, *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.bpf
@pytest.mark.containers
def test_serve_under_the_profile_attaches_samples_serves_and_records(tmp_path):
    from pod_stats.store import Recording
    from pod_stats_dev.mininode import MiniNode

    store = tmp_path / "recording" / "pod-stats.db"  # its directory made by the agent
    with MiniNode(tmp_path / "log") as node:
        process, url = _serve_under(PROFILE, node.log_dir, "--record", str(store))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if urllib.request.urlopen(url + "/healthz", timeout=5).status == 200:
                        break
                except (OSError, urllib.error.URLError):
                    pass
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "no /healthz under the profile"
                time.sleep(0.2)
            with open(f"/proc/{process.pid}/status") as status:
                assert "Seccomp:\t2" in status.read()  # the filter is in force
            pod = node.add_pod("shop", "cart-0", layout="systemd-containerd")
            cart = pod.add_container("cart")
            assert cart.command("open /data/config.yaml 11") == "ok 11 0"
            deadline = time.monotonic() + 30
            while not any(
                line.startswith("pod_stats_file_opens_total{")
                and 'pod="cart-0"' in line
                and 'container="cart"' in line
                and not line.endswith(" 0.0")
                for line in _metrics(url).splitlines()
            ):
                assert time.monotonic() < deadline, "the pod never showed"
                time.sleep(0.3)
            for group in ("opens", "errno", "proc", "net", "oom"):
                assert f'pod_stats_probe_group_enabled{{group="{group}"}} 1.0' in _metrics(url)
            pod.stop()
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        stderr = process.stderr.read()
        assert code == 0, stderr
        assert "Traceback" not in stderr, stderr
    with Recording(str(store)) as recording:
        names = [{pod.name for pod in snapshot.pods} for snapshot in recording.snapshots()]
    assert len(names) >= 2 and any("cart-0" in seen for seen in names), names


@pytest.mark.bpf
def test_the_runner_enforces_a_profile_without_bpf(tmp_path):
    """The negative control: without bpf(2) the same run fails, so the test above tests the profile."""
    profile = json.loads(render_profile())
    profile["syscalls"][0]["names"].remove("bpf")
    narrower = tmp_path / "no-bpf.json"
    narrower.write_text(json.dumps(profile))
    process, _ = _serve_under(narrower, tmp_path)
    code = process.wait(timeout=60)
    assert code == 1, process.stderr.read()


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PROFILE.write_text(render_profile())
        print(f"wrote {PROFILE.relative_to(ROOT)}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write")
