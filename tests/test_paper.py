"""The `paper` recipes (docs/paper.md) and `config.dtype='bfloat16'` (mixed precision).

The `:paper` configs are checked for the sizes and schedule the paper states, and every one runs
end to end through `cv.main` at `:paper,smoke` (the same code paths at the smoke sizes: random
crops smaller than the short side, flips, frame stride 2; the factors are in each config). The
S3D and codec smoke runs use bfloat16, so mixed precision is exercised through the trainers too.
"""
from __future__ import annotations

import importlib
import json
import math
import os

import numpy as np
import pytest

from cv.configs import common
from tests import helpers

PAPER_ARGS = {
    "k600_vq": "cr=192,paper",
    "k600_s3d": "paper",
    "k600_latent_aug": "aug=crop_flip,paper",
    "coin_framewise": "paper",
    "walkingtours_past_future": "paper",
}


def _config(name: str, arg: str):
  return importlib.import_module(f"cv.configs.{name}").get_config(arg)


def test_every_config_has_a_paper_recipe_and_documents_it():
  configs = sorted(f[:-3] for f in os.listdir(os.path.join(helpers.ROOT, "cv", "configs"))
                   if f.endswith(".py") and f not in ("__init__.py", "common.py"))
  assert sorted(PAPER_ARGS) == configs
  for name, arg in PAPER_ARGS.items():
    mod = importlib.import_module(f"cv.configs.{name}")
    doc = mod.__doc__
    assert f"--config=cv/configs/{name}.py:" in doc and "paper" in doc.split("Smoke size")[0], name
    assert "Paper recipe" in doc and "hardware" in doc.lower(), f"{name}: document the paper run"
    c, demo = mod.get_config(arg), mod.get_config(arg.replace("paper", "").strip(",") or None)
    assert c.trainer == demo.trainer and c.total_steps > demo.total_steps, name
    assert c.batch_size > demo.batch_size, name


def test_paper_clip_sizes_and_schedules():
  s3d = _config("k600_s3d", "paper")
  assert (s3d.data.num_frames, s3d.data.short_side, s3d.data.crop) == (32, 256, 224)
  assert s3d.model.width == 1.0 and s3d.model.mixed_blocks == ()  # the full S3D-G
  assert s3d.codes.random_flip and s3d.eval_views.flip  # flips at train and eval (Table 4)
  assert s3d.optim.schedule == "cosine" and s3d.optim.name.startswith("adam")
  assert s3d.total_steps == math.ceil(135 * 400_000 / s3d.batch_size)  # 135 epochs of K600
  assert _config("k600_s3d", "paper,width=0.5").model.width == 0.5
  assert _config("k600_s3d", None).model.width == 0.25
  coin = _config("coin_framewise", "paper")
  assert coin.total_steps == math.ceil(60 * common.COIN_TRAIN_VIDEOS / coin.batch_size)
  assert (coin.data.num_frames, coin.data.crop, coin.model.width) == (32, 224, 1.0)
  vq = _config("k600_vq", "cr=384,paper")  # combinable with the other arguments
  assert (vq.data.num_frames, vq.data.short_side, vq.data.crop) == (32, 256, 256)
  assert vq.model.num_codebooks == 2 and vq.model.code_dim * vq.model.num_codebooks == 256
  assert vq.data.stride == s3d.data.stride  # codes are made at the downstream frame spacing
  with pytest.raises(ValueError, match="pick one"):
    _config("k600_vq", "paper,footage")
  aug = _config("k600_latent_aug", "aug=crop,paper")
  assert (aug.data.num_frames, aug.data.crop) == (32, 256)
  assert aug.aug.ranges.crop_area == ((224 / 256) ** 2,) * 2  # 224x224 boxes in 256x256 clips
  assert aug.optim.name == "adam" and not aug.optim.kwargs  # no weight decay
  walks = _config("walkingtours_past_future", "paper")
  assert walks.data.num_chunks * 5 == 30 * 60  # 30-minute walks of 5 s chunks
  assert _config("walkingtours_past_future", "paper,hour").data.num_chunks * 5 == 3600


@pytest.mark.parametrize("name", sorted(PAPER_ARGS))
def test_paper_smoke_keeps_the_recipe_code_paths(name):
  """`:paper,smoke` shrinks sizes but keeps what makes the recipe differ from the demo."""
  c = _config(name, PAPER_ARGS[name] + ",smoke")
  paper = _config(name, PAPER_ARGS[name])
  assert c.total_steps <= 12 and c.batch_size <= 8
  if "stride" in paper.data and paper.data.get("num_frames"):
    assert c.data.stride == paper.data.stride
  if name in ("k600_s3d", "coin_framewise"):
    assert c.data.crop < c.data.short_side  # random crops inside the frame, as 224 of 256
  if name == "k600_s3d":
    assert c.codes.random_flip and c.eval_views.flip


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_s3d_mixed_precision_trains(dtype):
  """S3D-G at smoke size: float32 params, float32 logits, finite and falling loss on one batch."""
  import jax
  import jax.numpy as jnp
  import optax
  from cv.models.s3d import S3D
  model = S3D(num_classes=3, width=0.125, mixed_blocks=common.S3D_SMOKE_BLOCKS, dropout=0.0,
              dtype=jnp.dtype(dtype))
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 4, 16, 16, 3), minval=-1.0, maxval=1.0)
  y = jnp.array([0, 1, 2, 1])
  variables = model.init(jax.random.PRNGKey(1), x)
  params, stats = variables["params"], variables["batch_stats"]
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, stats, opt):
    def loss_fn(p):
      logits, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                mutable=["batch_stats"])
      assert logits.dtype == jnp.float32
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), new["batch_stats"], opt, loss

  losses = []
  for _ in range(6):
    params, stats, opt, loss = step(params, stats, opt)
    losses.append(float(loss))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_codec_mixed_precision_trains(dtype):
  """The VQ-VAE at smoke size: float32 params and reconstructions, finite, falling MSE."""
  import jax
  import jax.numpy as jnp
  import optax
  from cv.models.vqvae import VQVAE
  model = VQVAE(channels=(8, 16), num_entries=16, code_dim=4, enc_res_blocks=1,
                dec_res_blocks=1, dtype=jnp.dtype(dtype))
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 2, 16, 16, 3))
  variables = model.init({"params": jax.random.PRNGKey(1), "vq": jax.random.PRNGKey(2)}, x)
  params, vq = variables["params"], variables["vq"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, vq, opt, rng):
    def loss_fn(p):
      (recon, out), new = model.apply({"params": p, "vq": vq}, x, train=True, rngs={"vq": rng},
                                      mutable=["vq"])
      assert recon.dtype == jnp.float32
      mse = jnp.mean((recon - x) ** 2)
      return mse + out["loss"], (new["vq"], mse)
    (_, (vq, mse)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), vq, opt, mse

  mses = []
  for i in range(8):
    params, vq, opt, mse = step(params, vq, opt, jax.random.PRNGKey(10 + i))
    mses.append(float(mse))
  assert all(np.isfinite(mses)) and mses[-1] < mses[0], mses
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


def test_unknown_dtype_is_a_config_error():
  from cv.configs import k600_s3d
  from cv.lib import precision
  from cv.lib.errors import ConfigError
  c = k600_s3d.get_config("smoke")
  c.dtype = "float16"
  with pytest.raises(ConfigError, match="config.dtype='float16'"):
    precision.compute_dtype(c)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_ARGS))
def test_paper_smoke_runs_end_to_end(tmp_path, name):
  """Each `:paper,smoke` config trains and evaluates through cv.main (S3D and codec in bf16)."""
  overrides = ["--config.total_steps=2", "--config.log_every=1", "--config.ckpt_every=2",
               "--config.eval_every=2"]
  if name in ("k600_s3d", "k600_vq"):
    overrides.append("--config.dtype=bfloat16")
  wd = str(tmp_path / name)
  r = helpers.run_main(f"cv/configs/{name}.py:{PAPER_ARGS[name]},smoke", wd, *overrides)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(wd, "metrics.json")) as f:
    m = json.load(f)
  assert m["step"] == 2
  losses = {k: v for k, v in m.items() if k.startswith("train/loss")}
  assert losses and all(np.isfinite(v) for v in losses.values()), m
  assert any(k.startswith("eval/") for k in m), m


def _bench(tmp_path, *args: str) -> tuple[str, dict]:
  """`tools/bench.py *args --json` in a fresh process, with the real-video cache under .cache."""
  import subprocess
  import sys
  out = tmp_path / "out.json"
  env = helpers.main_env()
  env.setdefault("CV_BENCH_DIR", os.path.join(helpers.ROOT, ".cache", "test_bench"))
  r = subprocess.run([sys.executable, os.path.join(helpers.ROOT, "tools", "bench.py"), *args,
                      "--json", str(out)], cwd=str(tmp_path), env=env, capture_output=True,
                     text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout, json.loads(out.read_text())


def test_codec_bench_accepts_paper_size():
  from tools import bench
  args = bench.build_parser().parse_args(["codec", "--size", "paper"])
  assert args.size == 256 and args.frames == 32
  assert bench.build_parser().parse_args(["codec", "--size", "64"]).size == 64
  with pytest.raises(SystemExit):
    bench.build_parser().parse_args(["codec", "--size", "huge"])


@pytest.mark.slow
def test_loader_paper_size_reads_real_video(tmp_path):
  """--size paper: RGB decoded from the packaged real clips (>= 256 px) vs their codes, over
  256 records (so Grain's shuffle is not what is timed), with CPU-time figures."""
  stdout, report = _bench(tmp_path, "loader", "--size", "paper", "--smoke", "--batch", "4",
                          "--batches", "2", "--warmup", "1")
  f = report["figures"]
  assert f["size"] == "paper" and "bikes" in f["source"] and "bigbuckbunny" in f["source"]
  assert f["rgb/records"] == f["codes/records"] == 256
  assert f["clip"] == "8x32x32" and f["short_side"] == 40 and f["stride"] == 2
  for name in ("rgb", "codes"):
    assert f[f"{name}/clips_per_cpu_s"] > 0 and f[f"{name}/batches_timed"] >= 2
  for key in ("codes_vs_rgb_clips_per_s_ratio", "codes_vs_rgb_clips_per_cpu_s_ratio"):
    assert 0 < f[key] < math.inf
  assert "codes vs rgb clips per CPU-second" in stdout


@pytest.mark.slow
def test_cost_figure_compiles_abstract_steps(tmp_path):
  """`cost` compiles train steps on abstract inputs and projects accelerator speed from FLOPs."""
  from cv.benchmarks import cost
  stdout, report = _bench(tmp_path, "cost", "--smoke", "--devices", "2",
                          "--runs", "vq,past_future")
  f = report["figures"]
  for name in ("vq", "past_future"):
    p = name + "/"
    assert f[p + "flops"] > 0 and f[p + "params_bytes"] > 0 and f[p + "opt_state_bytes"] > 0
    assert f[p + "peak_bytes"] >= f[p + "temp_bytes"] > 0
    assert f[p + "device_batch"] == max(1, f[p + "global_batch"] // 2)
    for acc, peak in cost.PEAKS:
      assert f[f"{p}{acc}/steps_per_s"] == pytest.approx(0.4 * peak / f[p + "flops"])
  assert f["vq/model_state_bytes"] > 0  # the VQ codebooks and their EMA statistics
  assert f["past_future/loop_flops_added"] > 0  # XLA counts the chunk loop's body once
  assert "steps/s @40% H100_SXM" in stdout


@pytest.mark.slow
def test_augment_flops_with_the_paper_codec(tmp_path):
  """`augment --measure flops` compiles every route on abstract inputs (runs nothing), here with
  the paper codec's architecture, whose decoder dominates the pixel route."""
  stdout, report = _bench(tmp_path, "augment", "--size", "paper", "--smoke", "--batch", "2",
                          "--codec", "paper", "--measure", "flops")
  f = report["figures"]
  assert f["codec"] == "paper" and f["codec_weights"] == "abstract"
  assert f["latent_shape"].endswith("x256")  # the paper codec's 256 latent channels
  for name in ("latent_aug", "pixel_route", "decode", "encode"):
    assert f[f"{name}/gflops"] > 0 and f"{name}/s_mean" not in f
  assert f["pixel_route/gflops"] >= f["decode/gflops"]
  assert f["pixel_route_vs_latent_aug_flops_ratio"] > 1
  assert "GFLOP/batch" in stdout
