#!/usr/bin/env bash
# One point nearer the papers' scale (benchmarks/RESULTS.md): MCUNet, the whole CIFAR-10
# (50,000 / 10,000 images), 128 px, the smallest budget, one seed, 10 epochs.
# Resumable twice over: finished runs are skipped (CSV) and an interrupted run restarts
# from its last finished epoch (--backup).
set -u
cd "$(dirname "$0")/.."
python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10 \
  --methods=linear_probe,medyate,trady,full --budgets=15936 --seeds=0 --epochs=10 \
  --train_per_class=all --test_per_class=all --resolution=128 --backup \
  --out=benchmarks/results_full_cifar10
