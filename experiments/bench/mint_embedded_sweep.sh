#!/usr/bin/env bash
# The embedded MINT sweep end to end, timed: train (or reuse) the proxy victim, run every
# MINT auditor for N = 1000 and 15000 (one Hydra multirun over mint.n_train: same cached
# victim, same test set), then write results/embedded_mint/. With --by-sample, also the
# contrast run whose auditor halves are split by sample (test identities seen in training).
# Run from the repository root:
#   OMP_NUM_THREADS=1 bash experiments/bench/mint_embedded_sweep.sh [--by-sample]   (1 thread)
set -euo pipefail
EXP=experiment=embedded/mint_fashion_identities
start=$(date +%s)
python -m miabench.train_victim "$EXP" trainer.enable_progress_bar=false
trained=$(date +%s)
python -m miabench.run_attack -m "$EXP" mint.n_train=1000,15000 trainer.enable_progress_bar=false
attacked=$(date +%s)
python -m miabench.make_table table=embedded_mint
end=$(date +%s)
echo "victim_s $((trained - start)) sweep_s $((attacked - trained)) table_s $((end - attacked)) total_s $((end - start))"
if [[ "${1:-}" == "--by-sample" ]]; then
  python -m miabench.run_attack -m "$EXP" evaluation.calibration_by_group=false \
    mint.n_train=1000,15000 trainer.enable_progress_bar=false
  python -m miabench.make_table table=embedded_mint_by_sample
  echo "by_sample_s $(($(date +%s) - end))"
fi
