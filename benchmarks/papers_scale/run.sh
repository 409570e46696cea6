#!/usr/bin/env bash
# Issue 26, step 2: the papers' headline cell at the papers' scale with the recipe of
# search.sh: MCUNet, the whole CIFAR-10 (50,000 training / 10,000 test images), 128 px,
# 15,936 units, linear probe, MeDyate, TraDy, LaRa-TraDy and full fine-tuning (every
# variable), test top-1 after every epoch (the curves; its cost is the CSV's
# epoch_eval_seconds, left out of the timings).
#
# Set the recipe found on the validation split (RESULTS.md section 6):
#   AUG   --crop_scale value ('none' = flip only) or 'off'   LR / FULL_LR  peak rates
#   EPOCHS  epochs of every method
# Resumable twice over (finished runs skipped; --backup restarts a run at its last epoch), so
# it can be spread over several sessions; on a GPU the same command runs unchanged.
set -u
cd "$(dirname "$0")/../.."
: "${AUG:?set AUG}" "${LR:?set LR}" "${FULL_LR:?set FULL_LR}" "${EPOCHS:?set EPOCHS}"
# The recipe is part of the folder: a resumed run skips the finished rows of its folder and
# restores its backups, so another recipe must never share it.
OUT=${OUT:-benchmarks/papers_scale/results_aug_${AUG}_lr_${LR}_full_lr_${FULL_LR}_${EPOCHS}epochs}
# MeDyate and full fine-tuning first: the check of the issue needs those two.
METHODS=${METHODS:-linear_probe,medyate,full,trady,lara_trady}
case "$AUG" in off) augment="--noaugment" ;; *) augment="--augment --crop_scale=$AUG" ;; esac
# BACKUP=0 (timing.sh) skips the per-epoch backup.
case "${BACKUP:-1}" in 0) backup="--nobackup" ;; *) backup="--backup" ;; esac
python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10 \
  --methods=$METHODS --budgets=15936 --seeds=0 --epochs=$EPOCHS $augment \
  --learning_rate=$LR --full_learning_rate=$FULL_LR \
  --train_per_class=all --test_per_class=all --resolution=128 $backup --out=$OUT
