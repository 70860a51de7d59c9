#!/usr/bin/env bash
# Lets this machine run another architecture's programs (arm64 on x86): Debian's
# qemu-user-static, registered with binfmt_misc. The F flag opens the emulator now, so it also
# runs inside chroots that do not contain it. Nothing to do for the machine's own architecture.
#
#   packaging/foreign_arch.sh ARCH      (Debian's name: amd64, arm64; as root)
set -euo pipefail
arch=$1
[ "$arch" = "$(dpkg --print-architecture)" ] && exit 0
case "$arch" in
    arm64) qemu=aarch64 ;;
    amd64) qemu=x86_64 ;;
    *) echo "foreign_arch: no emulator known for $arch" >&2; exit 2 ;;
esac
dpkg -s qemu-user-static >/dev/null 2>&1 || { apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static; }
binfmt=/proc/sys/fs/binfmt_misc
[ -f "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ ! -f "$binfmt/qemu-$qemu" ]; then
    # the package's own registration line (systemd-binfmt does this where systemd runs)
    cat "/usr/lib/binfmt.d/qemu-$qemu.conf" > "$binfmt/register"
fi
grep -qx enabled "$binfmt/qemu-$qemu" || { echo "foreign_arch: qemu-$qemu is not enabled in binfmt_misc" >&2; exit 1; }
