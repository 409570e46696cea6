"""Image-classification datasets as batched `tf.data` pipelines.

`load` builds the pipelines of CIFAR-10, Fashion-MNIST and image folders;
`as_dataset` turns the `(x, y)` arrays that `kmd.rank_layers`,
`kmd.fit_classifier` and the oracle strategies also accept into batches.

Example:

```python
import keras_medyate.data

train_ds, test_ds, info = keras_medyate.data.load(
    "fashion_mnist", image_size=64, train_per_class=5, test_per_class=5)
print(info.class_names[:2], info.num_train)  # ('T-shirt/top', 'Trouser') 50
```
"""

from keras_medyate.data.augmentation import Augmentation
from keras_medyate.data.batches import as_dataset
from keras_medyate.data.cache import cache_dir
from keras_medyate.data.datasets import ACCEPTED_NAMES, DatasetInfo, load, per_class_count
from keras_medyate.data.errors import DATA_DIR_ENV, DatasetNotFoundError
from keras_medyate.data.idx import read_idx
from keras_medyate.data.preprocessing import scale_to_unit_range

__all__ = [
    "ACCEPTED_NAMES",
    "Augmentation",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "DatasetNotFoundError",
    "as_dataset",
    "cache_dir",
    "load",
    "per_class_count",
    "read_idx",
    "scale_to_unit_range",
]
