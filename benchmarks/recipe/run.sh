#!/usr/bin/env bash
# Recipe check behind the defaults of `--protocol=recommended` (benchmarks/RESULTS.md):
# peak learning rate per method and training augmentation, MCUNet on a CIFAR-10 subset
# (120 / 100 images per class, 96 px, 8 epochs, seed 0), every run from the probe head.
# Resumable: each configuration writes its own CSV and finished runs are skipped.
set -u
cd "$(dirname "$0")/../.."
OUT=benchmarks/recipe
common="--dataset=cifar10 --train_per_class=120 --test_per_class=100 --resolution=96 --epochs=8 --seeds=0"
run() { python benchmarks/paper_comparison.py $common "$@"; }
for lr in 0.02 0.05 0.1; do
  run --methods=medyate --budgets=15936,112640 --learning_rate=$lr --out=$OUT/lr_medyate_$lr
done
for lr in 0.005 0.01 0.02; do
  run --methods=full --full_learning_rate=$lr --out=$OUT/lr_full_$lr
done
for lr in 0.01 0.05 0.2; do
  run --methods=classifier --learning_rate=$lr --out=$OUT/lr_classifier_$lr
done
run --methods=medyate,full --budgets=15936 --augment --out=$OUT/augment
