"""Makes `cifar10_subset.tar.gz`, the CIFAR-10 subset shipped with keras-medyate.

    python keras_medyate/assets/make_cifar10_subset.py /path/to/cifar10_jpg.tar.gz

Reads the JPEG release of CIFAR-10 (`cifar10_jpg.tar.gz`, SHA-256 a26e584c...,
`cifar10_jpg/{train,test}/<class>/<NNNN>.jpg`, see `keras_medyate/assets/README.md`)
and keeps the images `keras_medyate.data.load("cifar10", train_per_class=500,
test_per_class=100, seed=0)` selects from it (the demo's default), byte for byte,
in the same tree. The archive is reproducible: members sorted, times, owners and
the gzip header zeroed.
"""

import argparse
import gzip
import io
import os
import sys
import tarfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = "cifar10_jpg"
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
SEED = 0
OUTPUT = os.path.join(HERE, "cifar10_subset.tar.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="path of cifar10_jpg.tar.gz")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from keras_medyate.data.cifar10 import CLASS_NAMES, TARBALL_SHA256
    from keras_medyate.data.pipeline import Split, subset_per_class
    from keras_medyate.files import verify_sha256

    verify_sha256(args.source, TARBALL_SHA256, what="CIFAR-10 JPEG archive")
    members = {}
    with tarfile.open(args.source, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[0] == TOP:
                members[member.name] = tar.extractfile(member).read()

    kept = []
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        # The order of keras_medyate.data.pipeline.list_image_folder: class, then file name.
        names = sorted((n for n in members if n.split("/")[1] == split),
                       key=lambda n: (n.split("/")[2], n.split("/")[3]))
        labels = np.asarray([CLASS_NAMES.index(n.split("/")[2]) for n in names], np.int32)
        chosen = subset_per_class(Split(labels=labels, paths=np.asarray(names, object)),
                                  per_class, len(CLASS_NAMES), CLASS_NAMES, SEED, split)
        kept.extend(chosen.paths)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(kept):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(args.output, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
        out.write(buffer.getvalue())
    print(f"{args.output}: {len(kept)} images, {os.path.getsize(args.output):,} bytes")


if __name__ == "__main__":
    main()
