#!/usr/bin/env bash
# The committed comparison of benchmarks/RESULTS.md (issues 23 and 20), resumable: runs already
# in benchmarks/results/paper_comparison.csv are skipped (a CSV of an older version, other
# columns, is refused: move it away first). Seeds in the outer loop, so an interrupted sweep
# leaves whole seeds of both datasets. A seed picks the training images and their order for
# every method of that seed; every cell gets one run per seed. MeDyate also trains on the
# exported LiteRT file (--runtime=keras,litert: same head, plan, seed, order, recipe, epochs).
# Every flag not given is the default: --protocol=recommended, --threads=2, --max_retries=2,
# --eval_on=test (the recipe was chosen on validation splits: benchmarks/recipe/run.sh).
set -u
cd "$(dirname "$0")/.."
METHODS=medyate,trady,lara_trady,full_random,static_random,sparse_update,full,classifier,linear_probe
COMMON="--epochs=8 --train_per_class=120 --test_per_class=100 --resolution=96 --out=benchmarks/results"
for seed in 0 1 2; do
  python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10,fashion_mnist \
    --methods=$METHODS --budgets=15936,64832,112640 --seeds=$seed --runtime=keras,litert $COMMON
done
python benchmarks/paper_comparison.py --model=mobilenetv2_w035 --dataset=cifar10 \
  --methods=$METHODS --budgets=27946 --seeds=0,1,2 $COMMON
