"""Runs a command under a seccomp profile in the OCI/Docker JSON format that kubelet's
Localhost profiles use: `python seccomp_exec.py PROFILE.json -- COMMAND ARGS...`.

Loads the filter with libseccomp (ctypes on libseccomp.so.2, which runc itself depends on),
the way runc does for a container: names unknown to this libseccomp are skipped, the default
action takes defaultErrnoRet, no_new_privs is set. Then execs the command. Supports the
subset of the format the pod-stats profile uses: a default action, allow rules by name, no
argument filters.
"""

import ctypes
import ctypes.util
import json
import os
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_KILL_PROCESS = 0x80000000
ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E}


def action(name: str, errno_ret: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    if name in ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"):
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | (errno_ret & 0xFFFF)
    raise SystemExit(f"seccomp_exec: unsupported action {name}")


def main() -> None:
    profile_path, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    with open(profile_path) as handle:
        profile = json.load(handle)
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    default = action(profile["defaultAction"], profile.get("defaultErrnoRet", 1))
    ctx = lib.seccomp_init(default)
    assert ctx, "seccomp_init failed"
    for arch in profile.get("architectures", []):
        if ARCHES[arch] != ARCHES["SCMP_ARCH_X86_64"]:
            assert lib.seccomp_arch_add(ctx, ARCHES[arch]) == 0, arch
    for rule in profile["syscalls"]:
        assert not rule.get("args") and not rule.get("includes") and not rule.get("excludes"), rule
        rule_action = action(rule["action"], rule.get("errnoRet", 1))
        for name in rule["names"]:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # unknown to this libseccomp: skipped, as runc does
                continue
            result = lib.seccomp_rule_add(ctx, rule_action, number, 0)
            assert result == 0, f"seccomp_rule_add {name}: {os.strerror(-result)}"
    result = lib.seccomp_load(ctx)
    assert result == 0, f"seccomp_load: {os.strerror(-result)}"
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
