"""DeepMind's released checkpoints and compressed Kinetics-600, imported safely (docs/deepmind.md).

Their files (Wiles et al. 2022, github.com/google-deepmind/compressed_vision) are raw pickles of
`{params, state, config, augm_params, augm_state, augm_config}` (Haiku parameter / state dicts and
ml_collections configs) and TFRecords of uint8 codes. This module

* reads the pickles with a **restricted unpickler** (`safe_load`): only numpy arrays, scalars and
  dtypes, ml_collections ConfigDict / FieldReference (rebuilt as inert stand-ins, then plain
  dicts), pickled JAX arrays (rebuilt as numpy without importing JAX's pickle hooks) and plain
  containers may appear; any other global (`os.system`, `builtins.eval`, ...) is refused with a
  message naming the file and the global, before anything from the file runs;
* converts the Haiku codec (`CompressionConvEncoderDecoder`) into a `NeuralCodec` of
  `cv.models.dm_codec.DMCodec` (`codec_from_checkpoint`), and the flip network
  (`NeuralTransformation`) into `cv.models.dm_aug.DMAugNet` parameters (`augmenter_from_checkpoint`);
* turns their TFRecord shards into this project's code shards + manifest
  (`convert_tfrecords`), checking every record's code shape against the codec.

Bad input (truncated pickle, missing key, parameters that do not fit the config) raises
`DeepMindFileError`, whose message names the file and the key.
"""
from __future__ import annotations

import builtins
import glob
import io
import json
import operator
import os
import pickle
import re
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from cv.codec.neural import NeuralCodec
from cv.data import code_shards, dm_tfrecords
from cv.data.sources import DatasetError
from cv.lib import fileio
from cv.lib.errors import UserError
from cv.models import dm_aug, dm_codec

CHECKPOINT_KEYS = ("params", "state", "config", "augm_params", "augm_state", "augm_config")
CODEC_MODULE = "CompressionConvEncoderDecoder"
MODEL_KWARGS = "config.experiment_kwargs.config.model_kwargs"
AUGMENTATION = "augm_config.experiment_kwargs.config.augmentation"
# NeuralTransformation's constructor arguments and defaults (their code's defaults); the ones marked unused
# there change nothing.
AUG_DEFAULTS = dict(channels=(64, 64, 64), hidden_size=128, num_hidden_layers=2, num_heads=4,
                    num_attention_heads=1, key_size=128, value_size=128, intermediate_size=128,
                    lambda_v=1e-4, output_video_shape=None)


class DeepMindFileError(UserError, ValueError):
  """A DeepMind file that cannot be imported (the message names the file, the key and the fix)."""


# ------------------------------------------------------------------------------------------------
# Restricted unpickling.


class _ConfigStub:
  """Inert stand-in for ml_collections' ConfigDict / FrozenConfigDict: keeps the pickled state."""

  def __init__(self, *args: Any, **kwargs: Any):
    self.state = {"_fields": dict(args[0]) if args and isinstance(args[0], dict) else {}}
    self.state["_fields"].update(kwargs)

  def __setstate__(self, state: Any) -> None:
    self.state = state if isinstance(state, dict) else {"_fields": {}}


class _FieldStub:
  """Inert stand-in for ml_collections' FieldReference (value + lazy ops, resolved by `plain`)."""

  def __init__(self, *args: Any, **kwargs: Any):
    self.state = {"_value": args[0] if args else kwargs.get("default"), "_ops": []}

  def __setstate__(self, state: Any) -> None:
    self.state = state if isinstance(state, dict) else {}


class _OpStub(tuple):
  """ml_collections' `_Op(fn, args)` namedtuple."""

  def __new__(cls, fn: Any = None, args: Any = ()):
    return super().__new__(cls, (fn, tuple(args or ())))


# Functions a FieldReference may apply lazily (ml_collections' operator overloads).
_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "abs", "and_",
              "or_", "xor", "not_", "eq", "ne", "lt", "le", "gt", "ge", "invert", "pos")
_OPERATOR_FUNCS = tuple(getattr(operator, name) for name in _OPERATORS)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
  """`_codecs.encode` as protocol-2 pickles use it for bytes, limited to latin-1."""
  if encoding.lower().replace("_", "-") not in ("latin1", "latin-1") or not isinstance(text, str):
    raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
  return text.encode("latin1")


def _numpy_from_jax(fun: Callable, args: tuple, arr_state: Any, aval_state: Any = None
                    ) -> np.ndarray:
  """JAX's pickle hook for arrays (`reconstruct_device_array` / `_reconstruct_array`): the value
  is a pickled numpy array (`fun`, itself checked by the allow-list); rebuilt here as numpy."""
  del aval_state
  arr = fun(*args)
  if not isinstance(arr, np.ndarray):
    raise pickle.UnpicklingError("a pickled JAX array whose value is not a numpy array")
  arr.__setstate__(arr_state)
  return arr


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
  """copyreg._reconstructor (protocol 0/1 objects), for the ml_collections stand-ins only."""
  if cls not in (_ConfigStub, _FieldStub) or base is not object or state is not None:
    raise pickle.UnpicklingError("copyreg._reconstructor of a non-config class")
  return object.__new__(cls)


def _allowed() -> dict[tuple[str, str], Any]:
  np_core = np._core  # pylint: disable=protected-access
  table: dict[tuple[str, str], Any] = {}
  for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    table[(mod, "_reconstruct")] = np_core.multiarray._reconstruct  # pylint: disable=protected-access
    table[(mod, "scalar")] = np_core.multiarray.scalar
  for mod in ("numpy.core.numeric", "numpy._core.numeric"):
    table[(mod, "_frombuffer")] = np_core.numeric._frombuffer  # pylint: disable=protected-access
  table[("numpy", "ndarray")] = np.ndarray
  table[("numpy", "dtype")] = np.dtype
  for name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "complex64", "complex128", "str_", "bytes_"):
    table[("numpy", name)] = getattr(np, name)
  for name in ("int", "float", "complex", "bool", "str", "tuple", "list", "dict", "set",
               "frozenset"):
    table[("builtins", name)] = getattr(builtins, name)
  table[("builtins", "object")] = object  # the base class protocol-0/1 objects name
  table[("builtins", "NoneType")] = type(None)
  table[("types", "NoneType")] = type(None)
  table[("builtins", "long")] = int  # Python 2 names (pickles of protocol < 3)
  table[("builtins", "unicode")] = str
  table[("_codecs", "encode")] = _latin1
  table[("copyreg", "_reconstructor")] = _reconstructor
  for name in _OPERATORS:
    table[("_operator", name)] = table[("operator", name)] = getattr(operator, name)
  for mod in ("ml_collections.config_dict.config_dict", "ml_collections.config_dict",
              "ml_collections"):
    table[(mod, "ConfigDict")] = table[(mod, "FrozenConfigDict")] = _ConfigStub
    table[(mod, "FieldReference")] = _FieldStub
    table[(mod, "_Op")] = _OpStub
  table[("jax._src.device_array", "reconstruct_device_array")] = _numpy_from_jax
  table[("jax._src.array", "_reconstruct_array")] = _numpy_from_jax
  return table


_ALLOWED = _allowed()
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}


class _Refused(pickle.UnpicklingError):
  def __init__(self, module: str, name: str):
    super().__init__(f"{module}.{name}")
    self.global_name = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
  """An Unpickler whose `find_class` serves only the allow-list: nothing else can be imported
  or called while loading."""

  def find_class(self, module: str, name: str) -> Any:
    key = (_PY2_MODULES.get(module, module), name)
    if key not in _ALLOWED:
      raise _Refused(module, name)
    return _ALLOWED[key]

  def persistent_load(self, pid: Any) -> Any:
    raise pickle.UnpicklingError(f"persistent id {pid!r}")


def safe_load(path: str) -> Any:
  """Unpickles `path` allowing only what DeepMind's files need (see the module docstring).

  Raises DeepMindFileError naming the file: for a refused global (and which), and for a missing,
  truncated or corrupt file.
  """
  if not os.path.isfile(path):
    raise DeepMindFileError(f"{path}: file not found")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return _RestrictedUnpickler(io.BytesIO(data)).load()
  except _Refused as e:
    raise DeepMindFileError(
        f"{path}: refused to load: the pickle asks for the global {e.global_name}, which "
        f"DeepMind's checkpoints never contain (only numpy arrays, ml_collections configs and "
        f"plain containers are allowed); the file is not one of their checkpoints, or it was "
        f"tampered with. Nothing from it was run.") from None
  except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
          AttributeError, MemoryError, UnicodeDecodeError, OverflowError, RecursionError) as e:
    raise DeepMindFileError(
        f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}; {len(data):,} bytes); "
        f"download it again") from None


def plain(obj: Any, where: str = "", path: str = "<pickle>") -> Any:
  """Stand-ins -> plain values: a ConfigDict becomes a dict, a FieldReference its value (with
  its lazy operations applied, operator functions only); dicts, lists and tuples are converted
  recursively. `where` (the key) and `path` (the file) name a problem."""
  sub = lambda v, k=None: plain(v, where if k is None else (f"{where}.{k}" if where else str(k)),
                                path)
  if isinstance(obj, _ConfigStub):
    return {str(k): sub(v, k) for k, v in obj.state.get("_fields", {}).items()}
  if isinstance(obj, _FieldStub):
    value = sub(obj.state.get("_value"))
    for op in obj.state.get("_ops", []) or []:
      fn, args = (op[0], op[1]) if isinstance(op, tuple) and len(op) == 2 else (None, ())
      if not any(fn is f for f in _OPERATOR_FUNCS):
        raise DeepMindFileError(f"{path}: {where} is a config reference with an operation that "
                                f"is not an operator function")
      value = fn(value, *[sub(a) for a in args])
    return value
  if isinstance(obj, dict):
    return {k: sub(v, k) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)) and not isinstance(obj, _OpStub):
    return type(obj)(sub(v) for v in obj)
  return obj


def load_checkpoint(path: str) -> dict[str, Any]:
  """The six entries of a DeepMind checkpoint, configs as plain dicts, weights as numpy.

  Raises DeepMindFileError naming the file and the first missing key.
  """
  raw = safe_load(path)
  if not isinstance(raw, dict):
    raise DeepMindFileError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict with "
                            f"keys {', '.join(CHECKPOINT_KEYS)}")
  missing = [k for k in CHECKPOINT_KEYS if k not in raw]
  if missing:
    raise DeepMindFileError(f"{path}: checkpoint is missing key {missing[0]!r} (a DeepMind "
                            f"checkpoint holds {', '.join(CHECKPOINT_KEYS)}; it has "
                            f"{', '.join(sorted(map(str, raw))) or 'none'})")
  return {k: plain(raw[k], k, path) for k in CHECKPOINT_KEYS}


def lookup(tree: Any, dotted: str, path: str) -> Any:
  """tree['a']['b'] for dotted 'a.b'; DeepMindFileError naming the file and the missing key."""
  parts = dotted.split(".")
  node = tree
  for i, part in enumerate(parts):
    if not isinstance(node, dict) or part not in node:
      where = ".".join(parts[:i]) or "the checkpoint"
      raise DeepMindFileError(f"{path}: {where} has no key {part!r} (looking for {dotted})")
    node = node[part]
  return node


def nominal_label(path: str) -> int | None:
  """The CR in a file name like `41861759_1_cr=192.pkl` (or its URL-quoted `cr%3D192`)."""
  m = re.search(r"cr(?:=|%3D)(\d+)", os.path.basename(path), re.IGNORECASE)
  return int(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------------
# Parameters.


def _array(tree: dict, module: str, name: str, path: str, where: str) -> np.ndarray:
  if not isinstance(tree, dict) or module not in tree:
    raise DeepMindFileError(f"{path}: {where} has no module {module!r} (the config implies it; "
                            f"the weights do not match the config)")
  entry = tree[module]
  if not isinstance(entry, dict) or name not in entry:
    raise DeepMindFileError(f"{path}: {where}[{module!r}] has no {name!r}")
  return np.asarray(entry[name], np.float32)


def _module_prefix(tree: Any, marker: str, default: str, path: str, where: str) -> str:
  """The top module name of a Haiku tree: the part of its keys before `marker`."""
  if not isinstance(tree, dict) or not tree:
    raise DeepMindFileError(f"{path}: {where} is empty or not a dict of Haiku modules")
  prefixes = sorted({k.split(marker)[0] for k in tree if isinstance(k, str) and marker in k})
  if len(prefixes) != 1:
    keys = sorted(map(str, tree))
    raise DeepMindFileError(
        f"{path}: {where} has {'no' if not prefixes else 'several'} modules like "
        f"'{default}{marker}...' ({prefixes or keys[:4]}); is this a compressed_vision "
        f"checkpoint of the expected kind?")
  return prefixes[0]


def _check_shapes(variables: dict, expected: dict, path: str, where: str) -> None:
  def walk(got: Any, want: Any, keys: tuple[str, ...]) -> None:
    if isinstance(want, dict):
      for k, v in want.items():
        walk(got[k], v, keys + (k,))
    elif tuple(got.shape) != tuple(want):
      raise DeepMindFileError(f"{path}: {where} {'/'.join(keys)} has shape {tuple(got.shape)}, "
                              f"but the config implies {tuple(want)}; the weights do not match "
                              f"the config")
  walk(variables, expected, ())


def codec_variables(params: dict, state: dict, config: dict[str, Any], path: str) -> dict:
  """Haiku codec params/state -> {'params': ..., 'vq': ...} of `dm_codec.build(config)`."""
  model = dm_codec.build(config)
  p = _module_prefix(params, "/~encode_embedding/", CODEC_MODULE, path, "params")
  enc, dec = f"{p}/~encode_embedding", f"{p}/~decode_embedding"
  conv = lambda m: _array(params, f"{m}/conv3_d", "w", path, "params")
  encoder = {f"conv_{i}": {"kernel": conv(f"{enc}/conv_{i}")}
             for i in range(model.num_conv_layers)}
  decoder = {}
  for prefix, tree, tag, count in (("encoder", encoder, enc, model.extra_encode_conv_layers),
                                   ("decoder", decoder, dec, model.extra_decode_conv_layers)):
    for i in range(count):
      for j in (0, 1):
        tree[f"{prefix}_res_{j}_{i}"] = {"kernel": conv(f"{tag}/{prefix}_res_{j}_{i}")}
  for i in range(model.num_conv_layers):
    w = _array(params, f"{dec}/decoder_{i}", "w", path, "params")  # [kt,kh,kw,out,in]
    decoder[f"decoder_{i}"] = {"kernel": np.ascontiguousarray(np.swapaxes(w, -1, -2)),
                               "bias": _array(params, f"{dec}/decoder_{i}", "b", path, "params")}
  sp = _module_prefix(state, "/~/vqvae_0", p, path, "state")
  codebooks = [_array(state, f"{sp}/~/vqvae_{i}", "embeddings", path, "state").T
               for i in range(model.num_codebooks)]  # their [D, N] -> [N, D]
  shapes = {tuple(c.shape) for c in codebooks}
  if len(shapes) != 1:
    raise DeepMindFileError(f"{path}: state holds codebooks of different shapes {sorted(shapes)}")
  variables = {"params": {"encoder": encoder, "decoder": decoder},
               "vq": {"quantizer": {"codebook": np.stack(codebooks)}}}
  _check_shapes(variables, dm_codec.expected_shapes(config), path, "params/state")
  return variables


def read_mapping(path: str) -> np.ndarray:
  """The codebook of their data mapping pickle (`data_mappings/41861759_2_cr=192.pkl`), in their
  layout [D, N]."""
  raw = plain(safe_load(path), "mapping", path)
  if not isinstance(raw, dict) or "embeddings" not in raw:
    keys = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
    raise DeepMindFileError(f"{path}: mapping is missing key 'embeddings' (it has {keys}); pass "
                            f"their data_mappings/*.pkl file")
  table = np.asarray(raw["embeddings"], np.float32)
  if table.ndim != 2:
    raise DeepMindFileError(f"{path}: embeddings has shape {table.shape}, expected [D, N]")
  return table


def codec_from_checkpoint(ckpt: dict[str, Any], path: str, mapping: str | None = None
                          ) -> NeuralCodec:
  """The `NeuralCodec` of a loaded checkpoint (`load_checkpoint`); with `mapping`, its codebook
  is replaced by the data mapping's table (the codebook the released dataset was made with)."""
  model_kwargs = lookup(ckpt, MODEL_KWARGS, path)
  if not isinstance(model_kwargs, dict):
    raise DeepMindFileError(f"{path}: {MODEL_KWARGS} is not a dict")
  try:
    config = dm_codec.from_model_kwargs(model_kwargs)
    variables = codec_variables(ckpt["params"], ckpt["state"], config, path)
  except ValueError as e:
    if isinstance(e, DeepMindFileError):
      raise
    raise DeepMindFileError(f"{path}: {e}") from None
  info = {"source": os.path.basename(path), "deepmind": {"model_kwargs": _jsonable(model_kwargs)}}
  label = nominal_label(path)
  if label is not None:
    info["deepmind"]["file_cr"] = label
  codebook = variables["vq"]["quantizer"]["codebook"]
  if mapping is not None:
    table = read_mapping(mapping)
    k, n, d = codebook.shape
    if k != 1 or table.shape != (d, n):
      raise DeepMindFileError(f"{mapping}: embeddings has shape {table.shape}, but the codec of "
                              f"{path} has {k} codebook(s) of [D={d}, N={n}]; use the mapping "
                              f"released with this codec")
    variables["vq"]["quantizer"]["codebook"] = table.T[None].copy()
    info["codebook_from"] = os.path.basename(mapping)
  codec = NeuralCodec({"arch": "dm", **config}, variables["params"], variables["vq"], None, info)
  codec.info["config_hash"] = codec.config_hash
  return codec


def _jsonable(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if obj is None or isinstance(obj, (bool, int, float, str)):
    return obj
  return repr(obj)


def augmenter_from_checkpoint(ckpt: dict[str, Any], path: str, latent_dim: int
                              ) -> tuple[dict[str, Any], dict]:
  """(DMAugNet keywords, flax params) of the flip network in a loaded checkpoint.

  `latent_dim` is the channel count of its codec's latents (bot_channels)."""
  if ckpt["augm_params"] is None or ckpt["augm_config"] is None:
    raise DeepMindFileError(f"{path}: augm_params / augm_config are None: this is a codec-only "
                            f"checkpoint, not an augmentation network (35225852_7_augm=flip.pkl)")
  aug = lookup(ckpt, AUGMENTATION, path)
  network = aug.get("network") if isinstance(aug, dict) else None
  if network != "transformer":
    raise DeepMindFileError(f"{path}: {AUGMENTATION}.network is {network!r}; only their "
                            f"'transformer' (NeuralTransformation) exists")
  kwargs = dict(AUG_DEFAULTS)
  for key, value in (aug.get("kwargs") or {}).items():
    if key not in AUG_DEFAULTS:
      raise DeepMindFileError(f"{path}: {AUGMENTATION}.kwargs.{key} is not an argument of their "
                              f"NeuralTransformation")
    kwargs[key] = value
  params = ckpt["augm_params"]
  p = _module_prefix(params, "/transformer_xl", "neural_transformation", path, "augm_params")
  t = f"{p}/transformer_xl"
  get = lambda module, name: _array(params, module, name, path, "augm_params")
  pos = get(t, "position_embedding")
  if pos.ndim != 3 or pos.shape[-1] != 2 * latent_dim:
    raise DeepMindFileError(f"{path}: augm_params {t}/position_embedding has shape {pos.shape}, "
                            f"expected [T, L, {2 * latent_dim}] for the codec's {latent_dim} "
                            f"latent channels")
  out: dict[str, Any] = {"position_embedding": pos}
  channels = tuple(int(c) for c in kwargs["channels"])
  for i in range(len(channels) + 1):
    out[f"mlp_{i}"] = {"kernel": get(f"{p}/mlp/~/linear_{i}", "w"),
                       "bias": get(f"{p}/mlp/~/linear_{i}", "b")}
  layers = int(kwargs["num_hidden_layers"])
  ln = lambda m: {"scale": get(m, "scale"), "bias": get(m, "offset")}
  for i in range(layers):
    for mode in ("time", "space"):
      a = f"{t}/h{i}_{mode}_attn"
      out[f"h{i}_{mode}_attn"] = {
          "query": {"kernel": get(f"{a}/query", "w")}, "key": {"kernel": get(f"{a}/key", "w")},
          "value": {"kernel": get(f"{a}/value", "w")},
          "out": {"kernel": get(f"{a}/linear", "w"), "bias": get(f"{a}/linear", "b")}}
      out[f"h{i}_ln_{mode}"] = ln(f"{t}/h{i}_ln_{mode}")
    out[f"h{i}_ln_2"] = ln(f"{t}/h{i}_ln_2")
    out[f"h{i}_mlp_in"] = {"kernel": get(f"{t}/h{i}_mlp/linear", "w"),
                           "bias": get(f"{t}/h{i}_mlp/linear", "b")}
    out[f"h{i}_mlp_out"] = {"kernel": get(f"{t}/h{i}_mlp/linear_1", "w"),
                            "bias": get(f"{t}/h{i}_mlp/linear_1", "b")}
  out["ln_f"] = ln(f"{t}/ln_f")
  shape = kwargs["output_video_shape"]
  net = dict(latent_dim=int(latent_dim), position_shape=[int(pos.shape[0]), int(pos.shape[1])],
             mlp_channels=list(channels), num_layers=layers,
             num_heads=int(kwargs["num_attention_heads"]), key_size=int(kwargs["key_size"]),
             value_size=int(kwargs["value_size"]), ffw_hidden_size=int(kwargs["intermediate_size"]),
             output_video_shape=None if shape is None else [int(s) for s in shape])
  cond_dim = out["mlp_0"]["kernel"].shape[0]
  if cond_dim != 1:
    raise DeepMindFileError(f"{path}: the network is conditioned on {cond_dim} numbers per clip; "
                            f"only the released flip network (one flag) is supported")
  _check_aug_shapes(net, out, path)
  return net, out


def build_augmenter(net: dict[str, Any]) -> dm_aug.DMAugNet:
  """A `DMAugNet` from the JSON keywords `augmenter_from_checkpoint` returns."""
  kw = dict(net)
  kw["position_shape"] = tuple(kw["position_shape"])
  kw["mlp_channels"] = tuple(kw["mlp_channels"])
  if kw.get("output_video_shape") is not None:
    kw["output_video_shape"] = tuple(kw["output_video_shape"])
  return dm_aug.DMAugNet(**kw)


def _check_aug_shapes(net: dict[str, Any], params: dict, path: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  model = build_augmenter(net)
  latents = jnp.zeros((1, 1, 1, 1, net["latent_dim"]))
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), latents, jnp.zeros((1, 1))))
  _check_shapes(params, jax.tree.map(lambda s: tuple(s.shape), expected)["params"], path,
                "augm_params")


# ------------------------------------------------------------------------------------------------
# Compressed Kinetics-600 -> code shards.

DM_FORMAT = "dm_k600"


def check_mapping(table: np.ndarray, codec: NeuralCodec, mapping_path: str) -> None:
  """Refuses a data mapping whose codebook is not the codec's (shape or values)."""
  codebook = np.asarray(codec.vq["quantizer"]["codebook"])  # [K, N, D]
  k, n, d = codebook.shape
  if k != 1 or table.shape != (d, n):
    raise DatasetError(f"{mapping_path}: embeddings [D, N] = {list(table.shape)}, but the codec "
                       f"has {k} codebook(s) of [D={d}, N={n}]; use the codec the dataset was "
                       f"compressed with (their CR-192 checkpoint)")
  if not np.allclose(table.T, codebook[0], rtol=1e-5, atol=1e-6):
    raise DatasetError(f"{mapping_path}: its embeddings differ from the codec's codebook, so the "
                       f"codec's latents would not be the dataset's; convert the codec with this "
                       f"codebook: python tools/import_dm.py CR192.pkl OUT.cvcodec --mapping "
                       f"{mapping_path}")


def find_mapping(root: str) -> str | None:
  """Their mapping pickle next to the TFRecords (`root/*.pkl` or `root/data_mappings/*.pkl`);
  None when there is none; DatasetError when there are several."""
  found = sorted(p for pattern in ("*.pkl", os.path.join("data_mappings", "*.pkl"))
                 for p in glob.glob(os.path.join(root, pattern)))
  if len(found) > 1:
    raise DatasetError(f"{root}: several mapping pickles {[os.path.basename(p) for p in found]}; "
                       f"keep only the one of the dataset (data_mappings/41861759_2_cr=192.pkl)")
  return found[0] if found else None


def _shard_examples(files: Sequence[str], codec: NeuralCodec, labels: dict[int, str]
                    ) -> Iterator[dict[str, Any]]:
  """Code-shard records (`cv.data.code_shards`) of their TFRecord files, checked against the
  codec; collects label_id -> name into `labels`."""
  dtype = np.uint8 if codec.bits <= 8 else np.uint16
  for path in files:
    for r in dm_tfrecords.iter_records(path):
      codes = dm_tfrecords.code_array(r["codes"], codec.num_codebooks, r["where"])
      if codes.size and int(codes.max()) >= codec.num_entries:
        raise DatasetError(f"{r['where']}: code index {int(codes.max())} >= the codec's "
                           f"{codec.num_entries} entries; these codes were made by another codec")
      if r["label_id"] != dm_tfrecords.UNLABELLED:
        dm_tfrecords.merge_labels(labels, {r["label_id"]: r["label"]}, r["where"])
      t = codes.shape[0] * codec.temporal_factor
      span = max(r["end_sec"] - r["start_sec"], 0.0)
      yield dict(codes=np.ascontiguousarray(codes.astype(dtype)), label=int(r["label_id"]),
                 video_id=r["video_id"], time_start=float(r["start_sec"]),
                 time_end=float(r["end_sec"]), num_frames=int(t),
                 # Their frame rate is not stored: frames per second of the clip, assuming the
                 # codes span start_sec..end_sec.
                 fps=float(t / span) if span > 0 else 0.0,
                 path=f"{os.path.basename(path)}#{r['index']}")


def convert_tfrecords(split_files: dict[str, list[str]], out_dir: str, codec: NeuralCodec, *,
                      codec_path: str, mapping: str | None = None, num_shards: int = 16,
                      process_index: int = 0, process_count: int = 1, progress: bool = True
                      ) -> str | None:
  """Writes every split's TFRecord files as code shards + manifest into `out_dir`.

  Shard i of a split holds the records of its files i, i+S, ... (S = min(num_shards, files)).
  Finished shards are kept on a re-run (resumable, like `cv.codec.encode`); the manifest is
  written once all shards exist. Every record's codes are checked against `codec` (K, N) and a
  record that disagrees is a DatasetError naming it; `mapping` (their mapping pickle) must hold
  the codec's codebook. Labels: `label_id` indexes the classes (names from `label`); records
  without labels (the test split) get label -1.
  """
  if mapping is not None:
    check_mapping(read_mapping(mapping), codec, mapping)
    if progress:
      print(f"dm_k600: {mapping} holds the codec's codebook", flush=True)
  os.makedirs(out_dir, exist_ok=True)
  counts = {}
  for split, files in split_files.items():
    n = max(1, min(num_shards, len(files)))
    counts[split] = n
    for i in range(n):
      if i % process_count != process_index:
        continue
      name = code_shards.shard_name(split, i, n)
      shard = os.path.join(out_dir, name)
      if code_shards.finished(shard):
        continue
      code_shards.remove_stale_temps(shard)
      t0, labels = time.monotonic(), {}
      if progress:
        print(f"dm_k600: {split} shard {i + 1}/{n} from {len(files[i::n])} TFRecord file(s)",
              flush=True)
      num = code_shards.write_shard(shard, _shard_examples(files[i::n], codec, labels))
      fileio.write_json(shard + ".json", dict(shard=name, split=split, num_records=num, bad=[],
                                              labels={str(k): v for k, v in labels.items()},
                                              seconds=round(time.monotonic() - t0, 2)))
  return write_manifest_if_complete(out_dir, counts, codec, codec_path, split_files, mapping)


def write_manifest_if_complete(out_dir: str, counts: dict[str, int], codec: NeuralCodec,
                               codec_path: str, split_files: dict[str, list[str]],
                               mapping: str | None) -> str | None:
  """manifest.json of converted shards once every shard summary exists (else None)."""
  summaries: dict[str, list[dict]] = {}
  for split, n in counts.items():
    summaries[split] = []
    for i in range(n):
      p = os.path.join(out_dir, code_shards.shard_name(split, i, n) + ".json")
      if not os.path.exists(p):
        return None
      summaries[split].append(json.load(open(p)))
  labels: dict[int, str] = {}
  for split, items in summaries.items():
    for s in items:
      dm_tfrecords.merge_labels(labels, {int(k): v for k, v in s["labels"].items()},
                                f"{out_dir} [{split}]")
  names = dm_tfrecords.class_names(labels, out_dir)
  splits = {split: dict(shards=[code_shards.shard_name(split, i, n) for i in range(n)],
                        num_records=sum(s["num_records"] for s in summaries[split]), bad=[],
                        class_names=names,
                        labelled=any(s["labels"] for s in summaries[split]))
            for split, n in counts.items()}
  manifest = dict(format=code_shards.FORMAT, format_version=code_shards.FORMAT_VERSION,
                  codec_id=codec.codec_id, config_hash=codec.config_hash, codec_path=codec_path,
                  nominal_cr=codec.nominal_cr(), num_codebooks=codec.num_codebooks,
                  num_entries=codec.num_entries, bits=codec.bits,
                  spatial_factor=codec.spatial_factor, temporal_factor=codec.temporal_factor,
                  dtype="uint8" if codec.bits <= 8 else "uint16",
                  encode=dict(source=DM_FORMAT, mapping=mapping and os.path.abspath(mapping)),
                  source=dict(format=DM_FORMAT, files={s: [os.path.abspath(f) for f in fs]
                                                       for s, fs in split_files.items()}),
                  splits=splits)
  path = os.path.join(out_dir, code_shards.MANIFEST)
  fileio.write_json(path, manifest)
  return path
