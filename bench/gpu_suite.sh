#!/usr/bin/env bash
# The GPU suite: one script, one JSON file, under 8 minutes on one GPU.
#
#   bench/gpu_suite.sh [OUT.json]            on a GPU box (LEGO=/path/to/lego_official, default
#                                            .gpu/lego_official, then ../shared/data/lego_official)
#   DRY_RUN=1 bench/gpu_suite.sh OUT.json    CPU dry run at toy sizes on a generated scene (a slow test)
#   bench/gpu_prepare.sh                     here, before a device run: copies lego_official into
#                                            .gpu/ and the missing wheels into .whl/ (both git-ignored)
#
# 1. lego at 800x800, model instant (lego_fast's model and sampler: whole rays, 2^18 samples per
#    step): trains LEGO_MINUTES (default 3) on the 100 training views, PSNR on the official test
#    views (lego_official: the papers' protocol; on a train-only folder every 8th view) at evenly
#    spaced times, the grid's occupied fraction and samples per ray at each, and whole-image rays/s
#    with and without early stop + block marching (bench/time_to_psnr.py). An 800x800 view takes
#    640000 / render_rays_per_s seconds (target: 0.25 s).
# 2. the training step (bench/profile_step.py, lego 200 px): samples/s, host reads and aten calls
#    per step, eager fp32, bf16 MLPs, and torch.compile of the field.
# 3. steps/s, GPU memory and data-wait fraction of short real train.py runs (bench/train_speed.py)
#    for nerf (lego), instant (lego_fast), neus and neus_instant (dtu / dtu_fast, on lego when DTU
#    is absent); a model that is not registered is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu_suite.json}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  DEVICE=cpu
  LEGO="$TMP/scene"
  "$PY" -c "from nerflite.data.synthetic import generate; generate('blender', '$LEGO', views=9, size=16)"
  DTU="$TMP/neus"
  "$PY" -c "from nerflite.data.synthetic import generate; generate('neus', '$DTU', views=6, size=16)"
  CURVE=(--minutes 0.05 --size 8 --evals 2 --eval-views 1 --threads 1)
  STEP=(--size 8 --rays 64 --budget 4096 --warm 2 --steps 1 --tiny --threads 1)
  STEP_COMPILE=0
  STEPS=3
  TINY=(model.chunk=256 datamanager.rays_per_batch=64 datamanager.workers=0 trainer.device=cpu dataset.downscale=1)
  NERF_TINY=(model.netdepth=2 model.netwidth=16 model.netdepth_fine=2 model.netwidth_fine=16 model.skips=[] model.n_samples=8 model.n_importance=8)
  INSTANT_TINY=(model.log2_table_size=12 model.max_resolution=64 model.grid_resolution=16 model.steps_per_diagonal=32)
  NEUS_TINY=(model.sdf_layers=2 model.sdf_width=16 model.sdf_skips=[] model.feature_dim=16 model.color_layers=1 model.color_width=16 model.n_samples=8 model.n_importance=8 model.up_sample_steps=1 model.n_outside=0 trainer.mesh_at_eval=false)
else
  DEVICE=cuda
  LEGO=${LEGO:-.gpu/lego_official}
  [[ -d "$LEGO" ]] || LEGO=../shared/data/lego_official
  DTU=${DTU:-../shared/data/dtu_scan65}
  CURVE=(--minutes "${LEGO_MINUTES:-3}" --size 800 --evals 3 --eval-views 8)
  STEP=(--size 200 --warm 300 --steps 20)
  STEP_COMPILE=1
  STEPS=${SPEED_STEPS:-200}
  TINY=(dataset.downscale=2)
  NERF_TINY=() INSTANT_TINY=() NEUS_TINY=()
fi
NEUS_DATA=$DTU
[[ -d "$NEUS_DATA" ]] || NEUS_DATA=$LEGO

echo "== lego instant, held-out PSNR against time ($DEVICE)" >&2
"$PY" bench/time_to_psnr.py --data "$LEGO" --models instant --device "$DEVICE" --out "$TMP/curve" "${CURVE[@]}" \
  | tail -n 1 > "$TMP/curve.json"

echo "== the training step: eager, bf16, compiled ($DEVICE)" >&2
"$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" | tail -n 1 > "$TMP/step_eager.json"
"$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" --amp bf16 | tail -n 1 > "$TMP/step_bf16.json"
if [[ "$STEP_COMPILE" == "1" ]]; then
  "$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" --compile | tail -n 1 \
    > "$TMP/step_compile.json" || echo '{"failed": true}' > "$TMP/step_compile.json"
else
  echo '{"skipped": "dry run"}' > "$TMP/step_compile.json"
fi

echo "== steps/s, GPU memory, data wait ($DEVICE)" >&2
"$PY" bench/train_speed.py --steps "$STEPS" --runs \
  "nerf=experiment=lego dataset.path=$LEGO ${TINY[*]} ${NERF_TINY[*]}" \
  "instant=experiment=lego_fast dataset.path=$LEGO ${TINY[*]} ${INSTANT_TINY[*]}" \
  "neus=experiment=dtu dataset.path=$NEUS_DATA ${TINY[*]} ${NEUS_TINY[*]}" \
  "neus_instant=experiment=dtu_fast model=neus_instant dataset.path=$NEUS_DATA ${TINY[*]}" \
  | tail -n 1 > "$TMP/speed.json"

"$PY" - "$TMP" "$OUT" "$DEVICE" <<'PYEOF'
import json, sys
tmp = sys.argv[1]
load = lambda name: json.load(open(f"{tmp}/{name}.json"))  # noqa: E731
curve, speed = load("curve"), load("speed")
lego = curve["models"]["instant"]
size = curve["size"]
lego["render_s_per_view"] = round(size * size / lego["render_rays_per_s"], 4)
lego["render_s_per_view_dense"] = round(size * size / lego["render_rays_per_s_dense"], 4)
step = {k: load(f"step_{k}") for k in ("eager", "bf16", "compile")}
out = {"device": sys.argv[3], "lego_instant": lego, "size": size, "step": step, "speed": speed["runs"]}
open(sys.argv[2], "w").write(json.dumps(out, indent=1))
print(json.dumps(out))
PYEOF
