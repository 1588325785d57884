#!/usr/bin/env bash
# Reproduce models/posecnn_tabletop (the shipped PoseCNN of the demo world) in one command:
#   bash scripts/train_posecnn_tabletop.sh OUT_DIR        (or: make posecnn-model OUT=OUT_DIR)
# The training data, then the two training stages of inerf_ros/posecnn/RESULTS.md (step-based
# schedules; about 1.3 h on one idle core). Nothing is downloaded.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
scene=${SCENE_DIR:-data_cache/posecnn_tabletop}
source scripts/env.sh
if [ ! -f "$scene/posecnn_test/scene_camera.json" ]; then
    inerf-ros make-scene --out "$scene" --splits posecnn_train posecnn_test \
        --posecnn-train-views 1000 --posecnn-test-views 100
fi
# Stage 1: a fresh network.
inerf-ros train-posecnn --scene "$scene" --out "$out" --max-steps 1800 --max-minutes 120 \
    --batch-size 8 --learning-rate 3e-3 --threads 1
# Stage 2: continued from stage 1's weights, rotation loss weighted up, other crops (seed 1).
inerf-ros train-posecnn --scene "$scene" --out "$out" --resume --max-steps 15000 --max-minutes 240 \
    --batch-size 8 --learning-rate 3e-3 --pose-weight 20 --seed 1 --threads 1
inerf-ros eval-posecnn --model "$out" --scene "$scene" --threads 1
