#!/usr/bin/env bash
# A Debian root file system made by debootstrap from Debian's packages, for any architecture:
# a foreign one (arm64 on this x86 machine) runs under qemu-user-static through binfmt_misc.
# Used for the wheel's build and test chroots, the arm64 kernel VM's guest and the image.
#
#   packaging/rootfs.sh ARCH SUITE DIR [PACKAGE,PACKAGE...]      (as root)
#
# ARCH is Debian's (amd64, arm64). DIR is reused while ARCH, SUITE and the package list are
# the same (DIR/.rootfs records them); otherwise it is made afresh.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 ARCH SUITE DIR [PACKAGE,...]" >&2
    exit 2
fi
arch=$1 suite=$2 dir=$3 include=${4:-}
mirror=${POD_STATS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
want="$arch $suite $include"

say() { printf 'rootfs: %s\n' "$*" >&2; }

# One maker per DIR at a time (make targets and helpers may ask for the same base at once).
mkdir -p "$(dirname "$dir")"
exec {lock}>"$dir.lock"
flock "$lock"
if [ -f "$dir/.rootfs" ] && [ "$(cat "$dir/.rootfs")" = "$want" ]; then
    exit 0
fi
# A debootstrap that failed may have left /proc or /sys mounted inside DIR: never delete
# through a mount.
unmount_under() {
    local target
    for target in $(findmnt -rn -o TARGET | grep -F "$(realpath -m "$1")/" | sort -r); do
        umount -l "$target"
    done
}
"$here/foreign_arch.sh" "$arch"
dpkg -s debootstrap >/dev/null 2>&1 || { apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; }

unmount_under "$dir"
rm -rf --one-file-system "$dir"
log="$dir.debootstrap.log"
say "debootstrap $suite/$arch (minbase${include:+ + $include}) into $dir"
if ! debootstrap --variant=minbase --arch="$arch" ${include:+--include="$include"} "$suite" "$dir" "$mirror" >"$log" 2>&1; then
    tail -20 "$log" >&2
    unmount_under "$dir"
    say "FAILED: debootstrap $suite/$arch (log: $log)"
    exit 1
fi
rm -rf "$dir/var/cache/apt/archives/"*.deb
echo "$want" > "$dir/.rootfs"
