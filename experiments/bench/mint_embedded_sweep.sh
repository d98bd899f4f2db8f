#!/usr/bin/env bash
# The embedded MINT sweep end to end, timed. Trains (or reuses) the proxy victim and its
# never-trained control (same architecture, trainer.max_epochs=0), runs every MINT auditor
# and the nearest-identity diagnostic for N = 1000 and 15000 on both (one Hydra multirun over
# mint.n_train per victim: same cached victim, same test set; the two victims' sweeps run as
# two single-thread jobs side by side), then writes results/embedded_mint/. With
# --by-sample, also the contrast whose auditor halves are split by sample (test identities
# seen in training), on both victims.
# Run from the repository root:
#   bash experiments/bench/mint_embedded_sweep.sh [--by-sample]
set -euo pipefail
EXP=experiment=embedded/mint_fashion_identities
QUIET=trainer.enable_progress_bar=false
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
EPOCHS=15 # the experiment's trainer.max_epochs; 0 = the never-trained control

sweep() { # $1: trainer.max_epochs, $2: evaluation.calibration_by_group
  python -m miabench.run_attack -m "$EXP" "trainer.max_epochs=$1" \
    "evaluation.calibration_by_group=$2" mint.n_train=1000,15000 "$QUIET"
}
both() { # the trained victim's and the control's sweeps side by side
  sweep "$EPOCHS" "$1" &
  local trained=$!
  sweep 0 "$1" &
  local control=$!
  wait "$trained"
  wait "$control"
}

start=$(date +%s)
python -m miabench.train_victim -m "$EXP" "trainer.max_epochs=$EPOCHS,0" "$QUIET"
trained=$(date +%s)
both true
attacked=$(date +%s)
python -m miabench.make_table table=embedded_mint
end=$(date +%s)
echo "victims_s $((trained - start)) sweeps_s $((attacked - trained)) table_s $((end - attacked)) total_s $((end - start))"
if [[ "${1:-}" == "--by-sample" ]]; then
  both false
  python -m miabench.make_table table=embedded_mint_by_sample
  echo "by_sample_s $(($(date +%s) - end))"
fi
