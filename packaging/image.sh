#!/usr/bin/env bash
# The node agent's OCI image for one architecture, added to an OCI layout: a debootstrap'd
# Debian root file system (packaging/rootfs.sh) with the wheel and its dependencies installed
# offline into a venv, trimmed, and packed by umoci as one layer. Nothing comes from a container
# registry. packaging/image_index.py then joins the architectures into one OCI index.
#
#   packaging/image.sh ARCH WHEEL LAYOUT      (as root; ARCH: amd64, arm64)
#
# The layout's tag is VERSION-ARCH (VERSION: the wheel's). The dependencies' versions are
# constraints.txt's exact pins.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 ARCH WHEEL LAYOUT" >&2
    exit 2
fi
arch=$1 wheel=$2 layout=$3
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
suite=bookworm
build=$top/build
base=$build/rootfs/$suite-$arch
work=$build/image/$arch
root=$work/rootfs
venv=/opt/pod-stats
# Debian's python3 in $suite: the wheelhouse is for this interpreter
python_version=3.11
case "$arch" in
    amd64 | arm64) ;;
    *) echo "image: no image for $arch (amd64, arm64)" >&2; exit 2 ;;
esac

# the chroot's programs see none of this host's environment (its pip configuration above all)
in_root() { chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
say() { printf 'image[%s]: %s\n' "$arch" "$*" >&2; }

[ -f "$wheel" ] || { say "no wheel $wheel (make wheel)"; exit 1; }
wheel_name=$(basename "$wheel")
version=$(echo "$wheel_name" | cut -d- -f2)

# the shared pristine base (see packaging/rootfs.sh), copied before anything is added
"$here/rootfs.sh" "$arch" "$suite" "$base" python3,python3-venv
rm -rf "$work" && mkdir -p "$work"
cp -a "$base" "$root"
rm -f "$root/.rootfs"

# The wheel and its dependencies, offline, pinned by constraints.txt (packaging/install_wheel.sh).
# Bookworm's glibc (2.36) is the dependencies' floor here, not the wheel's.
say "venv $venv (Python $python_version)"
POD_STATS_GLIBC=2.36 "$here/install_wheel.sh" "$root" "$arch" "$python_version" "$wheel[web]"
# pip and setuptools only install: the image never does
in_root "$venv/bin/pip" uninstall -q -y --disable-pip-version-check pip setuptools
ln -s "$venv/bin/pod-stats" "$root/usr/local/bin/pod-stats"
# the extension loads (its vendored libelf and zlib, the glibc here) on this architecture, under
# qemu-user if foreign
in_root pod-stats --version >&2

say "trim"
rm -rf "$root"/tmp/* "$root"/var/tmp/*
# documentation, locales, apt's package lists and caches, the venv module's bundled wheels
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/share/python-wheels "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/root/.cache
find "$root/var/log" -type f -delete
# ids made per root file system: the image's would be every container's
: > "$root/etc/machine-id"

port=$(in_root "$venv/bin/python" -c 'from pod_stats.cli import DEFAULT_PORT; print(DEFAULT_PORT)')
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$top" rev-parse HEAD 2>/dev/null || echo unknown)
tag=$version-$arch

say "umoci: $layout:$tag"
[ -d "$layout" ] || umoci init --layout "$layout"
umoci rm --image "$layout:$tag" 2>/dev/null || true
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" --history.created_by "packaging/image.sh $arch" "$root" /
umoci config --image "$layout:$tag" \
    --architecture "$arch" --os linux --created "$created" \
    --config.entrypoint pod-stats --config.cmd serve \
    --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
    --config.exposedports "$port/tcp" --config.workingdir / \
    --config.label "org.opencontainers.image.title=pod-stats" \
    --config.label "org.opencontainers.image.description=Per-pod kernel activity (CO-RE eBPF) with cgroup memory and CPU, as Prometheus metrics" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.revision=$revision" \
    --config.label "org.opencontainers.image.created=$created" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0" \
    --config.label "org.opencontainers.image.base.name=debian:$suite (debootstrap --variant=minbase)" \
    --history.created_by "packaging/image.sh $arch: config"
umoci gc --layout "$layout"
du -sb "$root" | cut -f1 > "$work/unpacked-bytes"
