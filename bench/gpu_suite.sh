#!/usr/bin/env bash
# The GPU suite: one script, one JSON file, under 8 minutes on one GPU.
#
#   bench/gpu_suite.sh [OUT.json]            on a GPU box (LEGO=/path/to/lego_official, default
#                                            .gpu/lego_official, then ../shared/data/lego_official)
#   DRY_RUN=1 bench/gpu_suite.sh OUT.json    CPU dry run at toy sizes on a generated scene (a slow test)
#   bench/gpu_prepare.sh                     here, before a device run: copies lego_official into
#                                            .gpu/ and the missing wheels into .whl/ (both git-ignored)
#
# Needs: python with torch, numpy, imageio, opencv, scikit-image, tensorboard, hydra-core,
# omegaconf (and plyfile for meshes); it checks them first and names what is missing.
# 1. lego_fast through train.py on lego_official (the papers' protocol: the 100 training views,
#    PSNR / SSIM on the 25 official test views) for LEGO_MINUTES (default 5) of training time
#    (trainer.max_minutes; evals excluded), the test split scored after 1 and 2 minutes
#    (trainer.test_minutes) and at the end: JSON keys test_psnr / test_ssim, by minute.
# 2. seconds per whole 800x800 view of that run (bench/render_speed.py: as shipped and dense).
# 3. steps/s, samples/s, data-wait fraction and peak GPU memory of short train.py runs
#    (bench/train_speed.py): nerf (lego), instant (lego_fast), neus and neus_instant (dtu /
#    dtu_fast with DTU=path; else on lego with their blender presets), then where a lego_fast step
#    waits for the GPU (bench/sync_points.py).
# 4. the training step (bench/profile_step.py, lego 200 px): samples/s, host reads and aten calls
#    per step, eager fp32, bf16 MLPs, then torch.compile of the field (last: it may take a while).
# The JSON is rewritten after every part, so a run stopped early still leaves what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu_suite.json}
TMP=${SUITE_TMP:-$(mktemp -d)}
mkdir -p "$TMP"
[[ -n "${SUITE_TMP:-}" ]] || trap 'rm -rf "$TMP"' EXIT

"$PY" - <<'PYEOF'
import importlib.util, sys
need = ["torch", "numpy", "imageio", "cv2", "skimage", "tensorboard", "hydra", "omegaconf"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_suite: missing python packages: {', '.join(missing)} (bench/gpu_prepare.sh makes wheels)")
PYEOF

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  DEVICE=cpu
  LEGO="$TMP/scene"
  [[ -d "$LEGO" ]] || "$PY" -c "from nerflite.data.synthetic import generate; generate('blender', '$LEGO', views=9, size=16)"
  DTU="$TMP/neus"
  [[ -d "$DTU" ]] || "$PY" -c "from nerflite.data.synthetic import generate; generate('neus', '$DTU', views=6, size=16)"
  MINUTES=${LEGO_MINUTES:-0.1}
  MARKS="[0.02,0.05]"
  STEP=(--size 8 --rays 64 --budget 4096 --warm 2 --steps 1 --tiny --threads 1)
  STEP_COMPILE=0
  STEPS=3
  TINY=(model.chunk=256 datamanager.rays_per_batch=64 datamanager.workers=0 trainer.device=cpu dataset.downscale=1)
  NERF_TINY=(model.netdepth=2 model.netwidth=16 model.netdepth_fine=2 model.netwidth_fine=16 model.skips=[] model.n_samples=8 model.n_importance=8)
  INSTANT_TINY=(model.log2_table_size=12 model.max_resolution=64 model.grid_resolution=16 model.steps_per_diagonal=32)
  NEUS_TINY=(model.sdf_layers=2 model.sdf_width=16 model.sdf_skips=[] model.feature_dim=16 model.color_layers=1 model.color_width=16 model.n_samples=8 model.n_importance=8 model.up_sample_steps=1 model.n_outside=0 trainer.mesh_at_eval=false)
  LEGO_RUN=("${TINY[@]}" "${INSTANT_TINY[@]}" model.sample_budget=4096 trainer.cpu_threads=1)
else
  DEVICE=cuda
  LEGO=${LEGO:-.gpu/lego_official}
  [[ -d "$LEGO" ]] || LEGO=../shared/data/lego_official
  DTU=${DTU:-../shared/data/dtu_scan65}
  MINUTES=${LEGO_MINUTES:-5}
  MARKS="[1,2]"
  STEP=(--size 200 --warm 150 --steps 10)
  STEP_COMPILE=1
  STEPS=${SPEED_STEPS:-200}
  TINY=(dataset.downscale=2)
  NERF_TINY=() INSTANT_TINY=() NEUS_TINY=() LEGO_RUN=()
fi
if [[ -d "$DTU" ]]; then  # neus / neus_instant on DTU (its recipes), else on lego (their blender presets)
  NEUS_RUN="experiment=dtu dataset.path=$DTU" NEUS_FAST_RUN="experiment=dtu_fast dataset.path=$DTU"
else
  NEUS_RUN="model=neus dataset.path=$LEGO" NEUS_FAST_RUN="model=neus_instant dataset.path=$LEGO"
fi

assemble() {  # whatever parts exist so far -> $OUT
  "$PY" - "$TMP" "$OUT" "$DEVICE" "$MINUTES" <<'PYEOF'
import json, os, sys
tmp, out_path, device, minutes = sys.argv[1:5]
def load(name):
    p = f"{tmp}/{name}.json"
    try:
        return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else None
    except ValueError:
        return {"failed": open(p).read()[-400:]}
out = {"device": device, "lego_fast_minutes": float(minutes)}
try:
    import torch
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    out["torch"] = torch.__version__
except Exception:
    pass
rows = load("lego_test_time")
if rows:
    out["test_psnr"] = {f"{r['minutes']:.2f}": round(r["psnr"], 3) for r in rows}
    out["test_ssim"] = {f"{r['minutes']:.2f}": round(r["ssim"], 4) for r in rows}
    out["test_steps"] = {f"{r['minutes']:.2f}": r["step"] for r in rows}
for key, name in (("lego_fast_train", "lego_scalars"), ("render", "render"), ("speed", "speed"), ("syncs", "syncs")):
    part = load(name)
    if part is not None:
        out[key] = part.get("runs", part) if key == "speed" else part
step = {k: load(f"step_{k}") for k in ("eager", "bf16", "compile")}
out["step"] = {k: v for k, v in step.items() if v is not None}
open(out_path, "w").write(json.dumps(out, indent=1))
print(json.dumps(out))
PYEOF
}

echo "== 1. lego_fast through train.py, $MINUTES min of training, test split at $MARKS and the end ($DEVICE)" >&2
"$PY" train.py experiment=lego_fast "dataset.path=$LEGO" "output_root=$TMP/runs" name=lego_fast \
  "trainer.max_minutes=$MINUTES" "trainer.test_minutes=$MARKS" trainer.eval_every=0 \
  trainer.ckpt_every=100000 trainer.progress=false trainer.final_eval_images=1 "${LEGO_RUN[@]}" >&2 \
  || echo "gpu_suite: the lego_fast run failed" >&2
RUN=$(ls -d "$TMP"/runs/lego_fast/*/ 2>/dev/null | tail -n 1 || true)
if [[ -n "$RUN" && -f "$RUN/metrics_test_time.json" ]]; then
  cp "$RUN/metrics_test_time.json" "$TMP/lego_test_time.json"
  "$PY" bench/train_speed.py --scalars "$RUN" > "$TMP/lego_scalars.json" || true
  assemble >/dev/null
  echo "== 2. seconds per whole view ($DEVICE)" >&2
  "$PY" bench/render_speed.py --run "$RUN" --views 4 --repeats 3 --device "$DEVICE" | tail -n 1 > "$TMP/render.json" || true
  assemble >/dev/null
fi

echo "== 3. steps/s, samples/s, GPU memory, data wait ($DEVICE)" >&2
"$PY" bench/train_speed.py --steps "$STEPS" --runs \
  "nerf=experiment=lego dataset.path=$LEGO ${TINY[*]} ${NERF_TINY[*]}" \
  "instant=experiment=lego_fast dataset.path=$LEGO ${TINY[*]} ${INSTANT_TINY[*]}" \
  "neus=$NEUS_RUN ${TINY[*]} ${NEUS_TINY[*]}" \
  "neus_instant=$NEUS_FAST_RUN ${TINY[*]}" \
  | tail -n 1 > "$TMP/speed.json" || true
if [[ "$DEVICE" == "cuda" ]]; then
  "$PY" bench/sync_points.py --steps 5 --warm 50 -- experiment=lego_fast "dataset.path=$LEGO" | tail -n 1 > "$TMP/syncs.json" || true
fi
assemble >/dev/null

echo "== 4. the training step: eager, bf16, compiled ($DEVICE)" >&2
"$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" | tail -n 1 > "$TMP/step_eager.json" || true
"$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" --amp bf16 | tail -n 1 > "$TMP/step_bf16.json" || true
assemble >/dev/null
if [[ "$STEP_COMPILE" == "1" ]]; then
  timeout "${COMPILE_TIMEOUT:-150}" "$PY" bench/profile_step.py --data "$LEGO" --device "$DEVICE" "${STEP[@]}" --compile \
    | tail -n 1 > "$TMP/step_compile.json" || echo '{"failed": true}' > "$TMP/step_compile.json"
else
  echo '{"skipped": "dry run"}' > "$TMP/step_compile.json"
fi
assemble
