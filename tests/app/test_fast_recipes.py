"""CPU proxies for scale: each ``*_fast`` recipe, unchanged except for image size, device and step
count, must learn its real scene. A recipe that fails only at full size (the sampler's budget, the
grid's schedule) then shows here without a GPU.

Each test runs ``train()`` exactly as ``train.py`` does with ONLY ``dataset.path``,
``dataset.downscale``, ``trainer.device=cpu`` and ``trainer.steps`` changed (plus bookkeeping that
does not touch learning: where the run goes, no periodic evals or checkpoints, no progress bar), and
reads the test split's PSNR the run writes (``metrics_test.json``). The learning-rate schedule
follows ``trainer.steps``, as it does for any run.

Measured 2026-12-04 on the 2-core CPU box while three other trainings ran (wall times are those of
that loaded box; an idle one takes about half):

| recipe | scene, size | steps | test PSNR | best constant colour | bar | wall |
| --- | --- | --- | --- | --- | --- | --- |
| lego_fast | lego, 100x100, 13 held-out | 200 | 22.30 dB (10.8 with per-ray cuts) | 10.44 dB | 22.0 | 22 min |
| dnerf_fast | dnerf_standup, 100x100, 20 test | 200 | 23.51 dB | 14.17 dB | 21.5 | 34 min |
| fern_fast | fern, 126x94, 3 held-out | 200 | 16.99 dB (14.05 after 100) | 12.64 dB | 15.5 | 30 min |
| dtu_fast | dtu_scan65, 100x75, 7 held-out | 200 | 12.60; masked 21.64 dB | 10.79 dB | 11.8; 19.5 | 37 min |

"Best constant colour" is an oracle (the held-out pixels' own mean): a recipe whose sampling broke
stays near it. DTU has no background model, so its unmasked figure mostly scores the background;
the masked one (the object) is the one that says NeuS learned a surface.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from nerflite.engine.trainer import train
from tests.app.helpers import compose_config

BOOKKEEPING = [  # where the run goes and what it reports; nothing here changes what it learns
    "trainer.eval_every=0", "trainer.ckpt_every=100000", "trainer.progress=false", "trainer.final_eval_images=1",
]

CHANGED = {  # the only keys a proxy may change: size, device, steps and the bookkeeping above
    "dataset": {"path", "downscale"},
    "trainer": {"device", "steps", "eval_every", "ckpt_every", "progress", "final_eval_images"},
}

RECIPES = {  # experiment: (shared dataset, downscale, steps, {metric: bar in dB})
    "lego_fast": ("lego", 8, 200, {"psnr": 22.0}),
    "dnerf_fast": ("dnerf_standup", 8, 200, {"psnr": 21.5}),
    "fern_fast": ("fern", 32, 200, {"psnr": 15.5}),
    "dtu_fast": ("dtu_scan65", 16, 200, {"psnr": 11.8, "psnr_masked": 19.5}),
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_the_fast_recipe_learns_at_cpu_size(experiment, shared_data, tmp_path):
    data, downscale, steps, bars = RECIPES[experiment]
    cfg = compose_config([
        f"experiment={experiment}", f"dataset.path={shared_data(data)}", f"dataset.downscale={downscale}",
        "trainer.device=cpu", f"trainer.steps={steps}", f"output_root={tmp_path}", *BOOKKEEPING,
    ])  # fmt: skip
    recipe = compose_config([f"experiment={experiment}"])
    for section in ("dataset", "model", "datamanager", "trainer"):  # the recipe itself: model, sampler, schedule
        ours, theirs = (OmegaConf.to_container(c[section]) for c in (cfg, recipe))
        changed = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        assert changed <= CHANGED.get(section, set()), (section, changed)
    result = train(cfg)
    assert result.step == steps and result.test, "the run must score its test split"
    got = ", ".join(f"{k} {result.test.get(k, float('nan')):.2f} dB" for k in bars)
    msg = f"{experiment} at 1/{downscale} size, {steps} CPU steps: test split {got}"
    print(msg)
    assert all(result.test.get(k, float("-inf")) >= bar for k, bar in bars.items()), msg
