"""The ExpSTDP synapse as pure functions: `init`, `forward`, `compute_dW`,
`evolve` and `reset`.

The rule is ngclearn's `ExpSTDPSynapse` (Diehl & Cook 2015, eq. 4, as ngclearn
writes it). For weights W (N, M), batch B:

  dW = A_plus  * (exp(-beta W) * (x_pre^T s_post)
                  - exp(-beta (w_bound - W)) * x_tar * colsum(s_post))
     - A_minus * exp(-beta W) * (s_pre^T x_post)
  W' = mask * clip(W + eta dW - W / tau_w, w_eps, w_bound - w_eps)

where W - W / tau_w is computed as W * (1 - 1 / tau_w). Nothing here is
jitted: callers choose `jax.jit`, `vmap` and `scan`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from expstdp import backend, initializers
from expstdp.eager import compiled
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import (check_activity, check_array, check_eta, check_floating_dtype,
                                 check_for_state, check_real, check_state, check_static_bool,
                                 concrete_value, dtype_of, is_int, is_real, validate_params)

# Outer products of at most this many rows (batch 4) are cheaper broadcast
# inside the elementwise loop than as a GEMM call, whose (N, M) result makes
# a pass over memory of its own: a dense evolve at 4096 x 4096, batch 4,
# took 14 vs 36 ms. At batch 8 broadcasting could be 3x slower (with XLA's
# default YNNPACK fusion), so the GEMM takes over there (benchmarks/LOG.md).
_MAX_BROADCAST_ROWS = 8


def init(
    key: jax.Array,
    shape: Sequence[int],
    *,
    batch_size: int = 1,
    weight_init=None,
    bias_init=None,
    p_conn: float = 1.0,
    weight_mask=None,
    eta: ArrayLike = 1.0,
    dtype=jnp.float32,
) -> SynapseState:
  """Creates the state of an (n_pre, n_post) synapse.

  The same `key` gives the same initial weights as ngclearn's
  `ExpSTDPSynapse(..., key=key)` for ngclearn's `uniform`, `gaussian` and
  `constant` initializers and for `p_conn` (the key is split in the same way).

  Args:
    key: a PRNG key.
    shape: (n_pre, n_post).
    batch_size: B, the leading axis of inputs, spikes and traces.
    weight_init: `f(key, shape, dtype) -> Array`, the `jax.nn.initializers`
      convention; default `initializers.uniform(0.025, 0.8)` as ngclearn.
      Non-finite values (where connected) are refused, as for `bias_init`.
    bias_init: same convention, called with shape (1, n_post); None gives the
      scalar bias 0 (ngclearn's ExpSTDPSynapse has no bias).
    p_conn: probability in (0, 1] that a connection exists. Absent
      connections are recorded in `weight_mask` and stay 0 through evolve.
    weight_mask: optional array of bools or real numbers broadcastable to
      `shape`; 0 marks an absent connection (NaN is refused). Combined with
      the `p_conn` draw.
    eta: initial global learning rate.
    dtype: floating dtype of the weights and every other array of the state.
  """
  try:
    size = len(shape)
  except TypeError:  # an int, None, a 0-d array
    raise TypeError(
        f"shape must be (n_pre, n_post) with two positive ints, got {shape!r}.") from None
  if size != 2 or not all(is_int(n) and n > 0 for n in shape):
    raise ValueError(f"shape must be (n_pre, n_post) with two positive ints, got {shape!r}.")
  if not is_int(batch_size) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
  check_floating_dtype(dtype)
  if jnp.dtype(dtype).itemsize == 8 and not jax.config.jax_enable_x64:
    raise ValueError(f"dtype {jnp.dtype(dtype).name} needs 64-bit JAX (JAX would make every "
                     "array float32): jax.config.update('jax_enable_x64', True) first.")
  if isinstance(p_conn, jax.core.Tracer):
    raise TypeError("p_conn must be a concrete number, not a traced value: it decides whether "
                    "the state has an (N, M) weight_mask. Under jit or vmap, draw the mask "
                    "yourself and pass it as weight_mask (e.g. jax.random.bernoulli(key, p, "
                    "shape)).")
  if isinstance(p_conn, bool) or not isinstance(p_conn, (int, float, np.integer, np.floating)):
    raise TypeError(f"p_conn must be a number in (0, 1], got {p_conn!r}.")
  if not 0.0 < p_conn <= 1.0:
    raise ValueError(f"p_conn must be a number in (0, 1], got {p_conn!r}.")
  check_real("eta", eta, "a real scalar number")  # a NaN eta would make every weight NaN
  if np.ndim(eta) != 0:
    raise ValueError(f"eta must be a real scalar number, got shape {np.shape(eta)}.")
  for name, f in (("weight_init", weight_init), ("bias_init", bias_init)):
    if f is not None and not callable(f):
      raise TypeError(f"{name} must be a function f(key, shape, dtype) -> array (the "
                      f"jax.nn.initializers convention), got {type(f).__name__}.")
  shape, dtype = tuple(int(n) for n in shape), jnp.dtype(dtype)
  n_pre, n_post = shape

  try:
    _, key_w, key_conn, key_b = jax.random.split(key, 4)
  except (TypeError, ValueError):  # jax's message names neither the argument nor the fix
    got = f"shape {key.shape} and dtype {key.dtype}" if hasattr(key, "shape") else repr(key)
    raise TypeError(f"key must be one PRNG key, jax.random.key(seed) or jax.random.PRNGKey(seed), "
                    f"got {got} (for several synapses, jax.vmap init over several keys).") from None
  weight_init = initializers.uniform(0.025, 0.8) if weight_init is None else weight_init
  weights = jnp.asarray(weight_init(key_w, shape, dtype))
  check_array("weight_init(key, shape, dtype)", weights, shape, dtype)

  mask = None
  if p_conn < 1.0:
    mask = jax.random.bernoulli(key_conn, p_conn, shape)
  if weight_mask is not None:
    try:  # (jnp.asarray would parse a string)
      given = None if isinstance(weight_mask, (str, bytes)) else jnp.asarray(weight_mask)
    except TypeError:
      given = None
    if given is None or not (given.dtype == jnp.bool_ or is_real(given)):
      raise TypeError(f"weight_mask must be an array of bools or real numbers (0 marks an "
                      f"absent connection), got {weight_mask!r}.")
    if (value := concrete_value(given)) is not None and np.isnan(value).any():
      raise ValueError("weight_mask must not contain NaN (NaN != 0 would count as connected).")
    try:
      given = jnp.broadcast_to(given != 0, shape)
    except ValueError:
      raise ValueError(
          f"weight_mask must be broadcastable to {shape}, got shape {np.shape(weight_mask)}."
      ) from None
    mask = given if mask is None else mask & given
  if mask is None:
    mask = jnp.ones((1, 1), bool)
  else:
    weights = jnp.where(mask, weights, jnp.zeros((), dtype))
  _check_finite("weight_init(key, shape, dtype)", weights)  # where connected

  if bias_init is None:
    biases = jnp.zeros((), dtype)
  else:
    biases = jnp.asarray(bias_init(key_b, (1, n_post), dtype))
    check_array("bias_init(key, (1, n_post), dtype)", biases, (1, n_post), dtype)
    _check_finite("bias_init(key, (1, n_post), dtype)", biases)

  # A fresh buffer per field, so that a caller may donate the whole state.
  def pre():
    return jnp.zeros((batch_size, n_pre), dtype)

  def post():
    return jnp.zeros((batch_size, n_post), dtype)

  return SynapseState(
      weights=weights,
      biases=biases,
      weight_mask=mask,
      eta=jnp.asarray(eta, dtype),
      inputs=pre(),
      outputs=post(),
      pre_spike=pre(),
      post_spike=post(),
      pre_trace=pre(),
      post_trace=post(),
      d_weights=jnp.zeros(shape, dtype),
  )


def _check_finite(name, x):
  """Where concrete. A NaN weight would stay NaN through every evolve (the
  clip keeps it), and an infinite one would become w_bound - w_eps unseen."""
  finite = _all_finite(x)
  if not isinstance(finite, jax.core.Tracer) and not finite:
    raise ValueError(f"{name} returned non-finite values (NaN or inf).")


@compiled  # one program per shape, not one for isfinite and one for all
def _all_finite(x):
  return jnp.all(jnp.isfinite(x))


def _scalar(x, dtype) -> jax.Array:
  # Hyperparameters take the weights' dtype, so a float32 scalar never
  # promotes bfloat16 weights (and a weak Python float never demotes float64).
  return jnp.asarray(x, dtype)


def forward(state: SynapseState, params: ExpSTDPParams, inputs=None) -> SynapseState:
  """outputs = (inputs @ W) * resist_scale + biases.

  As in ngclearn, `weight_mask` is not applied here: evolve keeps masked
  weights at exactly 0, so W is already masked unless the caller overwrote it.
  The product is float32 on every backend (a GPU's default is TF32) unless
  `jax.default_matmul_precision` is set.

  Args:
    state: the synapse state.
    params: hyperparameters (only `resist_scale` is read).
    inputs: optional (B, N) input; default `state.inputs`. Stored in the
      returned state.

  Returns:
    `state` with `inputs` and `outputs` replaced.
  """
  state = _with_activity(state, params, inputs=inputs)
  return state._replace(outputs=_outputs(params, state.weights, state.inputs, state.biases))


@compiled
def _outputs(params, weights, inputs, biases):
  outputs = jnp.matmul(inputs, weights, precision=_forward_precision(),
                       out_sharding=_explicit_outputs_sharding(inputs, weights))
  return _scale_and_bias(params, outputs, biases)


def _forward_precision():
  """Forward multiplies in float32 (HIGHEST), unless JAX was told another
  default (`jax.default_matmul_precision`): a GPU's default is TF32, which at
  batch 1024 x 4096 x 4096 on an H200 took 99 instead of 688 us, with
  errors of 5.6e-5 instead of 8.6e-7 of the largest output. dW's products
  are always float32: they cost memory, not arithmetic."""
  if jax.config.jax_default_matmul_precision is None:
    return jax.lax.Precision.HIGHEST
  return None


def _scale_and_bias(params, products, biases):
  return products * _scalar(params.resist_scale, products.dtype) + biases


def _explicit_outputs_sharding(inputs, weights):
  """Under explicit sharding, a matmul over a sharded contracting axis must be
  told its output sharding: the batch axis as in `inputs`, the post-synaptic
  axis as in `weights` (summed over the pre-synaptic shards). None otherwise."""
  w, x = jax.typeof(weights).sharding, jax.typeof(inputs).sharding
  if not getattr(w.mesh, "are_all_axes_explicit", False):
    return None
  return jax.sharding.NamedSharding(w.mesh, jax.sharding.PartitionSpec(x.spec[0], w.spec[1]))


def _sum_of_outer_products(a: jax.Array, b: jax.Array) -> jax.Array:
  """sum_k a[k, :, None] * b[k, None, :], i.e. a.T @ b, for a (K, N), b (K, M)."""
  if isinstance(a.shape[0], int) and a.shape[0] <= _MAX_BROADCAST_ROWS:  # not a symbolic batch
    if a.shape[0] > 2 and 1 not in (a.shape[1], b.shape[1]):  # (== decides symbolic sizes)
      # b's rows vary along the vectorised inner loop. With two or more
      # batch elements (more than two rows: _dW's product has two per
      # element), XLA:CPU fused their slicing (from a scan's per-step slice
      # of recorded activity) into the loop over every weight: 784 x 100 in
      # lax.scan, batch 2, 390 vs 86 us a step. Computed first, they
      # are plain loads (a single call at 4096 x 4096 pays ~20% for that).
      # Not for one row or column of W, the event-driven passes, where it
      # costs kernels.
      b = jax.lax.optimization_barrier(b)
    return sum(a[k][:, None] * b[k][None, :] for k in range(a.shape[0]))
  return jax.lax.dot_general(
      a, b, (((0,), (0,)), ((), ())), precision=jax.lax.Precision.HIGHEST
  )


@compiled
def _dW(params, weights, pre_spike, pre_trace, post_spike, post_trace) -> jax.Array:
  dtype = weights.dtype
  A_plus, A_minus, beta, x_tar, w_bound = (
      _scalar(v, dtype)
      for v in (params.A_plus, params.A_minus, params.exp_beta, params.pretrace_target,
                params.w_bound)
  )
  # LTP and LTD share the factor exp(-beta W): one product of inner size 2B.
  hebbian = _sum_of_outer_products(
      jnp.concatenate([pre_trace, pre_spike], axis=0),
      jnp.concatenate([A_plus * post_spike, -A_minus * post_trace], axis=0),
  )
  # The x_tar term is the same for every row i: a (1, M) row, not a matmul.
  target = (A_plus * x_tar) * jnp.sum(post_spike, axis=0, keepdims=True)
  e_hebb = jnp.exp(-beta * weights)
  # exp(-beta (w_bound - W)) = exp(-beta w_bound) / exp(-beta W): one exponential
  # per weight instead of two (the exp is the cost of evolve). Exact to a few ulp
  # while |beta| * max(w_bound, |W|) <= max_exponent(dtype), which
  # validate_params enforces; the guard on the divisor also stops XLA from
  # turning the division back into a second exponential.
  target = jnp.exp(-beta * w_bound) * target
  return e_hebb * hebbian - target / jnp.maximum(e_hebb, jnp.finfo(dtype).tiny)


def compute_dW(params: ExpSTDPParams, weights, pre_spike, pre_trace, post_spike,
               post_trace) -> jax.Array:
  """The raw STDP update dW (before eta, decay, clip and mask).

  The batch is summed, not averaged, as in ngclearn.

  Args:
    params: hyperparameters.
    weights: (N, M) weights W.
    pre_spike: (B, N) pre-synaptic spikes s_pre.
    pre_trace: (B, N) pre-synaptic traces x_pre.
    post_spike: (B, M) post-synaptic spikes s_post.
    post_trace: (B, M) post-synaptic traces x_post.

  Returns:
    (N, M) dW in the weights' dtype.
  """
  check_activity(weights, pre_spike=pre_spike, pre_trace=pre_trace, post_spike=post_spike,
                 post_trace=post_trace)  # first: the weights' dtype sets the params' limits
  validate_params(params, dtype_of(weights))
  return _dW(params, weights, pre_spike, pre_trace, post_spike, post_trace)


def evolve(state: SynapseState, params: ExpSTDPParams, *, pre_spike=None, pre_trace=None,
           post_spike=None, post_trace=None, with_d_weights: bool = True) -> SynapseState:
  """One plasticity step: W' = mask * clip(W + eta dW - W / tau_w, w_eps, w_bound - w_eps).

  Spikes and traces are read from `state` unless given; given ones are stored
  in the returned state. Every weight is clipped on every call, even with no
  spikes or eta = 0 (as in ngclearn), and masked weights end exactly 0.

  Args:
    with_d_weights: static. False leaves `state.d_weights` as it was instead
      of storing dW: XLA:CPU writes dW in a second pass over memory (evolve
      takes ~1.5x as long at 4096 x 4096), so skip it when unused.

  Returns:
    `state` with new `weights` and `d_weights` (the raw dW), and any given
    spikes and traces.
  """
  check_static_bool("with_d_weights", with_d_weights)
  state = _with_activity(state, params, pre_spike=pre_spike, pre_trace=pre_trace,
                         post_spike=post_spike, post_trace=post_trace)
  check_eta(state)
  return _evolve(state, params, with_d_weights=with_d_weights)


@compiled(static_argnames="with_d_weights")
def _evolve(state, params, *, with_d_weights):
  operands = (state.weights, state.pre_spike, state.pre_trace, state.post_spike,
              state.post_trace)
  dW = _dW(params, *operands)
  dW_for_W = dW
  if with_d_weights and backend.fuses_siblings():
    # XLA:CPU's multi-output fusion writes W' and dW in one pass over memory
    # only if they are siblings, two loops reading W, not a loop producing dW
    # and one consuming it. So W' gets a dW of its own, computed again (the
    # same bits) from copies that XLA cannot merge with the first.
    dW_for_W = _dW(params, *jax.lax.optimization_barrier(operands))
  new_W = _apply_dW(params, state.weights, dW_for_W, state.eta, state.weight_mask)
  return state._replace(weights=new_W, d_weights=dW if with_d_weights else state.d_weights)


def _with_activity(state, params, **arrays):
  """Checks state and params and stores the given (non-None) arrays in state."""
  check_state(state)
  dtype = dtype_of(state.weights)
  validate_params(params, dtype)
  given = {}
  for name, x in arrays.items():
    if x is None:
      continue
    try:
      given[name] = jnp.asarray(x)
    except (TypeError, OverflowError):  # jax's message names no argument (an int over 2**63)
      raise TypeError(f"{name} must be an array of dtype {jnp.dtype(dtype).name}, got "
                      f"{type(x).__name__}.") from None
    check_for_state(name, given[name], np.shape(getattr(state, name)), dtype)
  return state._replace(**given)


def _apply_dW(params, W, dW, eta, mask):
  dtype = W.dtype
  tau_w = _scalar(params.tau_w, dtype)
  # W - W / tau_w as one multiply, W * (1 - 1 / tau_w), not a division per
  # weight (which costs as much as a quarter of evolve). tau_w = 0 means no
  # decay, and W * 1 is exactly W.
  keep = jnp.where(tau_w > 0, 1 - 1 / jnp.where(tau_w > 0, tau_w, 1), 1)
  w_eps, w_bound = _scalar(params.w_eps, dtype), _scalar(params.w_bound, dtype)
  hi = w_bound - w_eps
  # jnp.clip(x, w_eps, hi) as two selects, the same bits (tested): jnp.clip's
  # maximum and minimum also pass on a NaN bound, which XLA:CPU checks per
  # weight (a dense evolve at 4096 x 4096 took 5-8% longer on an AVX2 CPU,
  # benchmarks/LOG.md). The bounds are scalars, so that is done once here: a
  # NaN bound (hi is NaN if either is) makes every weight NaN through `keep`.
  keep = jnp.where(jnp.isnan(hi), hi, keep)
  x = W * keep + dW * _scalar(eta, dtype)
  x = jnp.where(x <= w_eps, w_eps, x)  # <=: maximum(-0, +0) is +0
  x = jnp.where(x > hi, hi, x)
  return jnp.where(mask, x, jnp.zeros((), dtype))


def reset(state: SynapseState) -> SynapseState:
  """Zeroes inputs, outputs, spikes, traces and d_weights; keeps weights,
  biases, weight_mask and eta (as ngclearn's reset)."""
  check_state(state)
  return _reset(state)


@compiled
def _reset(state):
  zero = jnp.zeros_like
  return state._replace(
      inputs=zero(state.inputs),
      outputs=zero(state.outputs),
      pre_spike=zero(state.pre_spike),
      post_spike=zero(state.post_spike),
      pre_trace=zero(state.pre_trace),
      post_trace=zero(state.post_trace),
      d_weights=zero(state.d_weights),
  )
