#!/usr/bin/env bash
# Issue 26: the seconds per epoch of run.sh's methods, measured together in one invocation on
# one machine, so their ratios hold (run.sh spans sessions, and a session may be handed another
# machine: its rows' times are each one machine's).
#
# MeDyate, TraDy, LaRa-TraDy and full fine-tuning (every variable) through run.sh (its recipe,
# the whole CIFAR-10 at 128 px, 15,936 units, seed 0) for EPOCHS (default 2) epochs: a short run
# whose accuracy means nothing; its CSV's `epoch_seconds` is the median over epochs 2.. (the
# first, `first_epoch_seconds`, also traces the graph) and `epoch_eval_seconds` the evaluation
# kept apart. Run it with nothing else on the machine. ~30 min on 2 CPU cores.
#
# Usage: AUG=none LR=0.05 FULL_LR=0.005 benchmarks/papers_scale/timing.sh
# Resumable (finished runs skipped); OUT names the folder.
set -u
: "${AUG:?set AUG}" "${LR:?set LR}" "${FULL_LR:?set FULL_LR}"
EPOCHS=${EPOCHS:-2}
# run.sh's recipe and data, these methods and epochs, its own folder, no per-epoch backup.
METHODS=medyate,trady,lara_trady,full EPOCHS=$EPOCHS BACKUP=0 \
  OUT=${OUT:-benchmarks/papers_scale/timing_aug_${AUG}_lr_${LR}_full_lr_${FULL_LR}_${EPOCHS}epochs} \
  exec bash "$(dirname "$0")/run.sh"
