#!/usr/bin/env bash
# The committed comparison of benchmarks/RESULTS.md (issue: recipe re-run), resumable:
# runs already in benchmarks/results/paper_comparison.csv are skipped. Seeds in the outer
# loop, so an interrupted sweep leaves whole seeds of both datasets.
set -u
cd "$(dirname "$0")/.."
METHODS=medyate,trady,lara_trady,full_random,static_random,sparse_update,full,classifier,linear_probe
COMMON="--epochs=8 --train_per_class=120 --test_per_class=100 --resolution=96 --out=benchmarks/results"
for seed in 0 1 2; do
  python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10,fashion_mnist \
    --methods=$METHODS --budgets=15936,64832,112640 --seeds=$seed $COMMON
done
python benchmarks/paper_comparison.py --model=mobilenetv2_w035 --dataset=cifar10 \
  --methods=$METHODS --budgets=27946 --seeds=0,1,2 $COMMON
