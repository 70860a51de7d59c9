#!/usr/bin/env bash
# The node agent's OCI image for one architecture, added to an OCI layout: a debootstrap'd
# Debian root file system (packaging/rootfs.sh) with the wheel and its dependencies installed
# offline into a venv, trimmed, and packed by umoci as one layer. Nothing comes from a container
# registry. packaging/image_index.py then joins the architectures into one OCI index.
#
#   packaging/image.sh ARCH WHEEL LAYOUT [CONSTRAINTS]      (as root; ARCH: amd64, arm64)
#
# The layout's tag is VERSION-ARCH (VERSION: the wheel's). CONSTRAINTS (exact pins) decides
# the dependencies' versions where given; without it, the wheel's own requirements do.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 ARCH WHEEL LAYOUT [CONSTRAINTS]" >&2
    exit 2
fi
arch=$1 wheel=$2 layout=$3 constraints=${4:-}
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
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
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

# libbpf is linked into the extension; libelf and zlib are the node's libraries it needs
# (packaging's decision: auditwheel --exclude), so the image brings Debian's.
say "libelf1 and zlib1g from Debian"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends libelf1 zlib1g >/dev/null

# Dependencies as wheels for this architecture and Python, fetched by the host's pip (the
# chroot installs offline from them): binary wheels only, never a source build in the image.
wheelhouse=$work/wheelhouse
mkdir -p "$wheelhouse"
cp "$wheel" "$wheelhouse/"
say "wheelhouse for cp${python_version/./} $machine"
"$top/.venv/bin/pip" download -q --disable-pip-version-check --only-binary=:all: --dest "$wheelhouse" \
    --python-version "$python_version" --implementation cp \
    --platform "manylinux2014_$machine" --platform "manylinux_2_28_$machine" --platform "manylinux_2_34_$machine" \
    --platform "linux_$machine" ${constraints:+--constraint "$constraints"} "$wheelhouse/$wheel_name[web]"

say "venv $venv"
mkdir -p "$root/tmp/wheelhouse"
cp "$wheelhouse"/*.whl "$root/tmp/wheelhouse/"
[ -z "$constraints" ] || cp "$constraints" "$root/tmp/wheelhouse/constraints.txt"
in_root python3 -m venv "$venv"
in_root "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links /tmp/wheelhouse \
    ${constraints:+--constraint /tmp/wheelhouse/constraints.txt} "/tmp/wheelhouse/$wheel_name[web]"
# pip and setuptools only install: the image never does
in_root "$venv/bin/pip" uninstall -q -y --disable-pip-version-check pip setuptools
ln -s "$venv/bin/pod-stats" "$root/usr/local/bin/pod-stats"
# the extension loads (libelf, zlib, glibc present) on this architecture, under qemu-user if foreign
in_root pod-stats --version >&2

say "trim"
rm -rf "$root/tmp/wheelhouse" "$root"/tmp/* "$root"/var/tmp/*
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
