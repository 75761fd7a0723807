#!/usr/bin/env bash
# Where do the demo's losses leave their plateau? One GPU call (H100/H200), four jobs side by side for
# $MINUTES minutes each, on the demo's own data (`mme synth`, 8 classes x 40 videos at 112², 40 frames):
#   bank_mme.log / bank_pixel.log   pre-training's loop on 8 precomputed views per training video, batch 16,
#                                   each loss term vs its mean-prediction level, probes every $PROBE_EVERY steps
#   ideal.log                       supervised velocity regression on demo-like noise (contrast 0.37, colour
#                                   spread 0.83), held-out MSE every 500 steps (mean prediction ~4.2)
#   finetune.log, finetune_metrics.jsonl   supervised classification from scratch (finetune_tiny_cpu, batch 16,
#                                   with mixup 0.8 / cutmix 1.0 as when the logs were made; the recipe now has
#                                   them off), single-view val top-1 every 500 steps: can the tiny ViT see these
#                                   classes at all?
# Usage (repo root; needs the package's dependencies on PYTHONPATH):  OUT=/tmp/p MINUTES=7 bash benchmarks/plateau_gpu.sh
set -u
OUT=${OUT:-/tmp/plateau_out} MINUTES=${MINUTES:-7} STEPS=${STEPS:-30000} PROBE_EVERY=${PROBE_EVERY:-1500}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$OUT"
D=$(mktemp -d)/data
python3 -m mme.cli synth "$D" --classes 8 --videos-per-class 40 --size 112 --frames 40 --splits 0.6 0.1 0.3 \
  --seed 0 || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
t="timeout $((MINUTES * 60))s"
bank="$t python3 benchmarks/motion_learnability.py bank $D --device auto --views 8 --workers 3"
$bank --steps "$STEPS" --probe-every "$PROBE_EVERY" --out "$D/../mme" >"$OUT/bank_mme.log" 2>&1 &
$bank --steps "$STEPS" --probe-every "$PROBE_EVERY" --out "$D/../pixel" --recipe tiny_cpu_pixel \
  >"$OUT/bank_pixel.log" 2>&1 &
$t python3 benchmarks/motion_learnability.py ideal --device auto --contrast 0.37 --offset 0.83 --steps 200000 \
  --eval-every 500 >"$OUT/ideal.log" 2>&1 &
$t python3 -m mme.cli finetune --config finetune_tiny_cpu "data.list_file=$D/train.txt" "data.root=$D" \
  "task.classes=$D/classes.json" "task.val_list=$D/val.txt" "task.test_list=$D/test.txt" train.device=auto \
  train.batch_size=16 train.steps=20000 augment.mixup_alpha=0.8 augment.cutmix_alpha=1.0 task.eval_every=500 \
  data.num_workers=4 train.ckpt_every=100000 \
  "train.out_dir=$D/../ft" >"$OUT/finetune.log" 2>&1 &
wait
cp "$D/../ft/metrics.jsonl" "$OUT/finetune_metrics.jsonl"
for f in "$OUT"/*.log; do echo "== $f"; grep -v "it/s\|step/s\|s/it" "$f" | tail -25; done
