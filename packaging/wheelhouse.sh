#!/usr/bin/env bash
# A wheelhouse: the wheels that install REQUIREMENTS on CPython PYTHON_VERSION for Debian's
# ARCH, downloaded on this machine (pinned by constraints.txt, binary wheels only), so that a
# chroot, VM guest or image installs them offline:
#   pip install --no-index --find-links DIR -c constraints.txt REQUIREMENT...
#
#   packaging/wheelhouse.sh PYTHON_VERSION ARCH DIR REQUIREMENT...
#   e.g. packaging/wheelhouse.sh 3.11 arm64 build/wheelhouse-arm64 dist/pod_stats-*_aarch64.whl
#
# REQUIREMENT is anything pip takes: a name, a wheel file (pip puts a copy in DIR), with extras
# ("dist/pod_stats-…_aarch64.whl[web]").
# Wheels up to manylinux_2_31 are taken (glibc 2.31: Debian 11, the oldest target); override
# with POD_STATS_GLIBC=2.36. The project's .venv (else python3) runs pip.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PYTHON_VERSION ARCH DIR REQUIREMENT..." >&2
    exit 2
fi
python_version=$1 arch=$2 dir=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
constraints=${POD_STATS_CONSTRAINTS:-$here/../constraints.txt}
glibc=${POD_STATS_GLIBC:-2.31}
python=$here/../.venv/bin/python
[ -x "$python" ] || python=python3
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "wheelhouse: unknown architecture $arch (amd64, arm64)" >&2; exit 2 ;;
esac
# pip takes each platform tag as given: list every manylinux tag up to the glibc floor
platforms=(--platform "manylinux2014_$machine")
for ((minor = 17; minor <= ${glibc#2.}; minor++)); do
    platforms+=(--platform "manylinux_2_${minor}_$machine")
done

# pip evaluates the constraints' markers for the Python running it, not for the target:
# resolve them here for PYTHON_VERSION and ARCH.
target_constraints=$(mktemp)
trap 'rm -f "$target_constraints"' EXIT
"$python" - "$constraints" "$python_version" "$machine" > "$target_constraints" <<'PY'
import sys

from pip._vendor.packaging.markers import Marker

path, version, machine = sys.argv[1:]
environment = {
    "python_version": version,
    "python_full_version": version + ".0",
    "platform_machine": machine,
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "os_name": "posix",
}
for line in open(path):
    requirement, _, marker = line.split("#")[0].partition(";")
    if requirement.strip() and (not marker.strip() or Marker(marker).evaluate(environment)):
        print(requirement.strip())
PY

mkdir -p "$dir"
# (this machine's pip configuration names local indexes that may be absent: not an error)
"$python" -m pip download -q --disable-pip-version-check --only-binary=:all: --implementation cp \
    --python-version "$python_version" "${platforms[@]}" -c "$target_constraints" -d "$dir" "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
