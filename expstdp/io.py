"""Saving and loading trained synapses: a versioned `.npz` with nothing pickled."""

import io
import json
import os
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from expstdp.eager import traced
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import check_param_values, check_state, dtype_of, validate_params

FORMAT = "expstdp.synapse"
VERSION = 1
_META = "__expstdp__"


def _to_numpy(x):
  x = np.asarray(x)
  # bfloat16 and other ml_dtypes have no portable .npy form: store the bits.
  if x.dtype.kind == "V" or x.dtype.name == "bfloat16":
    return x.view(np.uint16 if x.dtype.itemsize == 2 else np.uint8)
  return x


def save(path, state: SynapseState, params: ExpSTDPParams) -> None:
  """Writes `state` and `params` (one synapse, or a population stacked on
  leading axes) to `path` (numpy appends `.npz` if missing; `load` takes
  either name) or to a binary file object open for writing. Raises, writing
  nothing, where `load` would reject them: a field of the wrong shape or
  dtype, or a member's invalid hyperparameters."""
  if not isinstance(state, SynapseState) or not isinstance(params, ExpSTDPParams):
    raise TypeError("save(path, state, params) takes an expstdp.SynapseState and ExpSTDPParams.")
  path = _path_or_file(path, writing=True)
  if traced(state, params):  # numpy's message would name no argument
    raise TypeError("save writes values, and it was given traced ones: call it outside jit, "
                    "vmap, scan and grad, on the state they return.")
  _check_synapse(state, params)  # never write a file that load would reject
  arrays, dtypes = {}, {}
  for prefix, tree in (("state", state), ("params", params)):
    for name, value in tree._asdict().items():
      key = f"{prefix}.{name}"
      value = jnp.asarray(value)
      dtypes[key] = jnp.dtype(value.dtype).name
      arrays[key] = _to_numpy(value)
  meta = dict(format=FORMAT, version=VERSION, dtypes=dtypes,
              shapes={k: list(v.shape) for k, v in arrays.items()})
  arrays[_META] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  np.savez(path, **arrays)


def load(path) -> tuple[SynapseState, ExpSTDPParams]:
  """Reads what `save` wrote; raises ValueError for a foreign, truncated or
  inconsistent file, naming what is wrong, and for a float64 synapse unless
  `jax_enable_x64` is on (JAX would narrow it to float32); OSError, as
  `open` does, for a path that cannot be read. `path` may also be a binary
  file object open for reading, as `save` takes one."""
  path = _path_or_file(path, writing=False)
  is_file = not isinstance(path, str)
  if is_file:
    source, start = path, path.tell()
    path = getattr(source, "name", type(source).__name__)  # for the messages
  else:
    if not os.path.exists(path) and os.path.exists(path + ".npz"):  # as save named it
      path += ".npz"
    open(path, "rb").close()
    source = path
  is_zip = zipfile.is_zipfile(source)
  if is_file:
    source.seek(start)  # is_zipfile read the end of the file
  if not is_zip:
    # Not numpy's message: for a file that is no archive it suggests allow_pickle.
    raise ValueError(f"{path} is not a readable expstdp file (truncated or foreign): "
                     "not a .npz (zip) archive.")
  try:
    with np.load(source, allow_pickle=False) as f:
      files = {k: f[k] for k in f.files}
  # RuntimeError (NotImplementedError among them): what zipfile raises for a
  # damaged header that reads as encryption or an unknown compression.
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError, zlib.error) as e:
    raise ValueError(f"{path} is not a readable expstdp file (truncated or foreign): {e}") from e
  if _META not in files:
    raise ValueError(f"{path} is not an expstdp file: it has no {_META} record.")
  corrupt = f"{path}: its {_META} record is corrupt"
  try:
    meta = json.loads(files.pop(_META).tobytes().decode())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{corrupt}.") from e
  if not isinstance(meta, dict):
    raise ValueError(f"{corrupt}: not a JSON object.")
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path} holds {meta.get('format')!r}, not {FORMAT!r}.")
  if meta.get("version") != VERSION:
    raise ValueError(f"{path} is format version {meta.get('version')}; this expstdp reads "
                     f"version {VERSION}.")
  expected = [f"state.{n}" for n in SynapseState._fields] + [
      f"params.{n}" for n in ExpSTDPParams._fields]
  missing = [k for k in expected if k not in files]
  if missing:
    raise ValueError(f"{path} lacks the fields {missing}.")

  def restore(key):
    x = files[key]
    try:
      dtype, shape = jnp.dtype(meta["dtypes"][key]), list(meta["shapes"][key])
      if x.dtype != dtype:  # the bits of a dtype numpy cannot store (_to_numpy)
        x = x.view(dtype)
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{corrupt}: no valid dtype and shape for {key} ({e}).") from e
    if list(x.shape) != shape:
      raise ValueError(f"{path}: {key} has shape {x.shape}, its record says {shape}.")
    if key.startswith("state.") and x.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
      # jnp.asarray would make it float32 without a word. (Params are cast
      # to the weights' dtype anyway.)
      raise ValueError(f"{path} holds a {x.dtype} synapse ({key}), which needs 64-bit JAX: "
                       "jax.config.update('jax_enable_x64', True) before loading it.")
    try:
      return jnp.asarray(x)
    except TypeError:  # a string or datetime dtype, say
      raise ValueError(f"{corrupt}: {key} has dtype {dtype}, which JAX cannot hold.") from None

  state = SynapseState(**{n: restore(f"state.{n}") for n in SynapseState._fields})
  params = ExpSTDPParams(**{n: restore(f"params.{n}") for n in ExpSTDPParams._fields})
  try:
    _check_synapse(state, params)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path} holds an inconsistent synapse: {e}") from e
  return state, params


def _path_or_file(path, writing: bool):
  """`path` as a str, or the binary file object given."""
  if hasattr(path, "write" if writing else "read"):
    if isinstance(path, io.TextIOBase):  # else: "write() argument must be str", or "not a .npz"
      raise TypeError(f"path must be a file object open in binary mode "
                      f"('{'wb' if writing else 'rb'}'), got a text one.")
    return path
  try:
    return os.fsdecode(path)  # bytes too, as open takes them
  except TypeError:
    raise TypeError(f"path must be a file path or a binary file object open for "
                    f"{'writing' if writing else 'reading'}, got {type(path).__name__}.") from None


def _check_synapse(state, params):
  """check_state and validate_params for one synapse, or for every member of
  a population stacked on the leading axes of `weights` (params fields with
  those axes, or scalars that all members share)."""
  lead = np.shape(state.weights)[:-2]
  for name, x in state._asdict().items():
    if np.shape(x)[:len(lead)] != lead:
      raise ValueError(f"state.{name} has shape {np.shape(x)}, but the population axes of "
                       f"state.weights are {lead}.")
  for name, x in params._asdict().items():
    if np.ndim(x) and np.shape(x) != lead:
      raise ValueError(f"params.{name} must be a scalar or have the population shape {lead} "
                       f"of state.weights, got shape {np.shape(x)}.")
  check_state(SynapseState(*[x[(0,) * len(lead)] for x in state]) if lead else state)
  # The types from one member (they are the same for all), the values from every one.
  validate_params(ExpSTDPParams(*[x[(0,) * len(lead)] if np.ndim(x) else x for x in params]),
                  dtype_of(state.weights))
  check_param_values({name: np.asarray(x) for name, x in params._asdict().items()},
                     dtype_of(state.weights))
