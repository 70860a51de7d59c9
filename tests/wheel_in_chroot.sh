#!/usr/bin/env bash
# The wheel on a bare node: a Debian chroot made by debootstrap from Debian's packages
# (python3 and python3-venv only: no clang, no bpftool, no libbpf, no kernel headers, no
# libelf), the wheel and its dependencies installed offline into a venv there with
# constraints.txt, then `pod-stats --version` and `pod-stats dump --json` as root against this
# machine's kernel. Prints one line per check; exits non-zero on failure.
#
#   tests/wheel_in_chroot.sh SUITE DIR WHEEL      (make test-wheel does it, for each suite)
#   e.g. tests/wheel_in_chroot.sh bullseye build/chroot-bullseye dist/pod_stats-*_x86_64.whl
#
# SUITE is Debian's (bullseye: Python 3.9, bookworm: 3.11). DIR is a copy of the pristine
# build/rootfs/SUITE-amd64 (packaging/rootfs.sh), kept while that base is the same; the wheel
# is installed in DIR/opt/pod-stats (build/chroot, the bookworm one, is `make kernels`' guest).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
    echo "usage: $0 SUITE DIR WHEEL" >&2
    exit 2
fi
suite=$1 root=$(realpath -m "$2") wheel=$(realpath "$3")
base=build/rootfs/$suite-amd64
venv_python=.venv/bin/python

say() { printf 'wheel-in-chroot %s: %s\n' "$suite" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

# The agent ships; its test and demo tooling (devtools/pod_stats_dev: the miniature node, the
# workload, the demo) does not.
tooling=$("$venv_python" - "$wheel" <<'EOF'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(name for name in names if re.search(r"mininode|workload|demo|pod_stats_dev", name, re.IGNORECASE)))
EOF
)
[ -z "$tooling" ] || fail "test or demo tooling in the wheel: $tooling"
say "ok: no test or demo tooling in $(basename "$wheel")"

packaging/rootfs.sh amd64 "$suite" "$base" python3,python3-venv
if [ ! -f "$root/.ready" ] || ! cmp -s "$root/.ready" "$base/.rootfs"; then
    say "$root: a copy of $base"
    rm -rf "$root" && cp -a "$base" "$root"
    cp "$base/.rootfs" "$root/.ready"
fi

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R "${mounted[$i]}" 2>/dev/null || umount -lR "${mounted[$i]}"; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --rbind /sys "$root/sys" && mounted+=("$root/sys")
in_chroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }

for tool in clang clang-19 bpftool gcc cc; do
    in_chroot sh -c "command -v $tool" >/dev/null 2>&1 && fail "$tool is in the chroot"
done
[ -e "$root/usr/include/bpf/libbpf.h" ] && fail "libbpf headers are in the chroot"
# the wheel carries its libelf (auditwheel vendors it): the node need not have one
in_chroot sh -c 'ldconfig -p | grep -q "libelf\.so"' && fail "a libelf is installed in the chroot"
python_version=$(in_chroot python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
say "ok: no compiler, bpftool, libbpf or libelf in the chroot (Python $python_version)"

# The dependencies, as wheels for the chroot's Python, fetched here: the chroot stays offline.
# Debian's own pip (20.3 on Debian 11), the constraints' markers evaluated by the target Python
packaging/install_wheel.sh "$root" amd64 "$python_version" "$wheel[web]" || fail "pip install of the wheel"
say "ok: installed $(basename "$wheel")[web] offline"

extension=$(in_chroot /opt/pod-stats/bin/python -c 'import pod_stats._pod_stats_ffi as m; print(m.__file__)')
needed=$(in_chroot /opt/pod-stats/bin/python - "$extension" <<'EOF'
import subprocess, sys
out = subprocess.run(["ldd", sys.argv[1]], capture_output=True, text=True).stdout
print(" ".join(sorted(f"{line.split()[0]}={line.split()[2]}" for line in out.splitlines() if "=>" in line)))
EOF
)
for library in $needed; do
    case "$library" in
        libc.so.*|libz.so.*|libpthread.so.*) ;;
        libelf-*=*/pod_stats.libs/*) ;;
        *) fail "the extension needs $library" ;;
    esac
done
say "ok: the extension needs only: $needed"

# every module imports on this Python (annotations, dataclasses, syntax of the oldest supported)
in_chroot /opt/pod-stats/bin/python - <<'EOF' || fail "a module does not import on Python $python_version"
import importlib, pkgutil
import pod_stats
for module in pkgutil.iter_modules(pod_stats.__path__):
    if module.name != "_ffi_build":  # the build script: needs cffi's compiler side only at build time
        importlib.import_module("pod_stats." + module.name)
EOF
say "ok: every module of pod_stats imports"

in_chroot /opt/pod-stats/bin/pod-stats --version
for command in dump run files procs serve; do
    in_chroot /opt/pod-stats/bin/pod-stats "$command" --help >/dev/null || fail "pod-stats $command --help"
done
in_chroot /opt/pod-stats/bin/pod-stats dump --json --duration 0.5 --all > "build/chroot-dump-$suite.json" \
    || fail "pod-stats dump --json in the chroot"
"$venv_python" - "build/chroot-dump-$suite.json" <<'EOF' || fail "the document"
import json, sys
document = json.load(open(sys.argv[1]))
assert document["schema"] == "pod-stats/v1", document.get("schema")
assert document["agent"]["probes"]["opens"] == "on"
assert isinstance(document["pods"], list) and document.get("cgroups"), "nothing counted"
EOF
say "ok: pod-stats dump --json in the chroot gave a valid pod-stats/v1 document"

# The exporter with basic auth (the [web] extra: bcrypt, pyyaml), scraped from outside the chroot.
hash=$(in_chroot /opt/pod-stats/bin/python -c 'import bcrypt; print(bcrypt.hashpw(b"wheel-test", bcrypt.gensalt(4)).decode())')
printf 'basic_auth_users:\n  probe: %s\n' "$hash" > "$root/tmp/web.yml"
port=$("$venv_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# (exec: $! is then pod-stats itself, which SIGINT stops)
(exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    /opt/pod-stats/bin/pod-stats serve --listen-address "127.0.0.1:$port" --interval 0.5 \
    --web-config-file /tmp/web.yml) > "build/chroot-serve-$suite.log" 2>&1 &
serve=$!
scraped=$("$venv_python" - "http://127.0.0.1:$port" <<'EOF'
import base64, sys, time, urllib.error, urllib.request

def get(path, auth=None):
    request = urllib.request.Request(sys.argv[1] + path)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""

for _ in range(100):
    try:
        get("/healthz")
        break
    except OSError:
        time.sleep(0.1)
status, _ = get("/metrics")
assert status == 401, f"/metrics without the password answered {status}"
status, text = get("/metrics", "probe:wheel-test")
samples = [line for line in text.splitlines() if line.startswith("pod_stats_")]
assert status == 200 and samples, f"/metrics with the password answered {status}, no pod_stats_ sample"
print(len(samples))
EOF
) || { kill -INT "$serve"; cat "build/chroot-serve-$suite.log"; fail "pod-stats serve with basic auth"; }
kill -INT "$serve" && wait "$serve" || true
say "ok: pod-stats serve with basic auth: 401 without the password, $scraped pod_stats_ samples with it"
