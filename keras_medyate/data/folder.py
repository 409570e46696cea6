"""Image folders laid out as `<root>/{train,test}/<class>/<image>`."""

import os

from keras_medyate.data.pipeline import IMAGE_EXTENSIONS, RawDataset, list_image_folder


def find_folder(root, data_dir=None):
    """Lists the images of a `train/` + `test/` folder dataset.

    Class names are the sorted sub-folder names of `train/`; `test/` may
    hold a subset of them, never a class unknown to `train/`.

    Args:
        root: str. The dataset folder. A relative path is taken relative to
            `data_dir` when given, else to the working directory.
        data_dir: str or None. Base folder for a relative `root`. Defaults to
            `None`.

    Raises:
        FileNotFoundError: If `root`, `root/train` or `root/test` is
            missing.
        ValueError: If `test/` has unknown classes or `train/` holds no
            image.
    """
    root = os.path.expanduser(os.fspath(root))
    if not os.path.isabs(root) and data_dir is not None:
        root = os.path.join(os.path.expanduser(os.fspath(data_dir)), root)
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Folder dataset not found: {root} does not exist. Expected "
            f"{root}/train/<class>/<image> and {root}/test/<class>/<image>."
        )
    for sub in ("train", "test"):
        if not os.path.isdir(os.path.join(root, sub)):
            raise FileNotFoundError(
                f"Folder dataset {root} has no `{sub}/` sub-folder. Expected "
                f"{root}/train/<class>/<image> and {root}/test/<class>/<image>."
            )
    class_names, train = list_image_folder(os.path.join(root, "train"))
    _, test = list_image_folder(os.path.join(root, "test"), class_names)
    for split_name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise ValueError(
                f"Folder dataset {root}/{split_name} holds no image files "
                f"(accepted suffixes: {', '.join(IMAGE_EXTENSIONS)})."
            )
    return RawDataset(class_names=class_names, train=train, test=test, source=root)
