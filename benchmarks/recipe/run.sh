#!/usr/bin/env bash
# Recipe check behind the defaults of `--protocol=recommended` (benchmarks/RESULTS.md): peak
# learning rate per method, training augmentation, and (from the per-epoch curves of every
# run, summary.md) the number of epochs. MCUNet on a CIFAR-10 subset (120 training images per
# class, 96 px, 8 epochs, seeds 0-2), every run from the probe head.
#
# Every choice is made on a VALIDATION split carved from the training images, never on the
# test set: --eval_on=validation holds out a stratified 20 % of each class of the seed's
# training images (24 per class; the other 96 train) and reports top-1 on them. The test
# split is not read. Three seeds: each picks its own training images, order and held-out part.
#
# Resumable: each configuration writes its own CSV under benchmarks/recipe/validation/ and
# finished runs are skipped. About 50 runs; on 2 quiet CPU cores roughly an hour.
set -u
cd "$(dirname "$0")/../.."
OUT=benchmarks/recipe/validation
common="--dataset=cifar10 --train_per_class=120 --resolution=96 --epochs=8 --seeds=0,1,2 \
  --eval_on=validation --validation_fraction=0.2"
run() { python benchmarks/paper_comparison.py $common "$@"; }
for lr in 0.02 0.05 0.1; do
  run --methods=medyate --budgets=15936,64832,112640 --learning_rate=$lr --out=$OUT/lr_medyate_$lr
done
for lr in 0.005 0.01 0.02; do
  run --methods=full --full_learning_rate=$lr --out=$OUT/lr_full_$lr
done
for lr in 0.01 0.05 0.2; do
  run --methods=classifier --learning_rate=$lr --out=$OUT/lr_classifier_$lr
done
run --methods=linear_probe --out=$OUT/probe
run --methods=medyate,full --budgets=15936 --augment --out=$OUT/augment
