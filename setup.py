"""keras-medyate: memory-budgeted dynamic channel-subset fine-tuning for Keras 3."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://github.com/keras-medyate/keras-medyate"
VERSION = {}
with open(os.path.join(HERE, "keras_medyate", "version.py"), encoding="utf-8") as f:
    exec(f.read(), VERSION)  # noqa: S102 - a one-line version file

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

# TensorFlow: a range, not a pin, but only over what was tested. The library uses
# Keras 3 APIs (`import keras`, keras>=3.10) on the TensorFlow backend, and the
# LiteRT export depends on the TFLite converter's behaviour (builtin ops only, no
# Flex; training signatures; `tf.config.experimental.get_memory_info` for the peak
# memory): all of it is tested on TensorFlow 2.21 only, so older releases are not
# admitted until the test suite has run on them. Patch releases of 2.21 are.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "keras>=3.10",
    "numpy>=1.26",
    "absl-py>=2.1",
    "scipy>=1.11",  # kmd.fit_classifier (L-BFGS), the demo's default head initialisation
]
LITERT = ["ai-edge-litert>=2.3"]  # runs exported training models
NOTEBOOKS = ["matplotlib>=3.8", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"]
# `benchmarks/paper_comparison.py --ray`: the sweep as Ray tasks (tested with 2.60 and 2.55).
CLUSTER = ["ray[default]>=2.40,<3"]
# `keras_medyate.federated`: Flower's Message API (ServerApp/ClientApp, message-based
# strategies) and its Ray simulation engine, which pins Ray (1.42 pins 2.55.1). Flower
# changes that API between minor releases: only the tested one is admitted.
FEDERATED = ["flwr[simulation]>=1.42,<1.43"] + LITERT
# Everything the test suite imports: `pip install -e ".[test]"` runs every test.
TEST = sorted(set([
    "pytest>=8",
    "pytest-xdist>=3.5",  # pytest.ini runs the suite on every core (`-n auto`)
    "hypothesis>=6.100",
    "tensorboard>=2.16",  # ChannelResampler(log_dir=...)
    "pillow>=9",          # tests/test_augmentation.py writes images
] + LITERT + NOTEBOOKS + FEDERATED))

setup(
    name="keras-medyate",
    version=VERSION["__version__"],
    description=(
        "Fine-tune a pretrained CNN under a hard memory budget by training a "
        "per-epoch resampled subset of input channels (MeDyate, TraDy), and "
        "export a LiteRT model that keeps training on the device."
    ),
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # LICENSE (Apache-2.0), NOTICE, and the MIT notice of the shipped checkpoint.
    license_files=["LICENSE", "NOTICE", "keras_medyate/assets/LICENSE.tiny-training"],
    url=URL,
    project_urls={
        "Source": URL,
        "Issues": URL + "/issues",
        "Documentation": URL + "#readme",
    },
    python_requires=">=3.10",
    packages=find_packages(include=["keras_medyate", "keras_medyate.*",
                                    "tflite_export", "tflite_export.*"]),
    # assets/: what the demo's default needs offline (the MCUNet checkpoint with its
    # MIT notice, a 6,000-image CIFAR-10 subset; about 3 MB, see assets/README.md).
    package_data={"keras_medyate": ["rankings/*.json", "rankings/README.md",
                                    "assets/mcunet-5fps.pkl", "assets/cifar10_subset.tar.gz",
                                    "assets/LICENSE.tiny-training", "assets/README.md"],
                  "tflite_export": ["README.md", "ANDROID.md"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"litert": LITERT, "notebooks": NOTEBOOKS, "test": TEST, "cluster": CLUSTER,
                    "federated": FEDERATED},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
