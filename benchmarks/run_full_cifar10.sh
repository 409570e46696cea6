#!/usr/bin/env bash
# One point nearer the papers' scale (benchmarks/RESULTS.md): MCUNet, the whole CIFAR-10
# (50,000 / 10,000 images), 128 px, the smallest budget, one seed, 10 epochs. `full` trains
# every variable (biases included, issue 23). With every training image, the seed changes only
# the order. A CSV of an older version in OUT is refused: give another OUT, or move it away.
# Resumable twice over: finished runs are skipped (CSV) and an interrupted run restarts
# from its last finished epoch (--backup). METHODS=full re-measures full fine-tuning alone.
set -u
cd "$(dirname "$0")/.."
METHODS=${METHODS:-linear_probe,medyate,trady,full}
OUT=${OUT:-benchmarks/results_full_cifar10}
python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10 \
  --methods=$METHODS --budgets=15936 --seeds=0 --epochs=10 \
  --train_per_class=all --test_per_class=all --resolution=128 --backup --out=$OUT
