"""Argument checks that run at trace time, so a mistake fails before any
compilation with a message that names the argument and what was expected.

Shapes and dtypes are static, so they are always checked. Hyperparameter
values are checked only where they are concrete (eager calls): under `jit` or
`vmap` they are tracers, and `expstdp.checked` covers them at run time.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from expstdp.types import ExpSTDPParams, SynapseState


def _dtype_name(dtype) -> str:
  return jnp.dtype(dtype).name


def dtype_of(x):
  """The dtype JAX gives `x`: not numpy's own, since without x64 a numpy
  float64 array is float32 to JAX. Read directly from jax arrays and
  tracers: jnp.result_type takes ~6 us, and check_state asks for eleven
  fields on every eager call."""
  return x.dtype if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) else jnp.result_type(x)


def check_array(name: str, x, shape: tuple, dtype, owner: str = "the weights'") -> None:
  """Raises unless `x` is an array of exactly `shape` and `dtype` (that of
  `owner`, for the message)."""
  try:
    x_shape, x_dtype = np.shape(x), dtype_of(x)
  except TypeError:  # a nested list, say: jax's message would not name the argument
    raise TypeError(f"{name} must be an array of dtype {_dtype_name(dtype)}, got "
                    f"{type(x).__name__}.") from None
  if not jnp.issubdtype(x_dtype, jnp.floating):
    hint = " (spikes are 0.0/1.0 floats)" if "spike" in name else ""
    raise TypeError(f"{name} must be a floating array of dtype {_dtype_name(dtype)}{hint}, got "
                    f"dtype {_dtype_name(x_dtype)}.")
  if tuple(x_shape) != tuple(shape):
    raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x_shape)}.")
  if x_dtype != jnp.dtype(dtype):
    raise TypeError(
        f"{name} must have {owner} dtype {_dtype_name(dtype)}, got "
        f"{_dtype_name(x_dtype)}; cast it explicitly (nothing is promoted silently)."
    )


def check_for_state(name: str, x, shape: tuple, dtype) -> None:
  """`check_array` for an array replacing a (B, n) field of a state, saying
  where B comes from when only it differs."""
  if np.ndim(x) == 2 and np.shape(x)[1] == shape[1] and np.shape(x)[0] != shape[0]:
    raise ValueError(
        f"{name} must have shape {tuple(shape)}, got {np.shape(x)}: the state's batch size "
        f"is {shape[0]}, which expstdp.init(..., batch_size=B) sets.")
  check_array(name, x, shape, dtype)


def check_weights(name: str, weights) -> tuple[int, int]:
  """Checks an (N, M) floating weight matrix and returns (N, M)."""
  if not hasattr(weights, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(weights).__name__}.")
  if np.ndim(weights) != 2:
    # A leading axis is most often stacked populations, which the functions
    # take one at a time under vmap.
    hint = (" For stacked populations, jax.vmap the plain functions (the jitted entry points "
            "take one population)." if np.ndim(weights) > 2 else "")
    raise ValueError(f"{name} must be a 2-D (n_pre, n_post) array, got shape "
                     f"{np.shape(weights)}.{hint}")
  if not jnp.issubdtype(dtype_of(weights), jnp.floating):
    raise TypeError(f"{name} must be floating, got dtype {_dtype_name(dtype_of(weights))}.")
  return np.shape(weights)


def check_activity(weights, **arrays) -> None:
  """Checks spikes and traces against the weights: pre_* are (B, N) and
  post_* are (B, M) with one batch size B, all in the weights' dtype."""
  n_pre, n_post = check_weights("weights", weights)
  batch = None
  for name, x in arrays.items():
    width = n_pre if name.startswith(("pre", "inputs")) else n_post
    if np.ndim(x) != 2:
      raise ValueError(f"{name} must be 2-D (batch, {width}), got shape {np.shape(x)}.")
    batch = np.shape(x)[0] if batch is None else batch
    _check_width(name, x, (batch, width), "weights", (n_pre, n_post))
    check_array(name, x, (batch, width), dtype_of(weights))


def _check_width(name, x, shape, weights_name, weights_shape) -> None:
  """Says that the expected width comes from the weights, which may be the
  wrong array."""
  if np.ndim(x) == 2 and np.shape(x)[1] != shape[1]:
    side = "pre" if name.split(".")[-1].startswith(("pre", "inputs")) else "post"
    raise ValueError(f"{name} must have shape {tuple(shape)}, got {np.shape(x)}: its width is "
                     f"the {shape[1]} {side}-synaptic neurons of {weights_name}, of shape "
                     f"{tuple(weights_shape)}.")


def check_state(state: SynapseState) -> None:
  """Checks every field of a SynapseState for shape and dtype."""
  if not isinstance(state, SynapseState):
    raise TypeError(f"state must be an expstdp.SynapseState, got {type(state).__name__}.")
  if all(isinstance(x, jax.Array) for x in state):  # the common case: ~10 instead of ~35 us
    check_not_donated(state)
    _check_layout(tuple((x.shape, x.dtype) for x in state))
  else:
    _check_fields(state)


@functools.lru_cache(maxsize=256)  # raising is not cached
def _check_layout(layout: tuple) -> None:
  _check_fields(SynapseState(*(jax.ShapeDtypeStruct(*field) for field in layout)))


def _check_fields(state: SynapseState) -> None:
  for name, x in state._asdict().items():
    if not hasattr(x, "dtype") and not isinstance(x, (int, float)):
      raise TypeError(f"state.{name} must be an array, got {type(x).__name__}.")
  check_not_donated(state)
  n_pre, n_post = check_weights("state.weights", state.weights)
  dtype = dtype_of(state.weights)
  if np.ndim(state.inputs) != 2:
    raise ValueError(
        f"state.inputs must be 2-D (batch, {n_pre}), got shape {np.shape(state.inputs)}.")
  batch = np.shape(state.inputs)[0]
  for name, width in (("inputs", n_pre), ("pre_spike", n_pre), ("pre_trace", n_pre),
                      ("outputs", n_post), ("post_spike", n_post), ("post_trace", n_post)):
    x = getattr(state, name)
    # Where a size comes from, since that field may be the wrong one.
    _check_width(f"state.{name}", x, (batch, width), "state.weights", (n_pre, n_post))
    if np.ndim(x) == 2 and np.shape(x)[0] != batch:
      raise ValueError(f"state.{name} must have shape {(batch, width)}, got {np.shape(x)}: "
                       f"the batch size is {batch}, that of state.inputs.")
    check_array(f"state.{name}", x, (batch, width), dtype)
  if np.shape(state.d_weights) != (n_pre, n_post):
    raise ValueError(f"state.d_weights must have the shape {(n_pre, n_post)} of state.weights, "
                     f"got {np.shape(state.d_weights)}.")
  check_array("state.d_weights", state.d_weights, (n_pre, n_post), dtype)
  if np.shape(state.biases) not in ((), (1, n_post)):
    raise ValueError(
        f"state.biases must have shape () or (1, {n_post}), got {np.shape(state.biases)}.")
  check_array("state.biases", state.biases, np.shape(state.biases), dtype)
  if np.shape(state.eta) != ():
    raise ValueError(f"state.eta must be a scalar (shape ()), got shape {np.shape(state.eta)}.")
  mask = state.weight_mask
  if dtype_of(mask) != jnp.bool_ or np.shape(mask) not in ((1, 1), (n_pre, n_post)):
    raise ValueError(
        f"state.weight_mask must be a bool array of shape (1, 1) or ({n_pre}, {n_post}), "
        f"got {_dtype_name(dtype_of(mask))} {np.shape(mask)}."
    )


def check_static_bool(name: str, value) -> None:
  """A static switch: a string such as "False" would otherwise count as true."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a Python bool (a static option), got {value!r}.")


def check_not_donated(state: SynapseState) -> None:
  """Raises if W or dW is an array whose buffer a donation (an `expstdp.jitted`
  call) has deleted: jax's own error names neither the field nor the cause."""
  for name in ("weights", "d_weights"):
    x = getattr(state, name)
    # A tracer is never donated (and asking it raises an error jax takes ~35 us to build).
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and x.is_deleted():
      raise ValueError(
          f"state.{name} has been deleted: an expstdp.jitted call consumes (donates) the "
          "weights and d_weights of the state passed to it. Use the state that call returned "
          "(to keep this one too, pass a copy: jax.tree.map(jnp.copy, state)).")


def concrete_value(x):
  """The value of `x` as a numpy array, or None when it is a tracer."""
  try:
    return np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def max_exponent(dtype) -> float:
  """The largest |exp_beta| * w_bound for which evolve's factors are exact in
  `dtype`: exp(-beta W) stays a normal number for every W in [0, w_bound],
  with a margin (79 for float32 and bfloat16, 700 for float64, 8 for float16)."""
  check_floating_dtype(dtype, " (the weights')")
  x = -np.log(float(jnp.finfo(dtype).tiny))
  return float(np.floor(x - min(8.0, 0.1 * x)))


def check_floating_dtype(dtype, whose: str = "") -> None:
  """Raises a TypeError naming `dtype` unless it is a floating dtype (None,
  which numpy reads as float64, is not)."""
  try:
    floating = dtype is not None and jnp.issubdtype(dtype, jnp.floating)
  except TypeError:  # not a dtype at all: numpy's message names no argument
    floating = False
  if not floating:
    raise TypeError(f"dtype must be a floating dtype{whose}, got {dtype!r}.")


def is_int(value) -> bool:
  """A Python or numpy int, not a bool (True would pass as 1)."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value) -> bool:
  if type(value) in (float, int):  # the common case, without jnp.result_type (~7 us)
    return True
  # jnp.result_type reads a string or a type (jnp.float32) as a dtype and None as float32.
  if value is None or isinstance(value, (str, bytes, type)):
    return False
  try:
    kind = value.dtype if isinstance(value, (jax.Array, np.ndarray, np.generic)) else (
        jnp.result_type(value))
  except TypeError:  # other objects
    return False
  return jnp.issubdtype(kind, jnp.number) and not jnp.issubdtype(kind, jnp.complexfloating)


def check_held(name: str, x) -> None:
  """Raises for a Python int too large for the array jit makes of it (int32,
  int64 with jax_enable_x64), which jit would meet with an OverflowError
  that names no argument, or numpy with a TypeError from isfinite."""
  if type(x) is int:
    bits = 64 if jax.config.jax_enable_x64 else 32
    if not -2 ** (bits - 1) <= x < 2 ** (bits - 1):
      raise ValueError(f"{name} must be a float or an int that int{bits} holds, got an int of "
                       f"{x.bit_length()} bits: write it as a float.")


def check_real(name: str, x, expected: str = "a real number") -> None:
  """Raises unless `x` is a real number or array, finite where concrete."""
  if not is_real(x):
    raise TypeError(f"{name} must be {expected}, got {x!r}.")
  check_held(name, x)
  value = concrete_value(x)
  if value is not None and not np.isfinite(value).all():
    raise ValueError(f"{name} must be finite, got {x!r}.")


def check_eta(state: SynapseState) -> None:
  """Where concrete, state.eta must be finite: a NaN eta makes every weight NaN."""
  if (eta := concrete_value(state.eta)) is not None and not np.isfinite(eta):
    raise ValueError(f"state.eta must be finite, got {eta}: evolve would make every weight NaN.")


def validate_params(params: ExpSTDPParams, dtype=jnp.float32) -> None:
  """Checks that every hyperparameter is a scalar and, where its value is
  concrete, that the rule is well defined: every value finite, A_minus >= 0,
  w_eps >= 0, tau_w >= 0, w_bound > 2 * w_eps (else the clip bounds cross)
  and |exp_beta| * w_bound <= max_exponent(dtype) (the weights' dtype)."""
  if not isinstance(params, ExpSTDPParams):
    raise TypeError(f"params must be an expstdp.ExpSTDPParams, got {type(params).__name__}.")
  global _valid_arrays
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:  # numpy's message names no argument
    raise TypeError(f"dtype must be a floating dtype (the weights'), got {dtype!r}.") from None
  if all(type(v) in (float, int) for v in params):  # the common case, once per set of values
    _check_numbers(tuple(params), dtype, jax.config.jax_enable_x64)
    return
  last = _valid_arrays  # read once: another thread may replace it
  if last[0] is params and last[1] == dtype:  # the same jax arrays, which are immutable
    return
  for name, value in params._asdict().items():
    if np.ndim(value) != 0:
      raise ValueError(
          f"params.{name} must be a scalar, got shape {np.shape(value)}; to run several "
          "populations, give params a leading axis and jax.vmap over it."
      )
    if not is_real(value):
      raise TypeError(f"params.{name} must be a real number, got {value!r}.")
    check_held(f"params.{name}", value)  # a Python int among arrays
  # As numpy scalars, which hash: arrays (those `load` gives, say) are then
  # checked once per set of values too, not in ~0.2 ms on every call.
  values = (concrete_value(v) for v in params)
  _check_numbers(tuple(None if v is None else v[()] for v in values), dtype,
                 jax.config.jax_enable_x64)
  if all(isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer) for v in params):
    _valid_arrays = (params, dtype)  # held, so that its id is not reused


_valid_arrays = (None, None)  # the last params of jax arrays that validate_params passed


@functools.lru_cache(maxsize=256)  # raising is not cached: bad values raise every time
def _check_numbers(values: tuple, dtype, x64: bool) -> None:
  for name, value in zip(ExpSTDPParams._fields, values):
    check_held(f"params.{name}", value)  # which depends on x64
  check_param_values(dict(zip(ExpSTDPParams._fields, values)), dtype)


def check_param_values(values: dict, dtype) -> None:
  """The value checks of `validate_params`, on a dict from field name to its
  concrete value (None where not known): scalars, or arrays of a population's
  shape, where the message names the first member that fails."""
  for names, holds, rule in _value_rules(jnp.dtype(dtype)):
    args = [values[n] for n in names]
    if any(a is None for a in args):
      continue
    ok = np.asarray(holds(*args))  # `x >= 0` is False for NaN too
    if ok.all():
      continue
    at = np.unravel_index(np.argmin(ok), ok.shape)
    got = ", ".join(f"{n}={np.asarray(a)[at] if np.ndim(a) else a!s}" for n, a in zip(names, args))
    member = f" in population member {tuple(int(i) for i in at)}" if ok.ndim else ""
    raise ValueError(f"{rule}, got {got}{member}.")


@functools.cache  # validate_params runs on every eager call
def _value_rules(dtype) -> tuple:
  """(fields, predicate, what must hold) for each check of check_param_values."""
  limit = max_exponent(dtype)
  return tuple(((name,), np.isfinite, f"params.{name} must be finite")
               for name in ExpSTDPParams._fields) + (
      (("A_minus",), lambda a: a >= 0, "params.A_minus must be >= 0 (ngclearn silently drops "
       "LTD for a negative A_minus; expstdp rejects it)"),
      (("w_eps",), lambda e: e >= 0, "params.w_eps must be >= 0"),
      (("tau_w",), lambda t: t >= 0, "params.tau_w must be >= 0"),
      (("w_bound", "w_eps"), lambda b, e: b > 2 * e, "params.w_bound must be > 2 * params.w_eps "
       "so that the clip range [w_eps, w_bound - w_eps] is not empty"),
      (("exp_beta", "w_bound"), lambda beta, b: np.abs(beta * b) <= limit,
       f"|params.exp_beta * params.w_bound| must be <= {limit:g} for {_dtype_name(dtype)} "
       "weights (beyond it exp(-beta W) underflows)"),
  )
