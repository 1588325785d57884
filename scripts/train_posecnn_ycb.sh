#!/usr/bin/env bash
# Train models/posecnn_ycb (PoseCNN for the 10 YCB objects of ycb_sim) in one command:
#   bash scripts/train_posecnn_ycb.sh OUT_DIR        (or: make posecnn-ycb-model OUT=OUT_DIR)
# NEEDS the ycb_sim mesh folder (meshes/*.msh + textures/*.png; third-party, not shipped), by default
# at ../shared/data/ycb_sim beside the checkout: set MESH_DIR=/path/to/ycb_sim to use another place.
# Steps: domain-randomized training frames (make-posecnn-data), one training run started from the
# shipped tabletop model's class-independent weights (--init-from), then eval-posecnn on the held-out
# randomized split and on the props_like scene's own held-out split. About 70 min on one idle core
# (data ~12 min, training <= 55 min, evaluation ~5 min). Nothing is downloaded.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR   (env: MESH_DIR=path/to/ycb_sim, default ../shared/data/ycb_sim)}
mesh_dir=${MESH_DIR:-../shared/data/ycb_sim}
data=${DATA_DIR:-data_cache/posecnn_ycb}
props=${PROPS_DIR:-data_cache/posecnn_props_test}
if [ ! -d "$mesh_dir/meshes" ] || [ ! -d "$mesh_dir/textures" ]; then
    echo "error: the ycb_sim mesh folder is missing: expected $mesh_dir/meshes and $mesh_dir/textures" >&2
    echo "       (set MESH_DIR=/path/to/ycb_sim; it is third-party and does not ship with inerf_ros)" >&2
    exit 2
fi
source scripts/env.sh
if [ ! -f "$data/posecnn_test/scene_camera.json" ]; then
    inerf-ros make-posecnn-data --config config/scenes/props_like.yaml --mesh-dir "$mesh_dir" --out "$data" \
        --train-views 2400 --test-views 100 --no-progress
fi
inerf-ros train-posecnn --scene "$data" --out "$out" --init-from models/posecnn_tabletop \
    --camera-effects --background-share 0.3 --max-steps 9000 --max-minutes 55 \
    --batch-size 8 --learning-rate 3e-3 --pose-weight 20 --threads 1
if [ ! -f "$props/posecnn_test/scene_camera.json" ]; then
    inerf-ros make-scene --config config/scenes/props_like.yaml --mesh-dir "$mesh_dir" --out "$props" \
        --splits posecnn_test --posecnn-test-views 100 --posecnn-scale 0.5 --no-progress
fi
inerf-ros eval-posecnn --model "$out" --scene "$data" --threads 1 --out "$out/eval_randomized.json"
inerf-ros eval-posecnn --model "$out" --scene "$props" --threads 1 --out "$out/eval_props_like.json"
