#!/usr/bin/env bash
# MINT under three protocols on the embedded proxy, each with its never-trained control, over
# three seeds (results/mint_protocols/). For every protocol (control: unseen identities of the
# same source; published: non-members from another source, a documented domain shift;
# by_sample: held-out images of the victim's identities) it trains the victim (12 epochs) and
# the never-trained control (trainer.max_epochs=0) for seed=0,1,2 (the seed draws the
# identity partition, the membership split, the auditor halves and every initialisation),
# runs attack=mint_protocols on all six, and writes the table. One thread, one job at a time.
# Run from the repository root:
#   bash experiments/bench/mint_protocols_sweep.sh
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
QUIET=trainer.enable_progress_bar=false
SEEDS=${SEEDS:-0,1,2}
EPOCHS=12 # the experiments' trainer.max_epochs; 0 = the never-trained control

start=$(date +%s)
for protocol in control published by_sample; do
  exp="experiment=embedded/mint_protocol_$protocol"
  t0=$(date +%s)
  python -m miabench.train_victim -m "$exp" "seed=$SEEDS" "trainer.max_epochs=$EPOCHS,0" "$QUIET"
  t1=$(date +%s)
  python -m miabench.run_attack -m "$exp" "seed=$SEEDS" "trainer.max_epochs=$EPOCHS,0" "$QUIET"
  t2=$(date +%s)
  echo "$protocol train_s $((t1 - t0)) attack_s $((t2 - t1))"
done
python -m miabench.make_table table=mint_protocols
end=$(date +%s)
echo "total_s $((end - start))"
