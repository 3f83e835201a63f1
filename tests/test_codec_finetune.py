"""Fine-tuning a codec (`config.init_from` of the vq_codec trainer): a run starts from another
codec's weights and codebooks; a codec of another model shape is refused with the keys that
differ."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from cv.codec.neural import NeuralCodec
from cv.configs import k600_vq
from cv.lib.errors import ConfigError
from cv.trainers import vq_codec


def _saved_codec(config, path, seed: int) -> NeuralCodec:
  model = vq_codec.build_model(config)
  x = np.zeros((1, config.data.num_frames, config.data.crop, config.data.crop, 3), np.float32)
  variables = model.init({"params": jax.random.PRNGKey(seed), "vq": jax.random.PRNGKey(seed)}, x)
  model_config = config.model.to_dict()
  model_config["channels"] = list(model_config["channels"])
  codec = NeuralCodec(model_config, variables["params"], variables["vq"])
  codec.save(str(path))
  return NeuralCodec.load(str(path))


def test_init_from_starts_with_the_codec_weights_and_codebooks(tmp_path):
  config = k600_vq.get_config("cr=192,smoke")
  source = _saved_codec(config, tmp_path / "c.cvcodec", seed=7)
  config.init_from = str(tmp_path / "c.cvcodec")
  model = vq_codec.build_model(config)
  task = vq_codec.make_task(config, model, [], [])
  state = jax.jit(task.init)(jax.random.PRNGKey(0))
  for ours, theirs in ((state.params, source.params), (state.model_state["vq"], source.vq)):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Without init_from the same seed gives other weights (the test above can fail).
  config.init_from = None
  fresh = jax.jit(vq_codec.make_task(config, model, [], []).init)(jax.random.PRNGKey(0))
  assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                 zip(jax.tree.leaves(fresh.params), jax.tree.leaves(source.params)))


def test_init_from_a_codec_of_another_shape_names_the_keys(tmp_path):
  other = k600_vq.get_config("cr=768,smoke")
  _saved_codec(other, tmp_path / "c768.cvcodec", seed=0)
  config = k600_vq.get_config("cr=192,smoke")
  config.init_from = str(tmp_path / "c768.cvcodec")
  model = vq_codec.build_model(config)
  with pytest.raises(ConfigError, match=r"config.init_from=.*differs from config.model in "
                                        r"\['channels'\]"):
    vq_codec.make_task(config, model, [], [])
  config.init_from = str(tmp_path / "missing.cvcodec")
  with pytest.raises(ConfigError, match="config.init_from: .*missing.cvcodec: codec file not found"):
    vq_codec.make_task(config, model, [], [])
