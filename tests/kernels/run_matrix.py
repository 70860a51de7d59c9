#!/usr/bin/env python3
"""The kernel matrix: pod-stats' smoke suite in qemu (TCG) on each kernel of matrix.tsv.

    python3 tests/kernels/run_matrix.py [NAME ...]     (as root; after `make test-wheel`, and for
                                                        arm64 `make wheel` and build/helpers/arm64)

Each kernel is a Debian kernel package (cloud, and RT; amd64 and arm64, the architecture is the
package name's last word), downloaded with a private apt configuration under build/kernels/apt
(the host's apt sources stay as they are) and unpacked, never installed. The guest is a bookworm
root file system of the kernel's architecture with the wheel installed offline, packed as an
initramfs, plus tests/kernels/init, smoke.py and the static open-route helpers: for amd64
build/chroot (made by `make test-wheel`), for arm64 build/kernels/guest-arm64 (made here: the
pristine build/rootfs/bookworm-arm64 of packaging/rootfs.sh, copied, with dist/'s aarch64 wheel
installed by pip under qemu-user-static from a wheelhouse of packaging/wheelhouse.sh). The
smoke suite's `SMOKE <check> <status> <detail>` lines come back over the serial console. A row of
matrix.tsv may give its VM more than one CPU and extra kernel arguments (`preempt=full`): the
VMs share this machine's CPUs, each taking as many as it has vCPUs.
Writes build/kernels/results.json; exits non-zero if a check failed or a VM did not report.
Stdlib only: runs with the system python3.
"""

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "build" / "kernels"
CHROOT = ROOT / "build" / "chroot"
APT_DIR = OUT / "apt"  # one configuration per architecture below it
APT_PACKAGES = ("qemu-system-x86", "qemu-system-arm", "cpio")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Under TCG an x86 boot takes seconds and the suite a few minutes; a hung guest must not hang CI.
VM_TIMEOUT = int(os.environ.get("POD_STATS_VM_TIMEOUT", "420"))
VM_MEMORY = os.environ.get("POD_STATS_VM_MEMORY", "2G")
APPEND = "rdinit=/init panic=-1 quiet mitigations=off"  # and the architecture's console=


class Arch(NamedTuple):
    """How a kernel of one Debian architecture boots, and the guest it boots."""

    qemu: tuple[str, ...]  # the emulator, machine and CPU
    console: str  # the serial console's device
    guest: Path  # the root file system with pod-stats in /opt/pod-stats
    helpers: dict[str, Path]  # the static open-route helpers, by their name in the guest
    slowdown: int  # VM_TIMEOUT times this: arm64 boots slower under TCG (21 s to the suite, x86 8-16 s)
    libraries: str  # the guest's library directory (its gconv and perl-base are not needed)


ARCHES = {
    "amd64": Arch(
        ("qemu-system-x86_64", "-cpu", "max"),
        "ttyS0",
        CHROOT,
        {name: ROOT / "build" / "helpers" / name for name in ("open_routes", "open_routes32")},
        1,
        "x86_64-linux-gnu",
    ),
    # -cpu max emulates pointer authentication's QARMA (slow under TCG); impdef is a cheaper
    # algorithm the guest cannot tell apart. No open_routes32: ia32 compat syscalls are x86-64's.
    "arm64": Arch(
        ("qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on"),
        "ttyAMA0",
        OUT / "guest-arm64",
        {"open_routes": ROOT / "build" / "helpers" / "arm64" / "open_routes"},
        2,
        "aarch64-linux-gnu",
    ),
}
# The arm64 guest: Debian's pristine root file system (packaging/rootfs.sh), copied, with the
# wheel and its dependencies' wheels for its Python.
GUEST_SUITE, GUEST_PYTHON = "bookworm", "3.11"
# Not needed in the guest: they only make the initramfs bigger and slower to unpack.
EXCLUDED = (
    "./usr/share/doc",
    "./usr/share/man",
    "./usr/share/locale",
    "./usr/share/info",
    "./usr/share/i18n",
    "./usr/share/zoneinfo",
    "./var/cache",
    "./var/lib/apt",
    "./var/log",
    "./tmp",
    "./proc",
    "./sys",
    "./dev",
    "./run",
    "./opt/pod-stats/lib/python3.11/site-packages/pip",
    "./opt/pod-stats/lib/python3.11/site-packages/setuptools",
    "./opt/pod-stats/lib/python3.11/site-packages/pkg_resources",
    "./opt/pod-stats/lib/python3.11/site-packages/_distutils_hack",
    "./opt/pod-stats/lib/python3.11/site-packages/distutils-precedence.pth",
    "./usr/share/python-wheels",
    "./usr/share/perl5",
    "./usr/share/common-licenses",
    "./var/lib/dpkg",
    "./.rootfs",
    "./.guest",
)


LOOP_MODULE = "drivers/block/loop.ko"  # of each kernel's package, kept for the guest
# a check's statuses that are no failure: the kernel or the architecture lacks what it checks
PASSING = ("ok", "unavailable", "n/a")
SECCOMP_PARTS = (ROOT / "deploy" / "pod-stats.seccomp.json", ROOT / "tests" / "helpers" / "seccomp_exec.py")
HOST = "host"  # results.json's entry for this machine's kernel (smoke.py --host)


class Failure(Exception):
    """One line for the user; the run stops."""


def say(message: str) -> None:
    print(f"kernels: {message}", flush=True)


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise Failure(f"{' '.join(map(str, command[:3]))} … failed: {detail[-1] if detail else result.returncode}")
    return result


def read_matrix(names):
    """matrix.tsv's rows: name, suite, package, then optionally cpus and extra kernel arguments
    (tab-separated; `-` or nothing for the defaults: POD_STATS_VM_SMP or 1 CPU, no arguments)."""
    kernels = []
    for number, line in enumerate((HERE / "matrix.tsv").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")] + ["-", "-"]
        name, suite, package, cpus, cmdline = fields[:5]
        if not name or not suite or not package or not (cpus == "-" or cpus.isdigit() and int(cpus) > 0):
            raise Failure(
                f"matrix.tsv line {number}: expected name, suite, package[, cpus[, kernel arguments]] "
                f"separated by tabs: {line!r}"
            )
        if name in {k["name"] for k in kernels}:
            raise Failure(f"matrix.tsv line {number}: the name {name} is taken (one name per row)")
        arch = package.rsplit("-", 1)[-1]
        if arch not in ARCHES:
            raise Failure(
                f"matrix.tsv line {number}: {package} does not end in an architecture the matrix boots "
                f"({', '.join(ARCHES)})"
            )
        kernels.append(
            {
                "name": name,
                "suite": suite,
                "package": package,
                "arch": arch,
                "cpus": int(os.environ.get("POD_STATS_VM_SMP", "1")) if cpus == "-" else int(cpus),
                "cmdline": "" if cmdline == "-" else cmdline,
            }
        )
    unknown = set(names) - {k["name"] for k in kernels}
    if unknown:
        raise Failure(f"not in matrix.tsv: {', '.join(sorted(unknown))}")
    return [k for k in kernels if not names or k["name"] in names]


def install_host_packages() -> None:
    if subprocess.run(["dpkg", "-s", *APT_PACKAGES], capture_output=True).returncode == 0:
        return
    say(f"apt-get install {' '.join(APT_PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES], env=env)


def apt_options(arch: str):
    apt_dir = APT_DIR / arch
    return [
        "-o",
        f"Dir::Etc::SourceList={apt_dir}/sources.list",
        "-o",
        f"Dir::Etc::SourceParts={apt_dir}/sources.list.d",
        "-o",
        f"Dir::State::Lists={apt_dir}/lists",
        "-o",
        f"Dir::Cache={apt_dir}/cache",
        "-o",
        f"APT::Architectures::={arch}",
        # downloads land in root-owned build dirs; the _apt sandbox user could not write there
        "-o",
        "APT::Sandbox::User=root",
        "-o",
        "Debug::NoLocking=1",
        "-q",
    ]


def apt_download(arch: str, suites, packages, target: Path) -> None:
    """Debian packages of `arch` from the suites' own archives into `target` (every package in
    matrix.tsv is from a point release)."""
    apt_dir = APT_DIR / arch
    (apt_dir / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text("")
    (apt_dir / "sources.list.d" / "kernels.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}\nSuites: {' '.join(sorted(suites))}\nComponents: main\nSigned-By: {KEYRING}\n"
    )
    run(["apt-get", *apt_options(arch), "update"])
    target.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *apt_options(arch), "download", *(f"{package}:{arch}" for package in packages)], cwd=target)


def fetch_kernel(kernel, suites) -> Path:
    """build/kernels/<name>/root: the kernel package unpacked (cached by package name)."""
    target = OUT / kernel["name"]
    stamp = target / ".package"
    if stamp.exists() and stamp.read_text() == kernel["package"] and list((target / "root" / "boot").glob("loop-*")):
        return target / "root"
    debs = OUT / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cached = sorted(debs.glob(f"{kernel['package']}_*.deb"))
    if not cached:
        say(f"{kernel['name']}: apt-get download {kernel['package']} ({kernel['suite']})")
        try:
            apt_download(kernel["arch"], suites, [kernel["package"]], debs)
        except Failure as failure:
            raise Failure(
                f"{kernel['package']} is not in {kernel['suite']} any more? update matrix.tsv ({failure})"
            ) from None
        cached = sorted(debs.glob(f"{kernel['package']}_*.deb"))
    shutil.rmtree(target, ignore_errors=True)
    (target / "root").mkdir(parents=True)
    run(["dpkg-deb", "-x", str(cached[-1]), str(target / "root")])
    configs = list((target / "root" / "boot").glob("config-*"))
    if not configs or "CONFIG_DEBUG_INFO_BTF=y" not in configs[0].read_text().splitlines():
        raise Failure(f"{kernel['package']} is not built with CONFIG_DEBUG_INFO_BTF=y: CO-RE cannot run on it")
    # modules: the guest runs on what is built in (initramfs, no disks), and on the loop driver
    # beside the kernel's config (the smoke suite's block I/O check makes its disk of it)
    for module in (target / "root" / "lib" / "modules").glob(f"*/kernel/{LOOP_MODULE}"):
        shutil.copy(module, target / "root" / "boot" / f"loop-{module.parts[-5]}.ko")
    for unused in ("lib", "usr"):
        shutil.rmtree(target / "root" / unused, ignore_errors=True)
    stamp.write_text(kernel["package"])
    return target / "root"


def newest_mtime(top: Path) -> float:
    newest = 0.0
    for directory, subdirs, files in os.walk(top):
        if directory == str(top):  # mount points: tests/wheel_in_chroot.sh may have /proc, /sys there now
            subdirs[:] = [d for d in subdirs if d not in ("proc", "sys", "dev", "run", "tmp")]
        for name in subdirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
            except OSError:
                pass
    return newest


def cpio(source: Path, paths, target: Path) -> None:
    """An uncompressed newc archive: the kernel unpacks it faster than gzip under emulation."""
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "--owner", "0:0"],
            input="\n".join(paths) + "\n",
            text=True,
            cwd=source,
            stdout=out,
            check=True,
        )
    partial.rename(target)


def wheel_for(machine: str) -> Path:
    """dist/'s wheel for this machine (`make wheel`): exactly one."""
    wheels = sorted((ROOT / "dist").glob(f"pod_stats-*_{machine}.whl"))
    if len(wheels) != 1:
        found = ", ".join(w.name for w in wheels) or "none"
        raise Failure(f"expected one dist/pod_stats-*_{machine}.whl (found {found}): run `make wheel`")
    return wheels[0]


def make_guest(arch: str) -> None:
    """build/kernels/guest-<arch>: Debian's pristine root file system of that architecture
    (packaging/rootfs.sh, cached in build/rootfs), copied, with dist/'s wheel installed offline
    into /opt/pod-stats by the guest's own pip (under qemu-user-static) as packaging/install_wheel.sh
    installs it. Remade when the wheel or the constraints change."""
    guest = ARCHES[arch].guest
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    wheel = wheel_for(machine)
    base = ROOT / "build" / "rootfs" / f"{GUEST_SUITE}-{arch}"
    started = time.monotonic()
    # the shared convention: a pristine base with exactly python3 and python3-venv (cached)
    run([str(ROOT / "packaging" / "rootfs.sh"), arch, GUEST_SUITE, str(base), "python3,python3-venv"])
    digest = hashlib.sha256(wheel.read_bytes() + (ROOT / "constraints.txt").read_bytes()).hexdigest()[:16]
    want = f"{wheel.name} {digest} {(base / '.rootfs').read_text().strip()}"
    if (guest / ".guest").exists() and (guest / ".guest").read_text() == want:
        return
    say(f"{arch} guest: {GUEST_SUITE} root file system with {wheel.name}")
    shutil.rmtree(guest, ignore_errors=True)
    run(["cp", "-a", str(base), str(guest)])
    run([str(ROOT / "packaging" / "install_wheel.sh"), str(guest), arch, GUEST_PYTHON, str(wheel)])

    def in_guest(*command):
        return run(
            ["chroot", str(guest), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", *command]
        )

    missing = missing_libraries(guest, in_guest)
    if missing:  # the wheel vendors libelf and zlib (auditwheel): a bare Debian has all the rest
        raise Failure(f"pod-stats' extension needs {', '.join(missing)}, which the {arch} guest lacks")
    (guest / ".guest").write_text(want)
    say(f"{arch} guest ready in {time.monotonic() - started:.0f}s")


def missing_libraries(guest: Path, in_guest) -> list[str]:
    """The libraries pod-stats' extension needs that the guest does not have (its ldd, emulated)."""
    extension = next((guest / "opt" / "pod-stats").glob("lib/python3*/site-packages/pod_stats/_pod_stats_ffi*.so"))
    listing = in_guest("ldd", "/" + str(extension.relative_to(guest))).stdout
    return sorted(line.split()[0] for line in listing.splitlines() if "not found" in line)


def pack_initramfs(arch: str, roots) -> Path:
    """build/kernels/initramfs-<arch>.cpio: the architecture's guest (cached until it changes) + init +
    smoke.py, its helper module, the static open-route helpers, each kernel's /boot/config-<release>
    (how the guest tells voluntary from none) and /boot/loop-<release>.ko (the block I/O check's disk)."""
    spec = ARCHES[arch]
    guest = spec.guest
    if not (guest / "opt" / "pod-stats" / "bin" / "pod-stats").exists():
        raise Failure(f"{guest.relative_to(ROOT)} has no pod-stats in /opt/pod-stats: run `make test-wheel` first")
    base = OUT / f"guest-{arch}.cpio"
    if not base.exists() or base.stat().st_mtime < max(newest_mtime(guest), Path(__file__).stat().st_mtime):
        say(f"packing {guest.relative_to(ROOT)} into an initramfs")
        excluded = [*EXCLUDED, f"./usr/lib/{spec.libraries}/gconv", f"./usr/lib/{spec.libraries}/perl-base"]
        listing = run(
            ["find", ".", "(", *sum((["-path", p, "-o"] for p in excluded), [])[:-1], ")", "-prune", "-o", "-print"],
            cwd=guest,
        ).stdout.splitlines()
        listing += ["./tmp", "./proc", "./sys", "./dev", "./run"]  # empty mount points
        cpio(guest, listing, base)
    overlay_dir = OUT / f"overlay-{arch}"
    shutil.rmtree(overlay_dir, ignore_errors=True)
    overlay_dir.mkdir(parents=True)
    shutil.copy(HERE / "init", overlay_dir / "init")
    for script in ("smoke.py", "cgroup_child.py"):
        shutil.copy(HERE / script, overlay_dir / script)
    # the seccomp_serve check: the shipped profile, loaded as runc loads it
    for part in SECCOMP_PARTS:
        shutil.copy(part, overlay_dir / part.name)
    # the open-route checks' static helpers (make build; build/helpers/arm64 for arm64), beside smoke.py
    for helper, built in spec.helpers.items():
        if not built.exists():
            raise Failure(
                f"{built.relative_to(ROOT)} is missing: run `make build` (arm64: `make {built.relative_to(ROOT)}`)"
            )
        shutil.copy(built, overlay_dir / helper)
    os.chmod(overlay_dir / "init", 0o755)
    (overlay_dir / "boot").mkdir()
    configs = sorted(
        {
            config.name: config
            for root in roots
            for pattern in ("config-*", "loop-*.ko")
            for config in (root / "boot").glob(pattern)
        }.values()
    )
    for config in configs:
        shutil.copy(config, overlay_dir / "boot" / config.name)
    overlay = OUT / f"overlay-{arch}.cpio"
    cpio(
        overlay_dir,
        ["./init", "./smoke.py", "./cgroup_child.py", *(f"./{p.name}" for p in SECCOMP_PARTS)]
        + [*(f"./{h}" for h in spec.helpers), "./boot"]
        + [f"./boot/{config.name}" for config in configs],
        overlay,
    )
    # The kernel unpacks concatenated archives in order; later files win.
    initramfs = OUT / f"initramfs-{arch}.cpio"
    with open(initramfs, "wb") as out:
        for part in (base, overlay):
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
    return initramfs


def boot(kernel, root: Path, initramfs: Path):
    """Runs the VM; returns (console lines, seconds to SMOKE-BEGIN, seconds in all, how it ended)."""
    vmlinuz = next((root / "boot").glob("vmlinuz-*"), None)
    if vmlinuz is None:
        raise Failure(f"{kernel['package']} has no /boot/vmlinuz-*")
    log_path = OUT / kernel["name"] / "console.log"
    spec = ARCHES[kernel["arch"]]
    timeout = VM_TIMEOUT * spec.slowdown
    smp = kernel["cpus"]
    # several vCPUs: one host thread each (MTTCG), or they would take turns on one
    accel = "tcg,thread=multi" if smp > 1 else "tcg"
    append = os.environ.get("POD_STATS_VM_APPEND", f"console={spec.console} {APPEND}")
    command = [
        *spec.qemu,
        "-accel",
        accel,
        "-m",
        VM_MEMORY,
        "-smp",
        str(smp),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-nic",
        "none",
        "-no-reboot",
        "-kernel",
        str(vmlinuz),
        "-initrd",
        str(initramfs),
        # panic=-1 + -no-reboot: a panic ends qemu at once instead of waiting for the timeout
        "-append",
        " ".join(filter(None, (append, kernel["cmdline"]))),
    ]
    start = time.monotonic()
    began = None
    lines = []
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    with open(log_path, "wb") as log:
        assert process.stdout is not None  # stdout=PIPE
        for raw in process.stdout:
            log.write(f"{time.monotonic() - start:7.2f} ".encode() + raw)  # host-side time: where a boot spends it
            line = raw.decode(errors="replace").replace("\r", "").rstrip("\n")
            if began is None and "SMOKE-BEGIN" in line:
                began = time.monotonic() - start
            lines.append(line)
    process.wait()
    timed_out = not timer.is_alive() and process.returncode < 0
    timer.cancel()
    ended = f"timed out after {timeout}s" if timed_out else f"qemu exited {process.returncode}"
    return lines, began, time.monotonic() - start, ended


def parse(lines):
    """The suite's lines, wherever they start (kernel messages may share a console line)."""
    result = {"uname": None, "checks": {}, "features": {}, "ended": False}
    for line in lines:
        for tag in ("SMOKE-BEGIN", "SMOKE-END", "SMOKE ", "FEATURE "):
            at = line.find(tag)
            if at < 0:
                continue
            words = line[at:].split(" ", 3)
            if tag == "SMOKE-BEGIN":
                result["uname"] = words[1] if len(words) > 1 else None
            elif tag == "SMOKE-END":
                result["ended"] = True
            elif len(words) >= 3:
                section = result["checks"] if tag == "SMOKE " else result["features"]
                section[words[1]] = {"status": words[2], "detail": words[3] if len(words) > 3 else ""}
            break
    return result


def boot_all(kernels, roots, initramfs, host_cpus: int):
    """Boots every kernel, as many at once as this machine's CPUs allow (a VM takes one per vCPU,
    all of them at most), the many-CPU VMs first, then the slowest architecture's: they are the
    longest. `initramfs` by architecture. Results in matrix order."""
    pending = sorted(kernels, key=lambda kernel: (-kernel["cpus"], -ARCHES[kernel["arch"]].slowdown))
    free = host_cpus
    running: dict[concurrent.futures.Future, dict] = {}
    results = {}
    with concurrent.futures.ThreadPoolExecutor(len(kernels)) as pool:
        while pending or running:
            startable = next((k for k in pending if min(k["cpus"], host_cpus) <= free), None)
            if startable is not None:
                pending.remove(startable)
                free -= min(startable["cpus"], host_cpus)
                future = pool.submit(boot, startable, roots[startable["name"]], initramfs[startable["arch"]])
                running[future] = startable
                continue
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                kernel = running.pop(future)
                free += min(kernel["cpus"], host_cpus)
                results[kernel["name"]] = future.result()
    return [results[kernel["name"]] for kernel in kernels]


def panic_line(lines):
    line = next((line for line in lines if "Kernel panic" in line or "BUG:" in line), None)
    return line and line.split("] ", 1)[-1].strip()  # without the printk time


def run_on_host():
    """The smoke suite's host-safe checks on this machine's own kernel (--host), so that the
    compatibility table has its column too; the full test suite covers the rest here."""
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        raise Failure("no .venv: run `make build` first")
    started = time.monotonic()
    result = subprocess.run(
        [str(python), str(HERE / "smoke.py"), "--host"], capture_output=True, text=True, timeout=VM_TIMEOUT
    )
    return result.stdout.splitlines() + result.stderr.splitlines()[-5:], time.monotonic() - started


def main(argv) -> int:
    if os.geteuid() != 0:
        raise Failure("run as root (apt-get, and BPF in the guest as root)")
    kernels = read_matrix(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    install_host_packages()
    suites: dict[str, set[str]] = {}  # by architecture: the archives its apt configuration reads
    for kernel in read_matrix([]):
        suites.setdefault(kernel["arch"], set()).add(kernel["suite"])
    timings = {}
    roots = {}
    for kernel in kernels:
        started = time.monotonic()
        roots[kernel["name"]] = fetch_kernel(kernel, suites[kernel["arch"]])
        timings[kernel["name"]] = {"fetch_seconds": round(time.monotonic() - started, 1)}
    initramfs, pack_seconds = {}, {}
    for arch in sorted({kernel["arch"] for kernel in kernels}):
        started = time.monotonic()
        if arch != "amd64":  # amd64's guest is `make test-wheel`'s chroot
            make_guest(arch)
        initramfs[arch] = pack_initramfs(arch, [roots[k["name"]] for k in kernels if k["arch"] == arch])
        pack_seconds[arch] = round(time.monotonic() - started, 1)
        say(f"{arch} initramfs {initramfs[arch].stat().st_size >> 20} MiB (made in {pack_seconds[arch]}s)")

    # A run of some kernels keeps the others' last results; kernels gone from the matrix go.
    results_path = OUT / "results.json"
    try:
        results = json.loads(results_path.read_text())
    except (OSError, ValueError):
        results = {}
    results = {
        name: result for name, result in results.items() if name in {k["name"] for k in read_matrix([])} | {HOST}
    }
    # One emulated CPU per VM where one is enough (TCG gains little from a second vCPU, the
    # matrix gains a whole VM); the preemption rows need two, for tasks on every CPU at once.
    host_cpus = max(1, int(os.environ.get("POD_STATS_VM_JOBS", os.cpu_count() or 1)))
    say(f"booting {len(kernels)} kernel(s) on {host_cpus} host CPU(s)")
    matrix_started = time.monotonic()
    boots = boot_all(kernels, roots, initramfs, host_cpus)
    matrix_seconds = round(time.monotonic() - matrix_started, 1)
    failed = False
    lines, host_seconds = run_on_host()
    report = parse(lines)
    for check, outcome in report["checks"].items():
        print(f"kernel host: {check} {outcome['status']} {outcome['detail']}".rstrip(), flush=True)
        failed |= outcome["status"] not in PASSING
    if not report["ended"]:
        print(f"kernel host: the smoke suite did not finish: {' | '.join(lines[-3:])}", flush=True)
        failed = True
    results[HOST] = {
        "package": None,
        "uname": report["uname"],
        "checks": report["checks"],
        "features": report["features"],
        "complete": report["ended"],
        "timings": {"seconds": round(host_seconds, 1)},
    }
    for kernel, (lines, began, seconds, ended) in zip(kernels, boots):
        name = kernel["name"]
        report = parse(lines)
        timing = dict(
            timings[name],
            pack_seconds=pack_seconds[kernel["arch"]],
            cpus=kernel["cpus"],
            cmdline=kernel["cmdline"],
            boot_to_smoke_seconds=round(began, 1) if began is not None else None,
            vm_seconds=round(seconds, 1),
        )
        for check, outcome in report["checks"].items():
            print(f"kernel {name}: {check} {outcome['status']} {outcome['detail']}".rstrip(), flush=True)
            failed |= outcome["status"] not in PASSING
        if not report["ended"]:
            why = panic_line(lines) or ended
            print(
                f"kernel {name}: VM did not report (SMOKE-END missing: {why}; "
                f"see {(OUT / name / 'console.log').relative_to(ROOT)})",
                flush=True,
            )
            failed = True
        elif not report["checks"]:
            print(f"kernel {name}: the smoke suite reported no checks", flush=True)
            failed = True
        booted = "never reached SMOKE-BEGIN" if began is None else f"boot to SMOKE-BEGIN {round(began, 1)}s"
        say(
            f"{name}: {report['uname'] or kernel['package']}: {booted}, VM {timing['vm_seconds']}s "
            f"({kernel['cpus']} CPU{'s' if kernel['cpus'] > 1 else ''}{', ' + kernel['cmdline'] if kernel['cmdline'] else ''}), "
            f"fetch {timing['fetch_seconds']}s"
        )
        results[name] = {
            "package": kernel["package"],
            "arch": kernel["arch"],
            "uname": report["uname"],
            "checks": report["checks"],
            "features": report["features"],
            "complete": report["ended"],
            "timings": timing,
        }
    say(f"the VMs took {matrix_seconds}s, this machine's checks {round(host_seconds, 1)}s")
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    say(f"results in {results_path.relative_to(ROOT)}: {'FAILED' if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Failure as failure:
        say(f"FAILED: {failure}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
