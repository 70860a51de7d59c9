#!/usr/bin/env python3
"""The kernel matrix: pod-stats' smoke suite in qemu (TCG) on each kernel of matrix.tsv.

    python3 tests/kernels/run_matrix.py [NAME ...]     (as root; after `make test-wheel`)

Each kernel is a Debian kernel package (cloud, and RT), downloaded with a private apt configuration
under build/kernels/apt (the host's apt sources stay as they are) and unpacked, never
installed. The guest is build/chroot (the bookworm chroot with the wheel installed, made by
`make test-wheel`) packed as an initramfs, plus tests/kernels/init and smoke.py. The smoke
suite's `SMOKE <check> <status> <detail>` lines come back over the serial console. A row of
matrix.tsv may give its VM more than one CPU and extra kernel arguments (`preempt=full`): the
VMs share this machine's CPUs, each taking as many as it has vCPUs.
Writes build/kernels/results.json; exits non-zero if a check failed or a VM did not report.
Stdlib only: runs with the system python3.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "build" / "kernels"
CHROOT = ROOT / "build" / "chroot"
APT_DIR = OUT / "apt"
APT_PACKAGES = ("qemu-system-x86", "cpio")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Under TCG a boot takes seconds and the suite about a minute; a hung guest must not hang CI.
VM_TIMEOUT = int(os.environ.get("POD_STATS_VM_TIMEOUT", "420"))
VM_MEMORY = os.environ.get("POD_STATS_VM_MEMORY", "2G")
APPEND = "console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off"
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
    "./usr/lib/x86_64-linux-gnu/gconv",
    "./usr/lib/x86_64-linux-gnu/perl-base",
    "./usr/share/perl5",
    "./usr/share/common-licenses",
    "./var/lib/dpkg",
)


LOOP_MODULE = "drivers/block/loop.ko"  # of each kernel's package, kept for the guest
HELPERS = ("open_routes", "open_routes32")  # tests/helpers/open_routes.c, 64- and 32-bit
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
        kernels.append(
            {
                "name": name,
                "suite": suite,
                "package": package,
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


def apt_options():
    return [
        "-o",
        f"Dir::Etc::SourceList={APT_DIR}/sources.list",
        "-o",
        f"Dir::Etc::SourceParts={APT_DIR}/sources.list.d",
        "-o",
        f"Dir::State::Lists={APT_DIR}/lists",
        "-o",
        f"Dir::Cache={APT_DIR}/cache",
        # downloads land in root-owned build dirs; the _apt sandbox user could not write there
        "-o",
        "APT::Sandbox::User=root",
        "-o",
        "Debug::NoLocking=1",
        "-q",
    ]


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
        # Only the suites' own archives: every package in matrix.tsv is from a point release.
        (APT_DIR / "sources.list.d").mkdir(parents=True, exist_ok=True)
        (APT_DIR / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (APT_DIR / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (APT_DIR / "sources.list").write_text("")
        (APT_DIR / "sources.list.d" / "kernels.sources").write_text(
            f"Types: deb\nURIs: {MIRROR}\nSuites: {' '.join(sorted(suites))}\nComponents: main\nSigned-By: {KEYRING}\n"
        )
        say(f"{kernel['name']}: apt-get download {kernel['package']} ({kernel['suite']})")
        run(["apt-get", *apt_options(), "update"])
        try:
            run(["apt-get", *apt_options(), "download", kernel["package"]], cwd=debs)
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


def pack_initramfs(roots) -> Path:
    """build/kernels/initramfs.cpio: the chroot (cached until it changes) + init + smoke.py, its helper module,
    the static open-route helpers, each kernel's /boot/config-<release> (how the guest tells voluntary
    from none) and /boot/loop-<release>.ko (the block I/O check's disk)."""
    if not (CHROOT / ".ready").exists() or not (CHROOT / "opt" / "pod-stats" / "bin" / "pod-stats").exists():
        raise Failure("build/chroot with pod-stats in /opt/pod-stats is missing: run `make test-wheel` first")
    base = OUT / "chroot.cpio"
    if not base.exists() or base.stat().st_mtime < max(newest_mtime(CHROOT), Path(__file__).stat().st_mtime):
        say("packing build/chroot into an initramfs")
        listing = run(
            ["find", ".", "(", *sum((["-path", p, "-o"] for p in EXCLUDED), [])[:-1], ")", "-prune", "-o", "-print"],
            cwd=CHROOT,
        ).stdout.splitlines()
        listing += ["./tmp", "./proc", "./sys", "./dev", "./run"]  # empty mount points
        cpio(CHROOT, listing, base)
    overlay_dir = OUT / "overlay"
    shutil.rmtree(overlay_dir, ignore_errors=True)
    overlay_dir.mkdir(parents=True)
    shutil.copy(HERE / "init", overlay_dir / "init")
    for script in ("smoke.py", "cgroup_child.py"):
        shutil.copy(HERE / script, overlay_dir / script)
    # the open-route checks' static helpers (make build), beside smoke.py
    for helper in HELPERS:
        if not (ROOT / "build" / "helpers" / helper).exists():
            raise Failure(f"build/helpers/{helper} is missing: run `make build` first")
        shutil.copy(ROOT / "build" / "helpers" / helper, overlay_dir / helper)
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
    overlay = OUT / "overlay.cpio"
    cpio(
        overlay_dir,
        ["./init", "./smoke.py", "./cgroup_child.py", *(f"./{h}" for h in HELPERS), "./boot"]
        + [f"./boot/{config.name}" for config in configs],
        overlay,
    )
    # The kernel unpacks concatenated archives in order; later files win.
    initramfs = OUT / "initramfs.cpio"
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
    smp = kernel["cpus"]
    # several vCPUs: one host thread each (MTTCG), or they would take turns on one
    accel = "tcg,thread=multi" if smp > 1 else "tcg"
    command = [
        "qemu-system-x86_64",
        "-accel",
        accel,
        "-cpu",
        "max",
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
        " ".join(filter(None, (os.environ.get("POD_STATS_VM_APPEND", APPEND), kernel["cmdline"]))),
    ]
    start = time.monotonic()
    began = None
    lines = []
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(VM_TIMEOUT, process.kill)
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
    ended = f"timed out after {VM_TIMEOUT}s" if timed_out else f"qemu exited {process.returncode}"
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
    all of them at most), the many-CPU VMs first: they are the longest. Results in matrix order."""
    pending = sorted(kernels, key=lambda kernel: -kernel["cpus"])
    free = host_cpus
    running: dict[concurrent.futures.Future, dict] = {}
    results = {}
    with concurrent.futures.ThreadPoolExecutor(len(kernels)) as pool:
        while pending or running:
            startable = next((k for k in pending if min(k["cpus"], host_cpus) <= free), None)
            if startable is not None:
                pending.remove(startable)
                free -= min(startable["cpus"], host_cpus)
                running[pool.submit(boot, startable, roots[startable["name"]], initramfs)] = startable
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
    suites = {k["suite"] for k in read_matrix([])}
    timings = {}
    roots = {}
    for kernel in kernels:
        started = time.monotonic()
        roots[kernel["name"]] = fetch_kernel(kernel, suites)
        timings[kernel["name"]] = {"fetch_seconds": round(time.monotonic() - started, 1)}
    started = time.monotonic()
    initramfs = pack_initramfs(roots.values())
    pack_seconds = round(time.monotonic() - started, 1)
    say(f"initramfs {initramfs.stat().st_size >> 20} MiB (packed in {pack_seconds}s)")

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
        failed |= outcome["status"] not in ("ok", "unavailable")
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
            pack_seconds=pack_seconds,
            cpus=kernel["cpus"],
            cmdline=kernel["cmdline"],
            boot_to_smoke_seconds=round(began, 1) if began is not None else None,
            vm_seconds=round(seconds, 1),
        )
        for check, outcome in report["checks"].items():
            print(f"kernel {name}: {check} {outcome['status']} {outcome['detail']}".rstrip(), flush=True)
            failed |= outcome["status"] not in ("ok", "unavailable")
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
