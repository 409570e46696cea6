"""Which training examples each simulated client holds: IID or Dirichlet(α) by label.

Numpy only (no TensorFlow, no Flower). Both partitioners take the labels of
the examples to share and return one sorted index array per client; every
example goes to exactly one client.

- `iid`: a seeded shuffle cut into `num_clients` near-equal parts.
- `dirichlet`: label skew as in Hsu et al. 2019 ("Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification"):
  for every class, the shares of its examples the clients get are drawn
  from Dirichlet(α, …, α); α → 0 gives each client few classes, α → ∞
  approaches IID. A draw that leaves a client with fewer than
  `min_partition_size` examples is redrawn (at most `max_draws` times).

flwr-datasets has the same two partitioners, but they take a HuggingFace
`datasets.Dataset` (its `datasets` dependency brings pyarrow, pandas and the
Hub client) for what is here a label array; the arrays the clients read are
written by `keras_medyate.federated.prepare`.

>>> import numpy as np
>>> labels = np.repeat(np.arange(3), 4)
>>> [p.tolist() for p in iid(labels, 3, seed=0)]
[[5, 6, 10, 11], [0, 3, 4, 9], [1, 2, 7, 8]]
>>> parts = dirichlet(labels, 2, alpha=0.5, seed=0)
>>> sorted(np.concatenate(parts).tolist()) == list(range(12))
True
>>> parse("dirichlet:0.5"), parse("iid")
(('dirichlet', 0.5), ('iid', None))
"""

import numpy as np

#: The accepted forms of a partition name.
ACCEPTED = ("iid", "dirichlet:ALPHA")
#: Fewest examples a Dirichlet draw may give a client (unless there are too few).
MIN_PARTITION_SIZE = 10


def parse(text):
    """`"iid"` → `("iid", None)`; `"dirichlet:0.5"` → `("dirichlet", 0.5)`.

    Raises:
        ValueError: another form, or α not a positive number.
    """
    value = str(text).strip().lower()
    if value == "iid":
        return "iid", None
    if value.startswith("dirichlet:"):
        try:
            alpha = float(value.split(":", 1)[1])
        except ValueError:
            alpha = float("nan")
        if not alpha > 0 or not np.isfinite(alpha):
            raise ValueError(f"`{text}`: α must be a positive number, as in dirichlet:0.5.")
        return "dirichlet", alpha
    raise ValueError(f"Unknown partition {text!r}; accepted: {', '.join(ACCEPTED)}.")


def partition(labels, num_clients, how, seed):
    """Index arrays of the clients for a partition name (`parse`)."""
    kind, alpha = parse(how)
    if kind == "iid":
        return iid(labels, num_clients, seed)
    return dirichlet(labels, num_clients, alpha, seed)


def _check(labels, num_clients):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`labels` must be 1-D, got shape {labels.shape}.")
    if isinstance(num_clients, bool) or not isinstance(num_clients, (int, np.integer)) \
            or num_clients < 1:
        raise ValueError(f"`num_clients` must be a positive int, got {num_clients!r}.")
    if len(labels) < num_clients:
        raise ValueError(f"{len(labels)} examples cannot be shared by {num_clients} clients: "
                         "give every client at least one (more images per class, or fewer "
                         "clients).")
    return labels


def iid(labels, num_clients, seed):
    """A seeded shuffle of every example, cut into `num_clients` near-equal parts."""
    labels = _check(labels, num_clients)
    order = np.random.default_rng((int(seed), 0x11D)).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet(labels, num_clients, alpha, seed, min_partition_size=None, max_draws=100):
    """Label-skewed parts: each class split over the clients by Dirichlet(α) shares.

    Args:
        labels: int array of the examples' classes.
        num_clients: int.
        alpha: float > 0, the concentration.
        seed: int.
        min_partition_size: fewest examples per client; defaults to
            `MIN_PARTITION_SIZE`, or fewer when the data is too small for it
            (`len(labels) // (2 * num_clients)`, at least 1).
        max_draws: int, draws tried before giving up.

    Raises:
        ValueError: no draw gave every client `min_partition_size` examples.
    """
    labels = _check(labels, num_clients)
    if not alpha > 0:
        raise ValueError(f"`alpha` must be positive, got {alpha!r}.")
    if min_partition_size is None:
        min_partition_size = max(1, min(MIN_PARTITION_SIZE, len(labels) // (2 * num_clients)))
    rng = np.random.default_rng((int(seed), 0xD1F))
    classes = np.unique(labels)
    for _ in range(max_draws):
        parts = [[] for _ in range(num_clients)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = np.floor(np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        parts = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in parts) >= min_partition_size:
            return parts
    raise ValueError(
        f"No Dirichlet(α={alpha}) draw in {max_draws} gave each of the {num_clients} clients "
        f"{min_partition_size} of the {len(labels)} examples; use more images per class, fewer "
        "clients or a larger α.")


def client_seed(seed, partition_id):
    """The sampler seed of one client (int32): clients draw different channels."""
    state = np.random.SeedSequence([int(seed), int(partition_id), 0xC11E]).generate_state(1)
    return int(state[0] % (2**31 - 1))
