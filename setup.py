"""keras-medyate: memory-budgeted dynamic channel-subset fine-tuning for Keras 3."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = {}
with open(os.path.join(HERE, "keras_medyate", "version.py"), encoding="utf-8") as f:
    exec(f.read(), VERSION)  # noqa: S102 - a one-line version file

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

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
    python_requires=">=3.10",
    packages=find_packages(include=["keras_medyate", "keras_medyate.*",
                                    "tflite_export", "tflite_export.*"]),
    package_data={"keras_medyate": ["rankings/*.json", "rankings/README.md"],
                  "tflite_export": ["README.md", "ANDROID.md"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "numpy>=1.26",
        "absl-py>=2.1",
    ],
    extras_require={
        "litert": ["ai-edge-litert>=2.3"],
        "test": ["pytest>=8", "hypothesis>=6.100", "ai-edge-litert>=2.3", "matplotlib>=3.8", "scipy>=1.11", "tensorboard>=2.16"],
        "notebooks": ["matplotlib>=3.8", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
