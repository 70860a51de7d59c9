#!/usr/bin/env bash
# pod-stats installed offline into a root file system, the one way the test chroots, the
# kernel matrix's guests and the image do it: a venv at /opt/pod-stats made by the root's own
# python3, the wheel and its dependencies from a wheelhouse of packaging/wheelhouse.sh, pinned by
# constraints.txt (markers evaluated by the root's pip, for its Python). A foreign architecture's
# root runs under qemu-user-static.
#
#   packaging/install_wheel.sh ROOT ARCH PYTHON_VERSION 'WHEEL[extras]'      (as root)
#
# ARCH is Debian's (amd64, arm64); PYTHON_VERSION the root's python3 (3.9, 3.11). POD_STATS_GLIBC
# is passed on to wheelhouse.sh.
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 ROOT ARCH PYTHON_VERSION 'WHEEL[extras]'" >&2
    exit 2
fi
root=$1 arch=$2 python_version=$3 requirement=$4
here=$(cd "$(dirname "$0")" && pwd)
wheel=${requirement%%\[*}
extras=${requirement#"$wheel"}
wheelhouse=$root/tmp/wheelhouse

rm -rf "$wheelhouse" "$root/opt/pod-stats"
"$here/wheelhouse.sh" "$python_version" "$arch" "$wheelhouse" "$requirement"
cp "$here/../constraints.txt" "$wheelhouse/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
in_root python3 -m venv /opt/pod-stats
in_root /opt/pod-stats/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheelhouse \
    -c /tmp/wheelhouse/constraints.txt "/tmp/wheelhouse/$(basename "$wheel")$extras"
rm -rf "$wheelhouse"
