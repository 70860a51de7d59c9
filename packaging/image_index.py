"""Joins per-architecture images of an OCI layout into one multi-architecture OCI image index.

    python3 packaging/image_index.py LAYOUT TAG WORK TAG-amd64 TAG-arm64 ...

packaging/image.sh leaves one image per architecture in LAYOUT, tagged VERSION-ARCH; this
writes an image index (application/vnd.oci.image.index.v1+json) naming each with its platform
(from its config), tags it TAG, and keeps the per-architecture tags. `skopeo copy --all
oci:LAYOUT:TAG docker://REGISTRY/pod-stats:TAG` pushes the index and every image. It also reports
each image's size, compressed (manifest, config and layers as stored and pushed) and unpacked
(WORK/ARCH/unpacked-bytes, from packaging/image.sh), in WORK/sizes.json and on stdout.
"""

import hashlib
import json
import sys
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"
REF = "org.opencontainers.image.ref.name"


def blob(layout: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hexdigest).read_bytes()


def put_blob(layout: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return f"sha256:{hexdigest}"


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    layout, tag, work, arch_tags = Path(argv[0]), argv[1], Path(argv[2]), argv[3:]
    top = json.loads((layout / "index.json").read_text())
    by_ref = {entry.get("annotations", {}).get(REF): entry for entry in top["manifests"]}
    entries, sizes = [], {}
    for arch_tag in arch_tags:
        if arch_tag not in by_ref:
            print(f"image_index: no image tagged {arch_tag} in {layout}", file=sys.stderr)
            return 1
        descriptor = dict(by_ref[arch_tag])
        manifest = json.loads(blob(layout, descriptor["digest"]))
        config = json.loads(blob(layout, manifest["config"]["digest"]))
        platform = {"architecture": config["architecture"], "os": config["os"]}
        if config["architecture"] == "arm64":
            platform["variant"] = "v8"
        descriptor["platform"] = platform
        descriptor.pop("annotations", None)
        entries.append(descriptor)
        arch = config["architecture"]
        sizes[arch] = {
            "compressed_bytes": descriptor["size"]
            + manifest["config"]["size"]
            + sum(layer["size"] for layer in manifest["layers"]),
            "unpacked_bytes": int((work / arch / "unpacked-bytes").read_text()),
        }
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    data = json.dumps(index, indent=2).encode()
    descriptor = {"mediaType": INDEX, "digest": put_blob(layout, data), "size": len(data), "annotations": {REF: tag}}
    top["manifests"] = [entry for entry in top["manifests"] if entry.get("annotations", {}).get(REF) != tag]
    top["manifests"].append(descriptor)
    (layout / "index.json").write_text(json.dumps(top, indent=2))
    (work / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    for arch, size in sizes.items():
        print(
            f"image {tag} {arch}: {size['compressed_bytes'] / 1e6:.1f} MB compressed, "
            f"{size['unpacked_bytes'] / 1e6:.1f} MB unpacked"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
