"""Weight initializers with ngclearn's distributions, in the
`jax.nn.initializers` convention `init(key, shape, dtype) -> Array`.

Each distribution takes ngclearn's modifiers as keywords, applied after the
draw in ngclearn's order: `amin`, `amax` (clip), `lower_triangle` /
`upper_triangle`, `hollow` (zero diagonal), `eye` (keep only the diagonal),
`col_mask`, `row_mask` (an int keeps that many random columns/rows, a
sequence keeps those indices). For the same key, `uniform`, `gaussian` and
`constant` draw the same numbers as ngclearn's `DistributionGenerator`.

One deliberate difference: ngclearn's `row_mask` broadcasts its row vector
along the last axis (it masks columns, and fails on non-square shapes);
here `row_mask` keeps rows.
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from expstdp.validation import check_real, check_static_bool, concrete_value, is_int


def _modify(w, key, *, amin=None, amax=None, lower_triangle=False, upper_triangle=False,
            hollow=False, eye=False, col_mask=None, row_mask=None):
  zero = jnp.zeros((), w.dtype)
  if amin is not None:
    w = jnp.maximum(w, amin)
  if amax is not None:
    w = jnp.minimum(w, amax)
  if lower_triangle:
    w = jnp.tril(w)
  if upper_triangle:
    w = jnp.triu(w)
  if hollow:
    w = jnp.where(jnp.eye(*w.shape, dtype=bool), zero, w)
  if eye:
    w = jnp.where(jnp.eye(*w.shape, dtype=bool), w, zero)
  for axis, keep in ((1, col_mask), (0, row_mask)):
    if keep is None:
      continue
    name, n = f"{'col' if axis else 'row'}_mask", w.shape[axis]
    if is_int(keep):
      if not 0 <= keep <= n:
        raise ValueError(f"{name}={keep} must be in [0, {n}].")
      key, subkey = jax.random.split(key)
      keep = jax.random.choice(subkey, n, shape=(int(keep),), replace=False)
    else:
      _check_indices(name, keep, n)
    kept = jnp.zeros(n, bool).at[jnp.asarray(keep, int)].set(True)
    kept = kept[None, :] if axis == 1 else kept[:, None]
    w = jnp.where(kept, w, zero)
  return w


def _check_indices(name, keep, n):
  # A scatter would drop an index out of range and read True as 1, silently.
  if isinstance(keep, (str, bytes)) or not isinstance(keep, (Sequence, np.ndarray, jax.Array)):
    raise TypeError(f"{name} must be an int (how many to keep, at random) or a sequence of "
                    f"indices, got {type(keep).__name__}.")
  idx = concrete_value(keep)  # None when traced
  if idx is not None and idx.size and (idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer)
                                       or idx.min() < 0 or idx.max() >= n):
    raise ValueError(f"{name} must be a 1-D sequence of int indices in [0, {n}), got {keep!r}.")


_MODIFIERS = ("amin", "amax", "lower_triangle", "upper_triangle", "hollow", "eye", "col_mask",
              "row_mask")


def _check_modifiers(modifiers):
  unknown = sorted(set(modifiers) - set(_MODIFIERS))
  if unknown:
    raise TypeError(f"unknown initializer modifier(s) {unknown}; expected some of {_MODIFIERS}.")
  for name in ("lower_triangle", "upper_triangle", "hollow", "eye"):
    check_static_bool(name, modifiers.get(name, False))
  if modifiers.get("lower_triangle") and modifiers.get("upper_triangle"):
    raise ValueError("lower_triangle and upper_triangle are mutually exclusive.")
  bounds = {name: modifiers[name] for name in ("amin", "amax") if modifiers.get(name) is not None}
  _check_numbers(**bounds)
  if len(bounds) == 2:
    _check_order("amin", bounds["amin"], "amax", bounds["amax"])


def _check_numbers(**values):
  for name, x in values.items():
    check_real(name, x)
    if np.ndim(x) != 0:  # as ngclearn's distributions take them
      raise ValueError(f"{name} must be a number, got shape {np.shape(x)}.")


def _check_order(low_name, low, high_name, high):
  # Crossed bounds are no error to jax: every weight would end at one bound.
  a, b = concrete_value(low), concrete_value(high)
  if a is not None and b is not None and np.any(a > b):
    raise ValueError(f"{low_name} must be <= {high_name}, got {low_name}={low!r}, "
                     f"{high_name}={high!r}.")


def _check_shape(shape, who):
  if len(shape) < 2:
    raise ValueError(f"{who} needs a shape with at least 2 dimensions, got {tuple(shape)}.")


def constant(value: ArrayLike, **modifiers):
  """Every weight equal to `value`."""
  _check_numbers(value=value)
  _check_modifiers(modifiers)
  def init(key, shape, dtype=jnp.float32):
    w = jnp.ones(shape, dtype) * value
    return _modify(w, key, **modifiers).astype(dtype)
  return init


def uniform(low: ArrayLike = 0.0, high: ArrayLike = 1.0, **modifiers):
  """U[low, high), drawn as ngclearn does (the key is split once first)."""
  _check_numbers(low=low, high=high)
  _check_order("low", low, "high", high)
  _check_modifiers(modifiers)
  def init(key, shape, dtype=jnp.float32):
    key, subkey = jax.random.split(key, 2)
    w = jax.random.uniform(key, shape, dtype, minval=low, maxval=high)
    return _modify(w, subkey, **modifiers).astype(dtype)
  return init


def gaussian(mean: ArrayLike = 0.0, std: ArrayLike = 1.0, **modifiers):
  """mean + std * N(0, 1), drawn as ngclearn does."""
  _check_numbers(mean=mean, std=std)
  if (v := concrete_value(std)) is not None and np.any(v < 0):
    raise ValueError(f"std must be >= 0, got {std!r}.")
  _check_modifiers(modifiers)
  def init(key, shape, dtype=jnp.float32):
    key, subkey = jax.random.split(key, 2)
    w = mean + std * jax.random.normal(key, shape, dtype)
    return _modify(w, subkey, **modifiers).astype(dtype)
  return init


def fan_in_uniform(**modifiers):
  """U(-sqrt(1 / shape[1]), sqrt(1 / shape[1])); ngclearn takes shape[1] as the fan-in."""
  _check_modifiers(modifiers)
  def init(key, shape, dtype=jnp.float32):
    _check_shape(shape, "fan_in_uniform")
    limit = math.sqrt(1.0 / shape[1])
    return uniform(-limit, limit, **modifiers)(key, shape, dtype)
  return init


def fan_in_gaussian(**modifiers):
  """N(0, 1 / shape[0]): standard deviation sqrt(1 / shape[0])."""
  _check_modifiers(modifiers)
  def init(key, shape, dtype=jnp.float32):
    _check_shape(shape, "fan_in_gaussian")
    key, subkey = jax.random.split(key, 2)
    w = jax.random.normal(key, shape, dtype) * math.sqrt(1.0 / shape[0])
    return _modify(w, subkey, **modifiers).astype(dtype)
  return init
