#!/usr/bin/env bash
# Federated fine-tuning of MCUNet on CIFAR-10, 10 phones, the smallest budget (15,936 units):
# sparse uploads (MeDyate, the trained slices + head) with IID and Dirichlet(0.5) shards, next to
# (a) centralized MeDyate on the pooled shards (same epochs) and (b) dense federated averaging of
# the whole search space (same rounds), and the two server averages of sparse updates. Writes benchmarks/federated/<configuration>/rounds.csv
# (+ prepared.json, rounds.png), then results.md and accuracy_per_round.png from those CSVs.
#
# Resumable: each configuration runs in $WORK/<configuration> (data arrays, exported file,
# checkpoints: large, not committed) and a finished or interrupted one continues where it stopped
# when the script is run again. About 35-60 minutes on 2 CPU cores shared with other jobs.
#
#   KERAS_MEDYATE_WEIGHTS_DIR=../shared/data/weights KERAS_MEDYATE_DATA_DIR=../shared/data \
#       benchmarks/federated/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK="${WORK:-${TMPDIR:-/tmp}/keras_medyate_federated}"
HERE=benchmarks/federated
COMMON=(--model=mcunet_5fps --dataset=cifar10 --clients=10 --rounds=10 --local_epochs=1
        --budget=15936 --resolution=96 --train_per_class=200 --test_per_class=100
        --server_per_class=10 --batch_size=16 --seed=0 --parallel=2 --threads=1)
# sparse: the default server average (every client's examples count for a trained slice,
# those that did not train it with the global value); sparse_*_trainers: each slice averaged
# over the clients that trained it only (--average=trainers).
CONFIGS=(
  "sparse_iid --mode=sparse --partition=iid"
  "sparse_dirichlet0.5 --mode=sparse --partition=dirichlet:0.5"
  "centralized --mode=centralized --partition=iid"
  "dense_iid --mode=dense --partition=iid"
  "dense_dirichlet0.5 --mode=dense --partition=dirichlet:0.5"
  "sparse_iid_trainers --mode=sparse --partition=iid --average=trainers"
  "sparse_dirichlet0.5_trainers --mode=sparse --partition=dirichlet:0.5 --average=trainers"
)
mkdir -p "$WORK"
for config in "${CONFIGS[@]}"; do
  read -r name flags <<<"$config"
  # shellcheck disable=SC2206
  extra=($flags)
  command=(python -m keras_medyate.federated "${COMMON[@]}" "${extra[@]}" --out="$WORK/$name")
  echo "== $name: ${command[*]}"
  start=$(date +%s)
  "${command[@]}"
  mkdir -p "$HERE/$name"
  cp "$WORK/$name/rounds.csv" "$WORK/$name/rounds.png" "$WORK/$name/prepared.json" "$HERE/$name/"
  # The exact command (with the work folder named as in results.md) and the wall time.
  printf '%s\n' "python -m keras_medyate.federated ${COMMON[*]} ${extra[*]} --out=\$WORK/$name" \
    > "$HERE/$name/command.txt"
  echo "$name: $(( $(date +%s) - start )) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee -a "$HERE/wall_times.txt"
done
python "$HERE/make_results.py"
