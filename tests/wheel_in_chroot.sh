#!/usr/bin/env bash
# The wheel on a bare node: a Debian bookworm chroot made by debootstrap from Debian's
# packages (python3, libelf1; no clang, no bpftool, no libbpf, no kernel headers), the wheel
# and its dependencies installed offline into a venv there, then `pod-stats dump --json` as
# root against this machine's kernel. Prints one line per check; exits non-zero on failure.
#
#   tests/wheel_in_chroot.sh dist/pod_stats-*.whl      (make test-wheel does it)
#
# The chroot is cached in build/chroot (remove it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$(realpath "$1")
root=$(realpath -m build/chroot)
venv_python=.venv/bin/python

say() { printf 'wheel-in-chroot: %s\n' "$*"; }
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

if [ ! -f "$root/.ready" ]; then
    rm -rf "$root"
    say "debootstrap bookworm (minbase + python3, python3-venv, libelf1) into $root"
    debootstrap --variant=minbase --include=python3,python3-venv,libelf1 bookworm "$root" \
        http://deb.debian.org/debian > build/debootstrap.log 2>&1 || { tail -20 build/debootstrap.log; fail "debootstrap"; }
    touch "$root/.ready"
fi

# The dependencies, as wheels for the chroot's Python, fetched here: the chroot stays offline.
wheelhouse="$root/tmp/wheelhouse"
rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
cp "$wheel" "$wheelhouse/"
"$venv_python" -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
    -d "$wheelhouse" "$wheel"

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R "${mounted[$i]}" 2>/dev/null || umount -lR "${mounted[$i]}"; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --rbind /sys "$root/sys" && mounted+=("$root/sys")
in_chroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

for tool in clang clang-19 bpftool gcc cc; do
    in_chroot sh -c "command -v $tool" >/dev/null 2>&1 && fail "$tool is in the chroot"
done
[ -e "$root/usr/include/bpf/libbpf.h" ] && fail "libbpf headers are in the chroot"
say "ok: no compiler, bpftool or libbpf in the chroot ($(in_chroot python3 --version))"

rm -rf "$root/opt/pod-stats"
in_chroot python3 -m venv /opt/pod-stats
in_chroot /opt/pod-stats/bin/pip install -q --no-index --find-links /tmp/wheelhouse \
    "/tmp/wheelhouse/$(basename "$wheel")" || fail "pip install of the wheel"
say "ok: installed $(basename "$wheel") offline"

extension=$(in_chroot /opt/pod-stats/bin/python -c 'import pod_stats._pod_stats_ffi as m; print(m.__file__)')
needed=$(in_chroot /opt/pod-stats/bin/python - "$extension" <<'EOF'
import subprocess, sys
out = subprocess.run(["ldd", sys.argv[1]], capture_output=True, text=True).stdout
print(" ".join(sorted(line.split()[0] for line in out.splitlines() if "=>" in line)))
EOF
)
for library in $needed; do
    case "$library" in libc.so.*|libelf.so.*|libz.so.*) ;; *) fail "the extension needs $library" ;; esac
done
say "ok: the extension needs only: $needed"

in_chroot /opt/pod-stats/bin/pod-stats --version
in_chroot /opt/pod-stats/bin/pod-stats dump --json --duration 0.5 --all > build/chroot-dump.json \
    || fail "pod-stats dump --json in the chroot"
"$venv_python" - build/chroot-dump.json <<'EOF' || fail "the document"
import json, sys
document = json.load(open(sys.argv[1]))
assert document["schema"] == "pod-stats/v1", document.get("schema")
assert document["agent"]["probes"]["opens"] == "on"
assert isinstance(document["pods"], list) and document.get("cgroups"), "nothing counted"
EOF
say "ok: pod-stats dump --json in the chroot gave a valid pod-stats/v1 document"
