#!/usr/bin/env bash
# Issue 26, step 1: the recipe at the papers' scale (MCUNet, CIFAR-10, 128 px, 15,936 units),
# chosen on a VALIDATION split of the training images, never on the test set.
#
# Compute plan (2 CPU cores): a 128 px MeDyate epoch on the 45,000 training images takes
# ~100-145 s, full fine-tuning ~330 s, so a grid at full scale is out of reach. The search
# runs on a subset and a shorter schedule, then checks that the subset's choice holds at full
# scale:
#   stage 1  subset: 1,500 images per class of seed 0, 500 per class held out (5,000 validation
#            images; 10,000 train), 15 epochs. MeDyate at the recommended rate (0.05) with each
#            augmentation: none, flip only, random resized crop keeping >= 50 / 25 / 8 % of the
#            area (+ flip; 8 % is the authors'). ~10 min a run. First the linear probe on
#            the same images (the bar; a few minutes).
#   stage 2  subset: the rate of MeDyate (0.025, 0.1) and of full fine-tuning (0.005, 0.01,
#            0.02) at the stage-1 augmentation AUG (a --crop_scale value, 'none' = flip only,
#            or 'off'); full fine-tuning also under the augmentations FULL_AUGS (default: AUG
#            only, ~20 min a run; e.g. FULL_AUGS="off none" to measure both).
#   stage 3  subset: the stage-2 recipe of MeDyate (AUG, LR) over 30 epochs (is 15 enough?).
#   stage 4  full scale, the prediction check: 45,000 train / 5,000 validation images (10 %
#            of each class held out), MeDyate at (AUG, LR) and at the stage-1 runner-up AUG2,
#            EPOCHS epochs: does the subset's order hold on the whole training set?
#
# Usage: benchmarks/papers_scale/search.sh 1
#        AUG=0.25 benchmarks/papers_scale/search.sh 2
#        AUG=0.25 LR=0.05 benchmarks/papers_scale/search.sh 3
#        AUG=0.25 LR=0.05 AUG2=off EPOCHS=10 benchmarks/papers_scale/search.sh 4
# Resumable: each configuration writes its own CSV under benchmarks/papers_scale/search/, finished
# runs are skipped and --backup restarts an interrupted run at its last finished epoch.
# `python benchmarks/update_results.py` turns them into the table of RESULTS.md section 6.
set -u
cd "$(dirname "$0")/../.."
OUT=benchmarks/papers_scale/search
stage=${1:?give the stage: 1, 2, 3 or 4}
base="--model=mcunet_5fps --dataset=cifar10 --budgets=15936 --seeds=0 --resolution=128 \
  --eval_on=validation --backup"
subset="$base --train_per_class=1500 --validation_fraction=0.3334"
augment() {  # the flags of one augmentation setting: off, none (flip only) or a crop scale
  case "$1" in off) echo "--noaugment" ;; *) echo "--augment --crop_scale=$1" ;; esac
}
failed=0  # a failed or diverged run does not stop the others; the script's status tells
run() { python benchmarks/paper_comparison.py "$@" || { echo "FAILED: $*" >&2; failed=1; }; }
case "$stage" in
  1)
    # The bar every configuration stands next to: the linear probe on the same images.
    run $subset --methods=linear_probe --out=$OUT/subset_linear_probe
    for aug in off none 0.5 0.25 0.08; do
      run $subset --epochs=15 --methods=medyate $(augment $aug) --out=$OUT/subset_medyate_aug_$aug
    done ;;
  2)
    : "${AUG:?set AUG to the stage-1 choice}"
    for lr in 0.025 0.1; do
      run $subset --epochs=15 --methods=medyate $(augment $AUG) --learning_rate=$lr \
        --out=$OUT/subset_medyate_aug_${AUG}_lr_$lr
    done
    for aug in ${FULL_AUGS:-$AUG}; do
      for lr in 0.005 0.01 0.02; do
        run $subset --epochs=15 --methods=full $(augment $aug) --full_learning_rate=$lr \
          --out=$OUT/subset_full_aug_${aug}_lr_$lr
      done
    done ;;
  3)
    : "${AUG:?set AUG}" "${LR:?set LR}"
    run $subset --epochs=30 --methods=medyate $(augment $AUG) --learning_rate=$LR \
      --out=$OUT/subset_medyate_aug_${AUG}_lr_${LR}_30epochs ;;
  4)
    : "${AUG:?set AUG}" "${LR:?set LR}" "${AUG2:?set AUG2}" "${EPOCHS:?set EPOCHS}"
    for aug in $AUG $AUG2; do
      run $base --train_per_class=all --validation_fraction=0.1 --epochs=$EPOCHS \
        --methods=medyate $(augment $aug) --learning_rate=$LR \
        --out=$OUT/whole_medyate_aug_${aug}_lr_${LR}_${EPOCHS}epochs
    done ;;
  *) echo "unknown stage $stage: give 1, 2, 3 or 4" >&2; exit 2 ;;
esac
exit $failed
