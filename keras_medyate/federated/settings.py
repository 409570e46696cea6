"""What a federated run is (`Settings`), without importing TensorFlow or Flower."""

import dataclasses
from typing import Optional, Union

from keras_medyate.federated import partition as partition_lib

#: How the clients train and what they upload.
#: sparse: MeDyate on the device, the trained slices + head uploaded (the method);
#: dense: every channel of the same search space trained and uploaded (FedAvg of
#: the search space); centralized: one trainer on the union of the clients'
#: data, no federation (the reference).
MODES = ("sparse", "dense", "centralized")
#: Where the starting head comes from (it must not see the clients' data).
HEADS = ("server_probe", "random")
#: How the server averages a trained slice (`strategy.average_slices`).
AVERAGES = ("all_clients", "trainers")


@dataclasses.dataclass
class Settings:
    """One federated run (the flags of `python -m keras_medyate.federated`).

    Attributes:
        model: preset name or tiny-training `.pkl` path.
        dataset: `cifar10`, `fashion_mnist` or `folder:/path`.
        clients: int, simulated phones.
        rounds: int, federated rounds (round 0 is the starting model).
        partition: `iid` or `dirichlet:ALPHA` (label skew).
        budget: memory budget, units or a size such as `62KB`.
        local_epochs: int, epochs each client trains per round.
        resolution: int, input size in pixels.
        train_per_class: images per class drawn from the training split,
            the server's held-out split included (`all` for every image).
        test_per_class: test images per class, or `all`.
        seed: int; it picks the images, the partition, the head's split,
            the clients' sampler seeds and data orders.
        mode: one of `MODES`.
        head: `server_probe` (a linear probe on `server_per_class` images per
            class held out from every client) or `random` (Keras' init).
        server_per_class: int, images per class of the server's split.
        average: `all_clients` (FedAvg of the whole models, from the sparse
            uploads) or `trainers` (each slice over the clients that trained
            it): `strategy.average_slices`.
        batch_size: int, the exported file's static training batch.
        parallel: int, clients trained at the same time (Ray CPUs).
        threads: int, LiteRT threads per client.
    """

    model: str = "mcunet_5fps"
    dataset: str = "cifar10"
    clients: int = 10
    rounds: int = 10
    partition: str = "iid"
    budget: Union[int, str] = 15936
    local_epochs: int = 1
    resolution: int = 96
    train_per_class: Union[int, str] = 120
    test_per_class: Union[int, str] = 100
    seed: int = 0
    mode: str = "sparse"
    head: str = "server_probe"
    server_per_class: int = 10
    average: str = "all_clients"
    batch_size: int = 16
    parallel: int = 2
    threads: int = 1
    verbose: bool = False
    accept_failures: Optional[bool] = False

    def __post_init__(self):
        for name in ("clients", "rounds", "local_epochs", "resolution", "batch_size",
                     "parallel", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.average not in AVERAGES:
            raise ValueError(f"`average` must be one of {', '.join(AVERAGES)}, got "
                             f"{self.average!r}.")
        if self.head not in HEADS:
            raise ValueError(f"`head` must be one of {', '.join(HEADS)}, got {self.head!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be an int >= 0, got {self.seed!r}.")
        if self.head == "server_probe" and (not isinstance(self.server_per_class, int)
                                            or self.server_per_class < 1):
            raise ValueError("`server_per_class` must be a positive int with "
                             f"head='server_probe', got {self.server_per_class!r}.")
        partition_lib.parse(self.partition)

    def identity(self):
        """The settings that define the run's results (all but `parallel`, `threads`,
        `verbose`, `accept_failures`): a resumed run must match them (`rounds` too:
        the learning-rate schedule spans every round)."""
        values = dataclasses.asdict(self)
        for name in ("parallel", "threads", "verbose", "accept_failures"):
            values.pop(name)
        values["budget"] = str(values["budget"])
        values["train_per_class"] = str(values["train_per_class"]).lower()
        values["test_per_class"] = str(values["test_per_class"]).lower()
        if values["head"] == "random":
            values["server_per_class"] = 0
        if values["mode"] != "sparse":
            values["average"] = "all_clients"  # the same average for dense updates
        return values

    @property
    def total_epochs(self):
        """Epochs every example is seen in the whole run (the schedule's length)."""
        return self.rounds * self.local_epochs
