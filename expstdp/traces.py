"""Spike traces, exactly as ngclearn's `VarTrace` computes them.

  z' = gamma_tr * z * d                          d = exp(-dt / tau_tr)  ("exp")
                                                   = 1 - dt / tau_tr    ("lin")
                                                   = 0                  ("step")
  then, for spikes s:
  z' += s * (a_delta - z / n_nearest_spikes)     if n_nearest_spikes > 0 (z before decay)
  z' += s * a_delta                              elif a_delta > 0       (additive)
  z' = z' * (1 - s) + s * P_scale                otherwise              (set to P_scale)
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from expstdp.eager import compiled
from expstdp.validation import check_array, check_real, concrete_value, is_int


def _decay_kind(decay_type: str) -> str:
  # As ngclearn: the type is matched by substring ("exponential" is "exp").
  if not isinstance(decay_type, str):
    raise TypeError(f"decay_type must be a string, got {decay_type!r}.")
  for kind in ("exp", "lin"):
    if kind in decay_type:
      return kind
  if decay_type != "step":
    raise ValueError(f"decay_type must contain 'exp' or 'lin', or be 'step'; got {decay_type!r}.")
  return "step"


def _check_numbers(shape, **values):
  """Real, finite where concrete, and broadcastable to the trace's shape
  without widening it (a NaN gamma_tr or a string a_delta was taken)."""
  for name, x in values.items():
    check_real(name, x, f"a real number (or an array broadcastable to the trace's shape {shape})")
    try:
      fits = jnp.broadcast_shapes(np.shape(x), shape) == tuple(shape)  # jnp: symbolic sizes too
    except ValueError:
      fits = False
    if not fits:
      raise ValueError(f"{name} must be a number or an array broadcastable to the trace's shape "
                       f"{shape}, got shape {np.shape(x)}.")


def update(trace: ArrayLike, spikes: ArrayLike, *, dt: ArrayLike, tau_tr: ArrayLike,
           a_delta: ArrayLike = 0.0, P_scale: ArrayLike = 1.0, gamma_tr: ArrayLike = 1.0,
           decay_type: str = "exp", n_nearest_spikes: int = 0) -> jax.Array:
  """One step of a spike trace; returns the new trace.

  Args:
    trace: (..., n) float trace z.
    spikes: spikes s, same shape and dtype as `trace`.
    dt, tau_tr: time step and trace time constant.
    a_delta: increment per spike; <= 0 selects the gated "set" trace, which
      jumps to `P_scale` at a spike (traced value).
    P_scale: value of the gated trace at a spike (traced value).
    gamma_tr: extra factor on the decay (traced value).
    decay_type: static; "exp", "lin" or "step" (matched by substring, as ngclearn).
    n_nearest_spikes: static int; k > 0 gives the k-nearest-spike trace.

  `dt`, `tau_tr`, `a_delta`, `P_scale` and `gamma_tr` are traced values,
  numbers or arrays broadcastable to the trace's shape (a time constant per
  neuron, say), and must be finite.
  """
  if not hasattr(trace, "dtype"):
    raise TypeError(f"trace must be a floating array, got {type(trace).__name__}.")
  if not jnp.issubdtype(trace.dtype, jnp.floating):
    raise TypeError(f"trace must be a floating array, got dtype {jnp.dtype(trace.dtype).name}.")
  trace = jnp.asarray(trace)  # a numpy float64 trace is float32 to JAX without x64, as spikes are
  if np.shape(spikes) != jnp.shape(trace):  # say where the expected shape comes from
    raise ValueError(f"spikes must have the shape of trace, {jnp.shape(trace)}, got "
                     f"{np.shape(spikes)}.")
  check_array("spikes", spikes, jnp.shape(trace), trace.dtype, owner="the trace's")
  if not is_int(n_nearest_spikes) or n_nearest_spikes < 0:
    raise ValueError(f"n_nearest_spikes must be a static int >= 0, got {n_nearest_spikes!r}.")
  n_nearest_spikes = int(n_nearest_spikes)
  _check_numbers(jnp.shape(trace), dt=dt, tau_tr=tau_tr, a_delta=a_delta, P_scale=P_scale,
                 gamma_tr=gamma_tr)
  tau, step = concrete_value(tau_tr), concrete_value(dt)
  if tau is not None and not (tau > 0).all():
    raise ValueError(f"tau_tr must be > 0, got {tau_tr!r}.")
  if step is not None and not (step >= 0).all():
    raise ValueError(f"dt must be >= 0, got {dt!r}.")
  # dt / tau_tr divided here, in Python for numbers, as ngclearn divides them.
  return _update(trace, spikes, dt / tau_tr, a_delta, P_scale, gamma_tr,
                 kind=_decay_kind(decay_type), n_nearest_spikes=n_nearest_spikes)


@compiled(static_argnames=("kind", "n_nearest_spikes"))
def _update(trace, spikes, dt_over_tau, a_delta, P_scale, gamma_tr, *, kind, n_nearest_spikes):
  dtype = trace.dtype
  cast = lambda x: jnp.asarray(x, dtype)
  if kind == "exp":
    decay = jnp.exp(-cast(dt_over_tau))
  elif kind == "lin":
    decay = 1 - cast(dt_over_tau)
  else:
    decay = cast(0.0)
  decayed = cast(gamma_tr) * trace * decay
  a_delta = cast(a_delta)
  if n_nearest_spikes > 0:
    return decayed + spikes * (a_delta - trace / cast(n_nearest_spikes))  # any int, as a float
  additive = decayed + spikes * a_delta
  gated = decayed * (1 - spikes) + spikes * cast(P_scale)
  return jnp.where(a_delta > 0, additive, gated)
