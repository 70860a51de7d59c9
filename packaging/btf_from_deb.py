#!/usr/bin/env python3
"""The BTF of a Debian kernel package, for a vmlinux.h of an architecture this machine does not run.

    python3 packaging/btf_from_deb.py linux-image-6.1.0-50-cloud-arm64_*.deb OUT.btf
    bpftool btf dump file OUT.btf format c > vmlinux/arm64/vmlinux.h      (make vmlinux-arm64)

arm64's /boot/vmlinuz is the uncompressed Image, which holds the .BTF section as it is loaded
(the package has no System.map to locate it): the blob is found by its header, magic 0xeB9F,
version 1, a 24-byte header, types first and strings right after them. The largest such blob
is vmlinux's (modules' BTF is not in the Image). Stdlib only.
"""

import gzip
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = re.compile(re.escape(struct.pack("<HBBI", 0xEB9F, 1, 0, 24)))


def kernel_image(deb: Path) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["dpkg-deb", "-x", str(deb), scratch], check=True)
        images = sorted(Path(scratch, "boot").glob("vmlinuz-*"))
        if not images:
            sys.exit(f"btf_from_deb: {deb} has no /boot/vmlinuz-*")
        image = images[0].read_bytes()
    # some architectures' packages ship the Image gzipped
    return gzip.decompress(image) if image[:2] == b"\x1f\x8b" else image


def btf_blob(image: bytes) -> bytes:
    best = b""
    for match in HEADER.finditer(image):
        start = match.start()
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", image, start + 8)
        size = 24 + str_off + str_len
        if type_off == 0 and str_off == type_len and start + size <= len(image) and size > len(best):
            best = image[start : start + size]
    if not best:
        sys.exit("btf_from_deb: no BTF in the kernel image (is the kernel built with CONFIG_DEBUG_INFO_BTF=y?)")
    return best


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} KERNEL.deb OUT.btf")
    Path(sys.argv[2]).write_bytes(btf_blob(kernel_image(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
