"""Event-driven `evolve` and `forward`: work only on the rows and columns of W
whose neurons spiked.

With spikes at a few percent per step, dW is exactly 0 outside the rows of
pre-synaptic neurons that spiked (LTD) and the columns of post-synaptic
neurons that spiked (LTP and the x_tar term). Once every weight lies in
[w_eps, w_bound - w_eps] or is masked to 0, evolve leaves those weights
unchanged (the clip is idempotent), so only the active rows and columns
need computing. Capacities are static (`max_pre`, `max_post`, `max_active`);
when more neurons spike than fit, the dense computation runs instead.

The loops over active rows and columns run on CPU only. On other backends
these functions compute densely (the same results): a GPU runs each trip of a
loop with a traced trip count as separate kernels plus a copy of the loop
condition to the host, some microseconds a trip, which for ~100 active
neurons costs more than a dense evolve of millions of weights there. So they
do for arrays sharded over an Explicit mesh axis, and for arrays of a
symbolic size (`jax.export` with symbolic shapes).
"""

import functools

import jax
import jax.numpy as jnp

from expstdp import backend
from expstdp.eager import compiled, traced
from expstdp.synapse import _outputs as _dense_outputs
from expstdp.synapse import (_MAX_BROADCAST_ROWS, _apply_dW, _dW, _evolve, _forward_precision,
                             _scalar, _scale_and_bias, _sum_of_outer_products, _with_activity)
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import (check_eta, check_state, check_static_bool, dtype_of, is_int,
                                 validate_params)


def clip_weights(state: SynapseState, params: ExpSTDPParams) -> SynapseState:
  """Puts every weight in [w_eps, w_bound - w_eps] and masked ones at 0: what
  any evolve does, and the precondition of `evolve_events`. Call it once on a
  state whose initial weights may lie outside that range."""
  check_state(state)
  validate_params(params, dtype_of(state.weights))  # crossed bounds would zero every weight
  return state._replace(weights=_clip(params, state.weights, state.weight_mask))


@compiled
def _clip(params, W, mask):
  w_eps, w_bound = _scalar(params.w_eps, W.dtype), _scalar(params.w_bound, W.dtype)
  return jnp.where(mask, jnp.clip(W, w_eps, w_bound - w_eps), jnp.zeros((), W.dtype))


def _compact(active: jax.Array, size: int):
  """The indices of the first `size` True entries of a 1-D bool `active`, in
  order, and the number of True entries. Slots past that number hold no
  index in particular (the loops below never read them)."""
  k = _NEURONS_PER_TRIP
  active = jnp.pad(active, (0, -active.shape[0] % k))  # inactive neurons past the end

  # Each neuron writes its index at the current count, which only an active
  # neuron moves on. A loop that touches a few bytes a trip is compiled by
  # XLA:CPU into a single call (it runs each trip of a larger one as separate
  # kernels): 1.9 us at 784 neurons, where jnp.nonzero's cumulative sum took
  # 7 us (a tree of tiny kernels) and a cumulative sum by matmuls with a
  # triangular matrix 4 us. Only the CPU branches of the functions below
  # call it.
  def visit(t, carry):
    index, count = carry
    t = jnp.asarray(t, jnp.int32)  # int64 with jax_enable_x64, a Python int under disable_jit
    for j in range(k):
      i = t * k + j
      # dynamic_update_slice clamps the start: writes past `size` land in the
      # last slot of the scratch (an explicit minimum cost 8-12% more).
      index = jax.lax.dynamic_update_slice(index, i[None], (count,))
      count = count + active[i].astype(jnp.int32)
    return index, count

  carry = _varying((jnp.zeros((size + 1,), jnp.int32), jnp.int32(0)), active)
  index, count = jax.lax.fori_loop(0, active.shape[0] // k, visit, carry)
  return index[:size], count


# Neurons per trip of `_compact`'s loop: a trip's own cost is that of a few
# neurons (784 neurons in lax.scan: 2.6 us one a trip, 2.0 us eight, 2.2 us
# sixteen; on jax 0.12 2.0, 1.35 and 1.5 us).
_NEURONS_PER_TRIP = 8


# XLA:CPU compiles a while loop that touches fewer bytes per trip than this
# (its default xla_cpu_small_while_loop_byte_threshold) into a single call, and
# runs every trip of a larger one as separate kernels, ~0.1-0.3 us each. A
# trip's indices and scalars stay under the margin (measured: 150-200 bytes).
_SMALL_LOOP_BYTES, _MARGIN = 1024, 200


def _piece(length: int, bytes_per_element: int) -> int:
  """How many elements of a row of W one loop trip takes: the largest
  divisor of `length` that keeps a trip under XLA:CPU's small-loop
  threshold, or the whole row when that divisor would be under a quarter of
  what fits (a prime length, say: trips too short to pay)."""
  fits = max(1, (_SMALL_LOOP_BYTES - _MARGIN) // bytes_per_element)
  if length <= fits:
    return length
  best = max(d for d in range(1, fits + 1) if length % d == 0)
  return best if 4 * best >= fits else length


def _in_pieces(W, batch):
  """Whether rows go in pieces: in float32 with one or two batch elements (a
  scanned step; evolve also needs dW not kept). Otherwise XLA counts a trip
  at several times the bytes of its slices (narrower dtypes are computed in
  float32), and pieces that fit would be too short to pay. Not where XLA
  makes every loop a single call anyway (jax 0.12): whole rows are then
  faster (784 x 100 scanned step: 12.2 against 13.2 us)."""
  return W.dtype == jnp.float32 and batch <= 2 and not backend.hoists_every_loop()


def _rows_in_pieces(count, n_post, piece, body, carry):
  """`body(k, start, carry)` for active rows k < count (traced) and starts
  0, piece, ... < n_post: one piece of one row per loop trip."""
  pieces = n_post // piece
  return jax.lax.fori_loop(0, count * pieces,
                           lambda t, c: body(t // pieces, (t % pieces) * piece, c), carry)


def _check_capacity(name, value, limit):
  if not is_int(value) or value < 1:
    raise ValueError(f"{name} must be a positive int (a static capacity), got {value!r}.")
  return min(int(value), limit) if isinstance(limit, int) else int(value)  # symbolic: runs dense


def evolve_events(state: SynapseState, params: ExpSTDPParams, *, max_pre: int, max_post: int,
                  pre_spike=None, pre_trace=None, post_spike=None, post_trace=None,
                  with_d_weights: bool = True) -> SynapseState:
  """`evolve`, computing only the rows of pre-synaptic neurons that spiked and
  the columns of post-synaptic neurons that spiked (in any batch element).

  Returns the same state as `evolve` (weights to rounding, d_weights for
  0/1 spikes equal to a compiled evolve's; with a batch and rows of 4096 or
  more, only under `jitted.compiler_options`; from a batch of 4, to
  rounding: past 4 dW's sum over the batch is a matrix product, whose order
  of summation XLA picks by shape, and at 4 a rare weight rounds its sum of
  eight products differently; for spikes of other values, whose products
  round, to an ulp) provided that every weight already lies in
  [w_eps, w_bound - w_eps] or is masked to 0 (true after any evolve;
  `clip_weights` makes it true) and that spikes and traces are finite.
  Weights outside the active rows and columns are neither read nor written.
  With tau_w > 0 the decay touches every weight, so the dense computation
  runs.

  An eager call (nothing traced) raises a ValueError if the weights break
  that precondition (one more read of W). Under `jit` nothing checks it but
  `expstdp.checked`.

  Args:
    max_pre: static; at most this many active pre-synaptic neurons are
      handled event by event.
    max_post: static; the same for post-synaptic neurons. If either is
      exceeded, the dense computation runs (exact, at dense cost).
    with_d_weights: static, as in `evolve`. Storing d_weights zeroes an
      (N, M) buffer every call; False skips it and keeps the cost
      proportional to the number of spikes.

  Under `vmap`, and on backends other than CPU, it runs the dense `evolve`: a
  loop whose trip count differs between populations would select over all of
  W on every trip (and see the module's docstring for other backends). Its
  derivatives are those of `evolve` (computed densely).

  It also reads `state.outputs`, so that in a step that calls `forward` first
  XLA updates W in place after forward has read it (instead of copying W):
  call it with the state that forward returned. A column whose output is NaN
  counts as active (the same results).
  """
  check_static_bool("with_d_weights", with_d_weights)
  state = _with_activity(state, params, pre_spike=pre_spike, pre_trace=pre_trace,
                         post_spike=post_spike, post_trace=post_trace)
  check_eta(state)
  n_pre, n_post = state.weights.shape
  static = dict(max_pre=_check_capacity("max_pre", max_pre, n_pre),
                max_post=_check_capacity("max_post", max_post, n_post),
                with_d_weights=with_d_weights)
  if traced(state, params):
    return _evolve_events_or_dense(state, params, **static)
  new, in_range = _evolve_events_eagerly(state, params, **static)
  if not traced(in_range) and not in_range:  # traced: only constants while a jit is traced
    raise ValueError(
        "state.weights must lie in [params.w_eps, params.w_bound - params.w_eps], or be 0 where "
        "state.weight_mask is False, for evolve_events (it leaves the weights of idle neurons "
        "as they are, where evolve would clip them): call expstdp.clip_weights(state, params) "
        "once. (Checked on eager calls only; under jit, expstdp.checked checks it.)")
  return new


def _weights_in_range(state: SynapseState, params: ExpSTDPParams) -> jax.Array:
  """Whether `evolve_events` may skip the weights of idle neurons: a bool
  scalar, True if `clip_weights` would change no weight or if tau_w != 0
  (then it runs densely)."""
  dtype = state.weights.dtype
  W, w_eps = state.weights, _scalar(params.w_eps, dtype)
  hi = _scalar(params.w_bound, dtype) - w_eps
  kept = jnp.where(state.weight_mask, (W >= w_eps) & (W <= hi), W == 0)
  return jnp.all(kept) | (_scalar(params.tau_w, dtype) != 0)


def _evolve_events_or_dense(state, params, *, max_pre, max_post, with_d_weights):
  if _dense_only(state):
    return _evolve(state, params, with_d_weights=with_d_weights)
  loops = functools.partial(_evolve_events, max_pre=max_pre, max_post=max_post,
                            with_d_weights=with_d_weights)
  dense = functools.partial(_evolve, with_d_weights=with_d_weights)
  new = _loops_on_cpu(loops, dense)(state, params)
  # The rest of the state, as it was: passed through the platform switch, it
  # would be new values that XLA copies (into a fresh buffer when returned
  # from a jit).
  return state._replace(weights=new.weights, d_weights=new.d_weights)


# Eager calls run compiled (expstdp.eager) and check the precondition too:
# op by op, every call would compile the loops again (their bodies are new
# functions each time), 0.7-1 s at 784 x 6400.
@functools.partial(jax.jit, static_argnames=("max_pre", "max_post", "with_d_weights"))
def _evolve_events_eagerly(state, params, **static):
  return _evolve_events_or_dense(state, params, **static), _weights_in_range(state, params)


def _dense_only(tree) -> bool:
  """Whether the loops cannot run here, so the dense computation does: an
  array sharded over an Explicit mesh axis (jax cannot slice it at a traced
  offset, and one device's loop over another's rows would be no gain), or
  one with a symbolic size (`jax.export`: the loops' sizes depend on it)."""
  leaves = jax.tree.leaves(tree)
  symbolic = any(not isinstance(n, int) for x in leaves for n in jnp.shape(x))
  return symbolic or any(axis is not None for x in leaves for axis in jax.typeof(x).sharding.spec)


def _varying(tree, *like):
  """`tree` cast to vary over every manual mesh axis that some leaf of
  `like` varies over (inside `shard_map`), as a loop's carry or a cond's
  operands must to take the values that depend on `like`; `tree` itself
  elsewhere."""
  axes = frozenset().union(*map(_varying_axes, jax.tree.leaves(like)))

  def cast(x):
    missing = tuple(sorted(axes - _varying_axes(x)))
    if not missing:
      return x
    if hasattr(jax.lax, "pcast"):
      return jax.lax.pcast(x, missing, to="varying")
    return jax.lax.pvary(x, missing)  # jax < 0.9: pcast's predecessor

  return jax.tree.map(cast, tree)


def _varying_axes(x) -> frozenset:
  """The manual mesh axes over which `x` varies (empty outside shard_map)."""
  aval = jax.typeof(x)
  if hasattr(aval, "manual_axis_type"):
    return frozenset(aval.manual_axis_type.varying)
  return frozenset(getattr(aval, "vma", ()))  # jax < 0.9


def _loops_on_cpu(loops, dense):
  """A function that runs `loops` on CPU and `dense` (the same results) on
  other backends, under vmap and for derivatives."""

  @jax.custom_jvp
  @jax.custom_batching.custom_vmap
  def f(*args):
    return jax.lax.platform_dependent(*args, cpu=loops, default=dense)

  # A loop whose trip count differs between populations would select over
  # all of W on every trip.
  @f.def_vmap
  def dense_when_batched(axis_size, in_batched, *args):
    out = jax.vmap(dense, in_axes=tuple(_axes(in_batched)), axis_size=axis_size)(*args)
    return out, jax.tree.map(lambda _: True, out)

  # Reverse mode cannot go through a loop whose trip count is traced. The
  # dense tangents need the dense primal's intermediates, so its output
  # serves as the primal too.
  @f.defjvp
  def dense_derivatives(primals, tangents):
    return jax.jvp(dense, primals, tangents)

  return f


def _axes(in_batched):
  return jax.tree.map(lambda batched: 0 if batched else None, in_batched)


def _evolve_events(state, params, *, max_pre, max_post, with_d_weights):
  n_post = state.weights.shape[1]
  pre_active = jnp.any(state.pre_spike != 0, axis=0)
  # When a step calls forward and then evolve, the new W may take W's buffer
  # only after forward has read W. XLA sees that order only if the update
  # depends on forward's result (as it does when a neuron model turns the
  # outputs into spikes); otherwise it copies W every step (784 x 100 in
  # lax.scan: 35 vs 19 us). So the active columns, which set every loop's
  # trip count, read the outputs too: a column whose output is NaN is
  # computed in full by the column pass, as an active one is (the same
  # weights). An optimization barrier does not survive to where XLA decides.
  post_active = jnp.any((state.post_spike != 0) | jnp.isnan(state.outputs), axis=0)
  rows, n_rows = _compact(pre_active, max_pre)
  cols, n_cols = _compact(post_active, max_post)
  decays = _scalar(params.tau_w, state.weights.dtype) != 0
  dense = (n_rows > max_pre) | (n_cols > max_post) | decays
  W, mask, eta = state.weights, state.weight_mask, state.eta
  batch = state.pre_spike.shape[0]
  D = jnp.zeros_like(W) if with_d_weights else None
  W, D = _varying((W, D), state, params)
  full_mask = mask.shape != (1, 1)

  # The dense fallback. A lax.cond, not a loop of one trip or none: jax
  # 0.12's XLA:CPU runs every loop as one call on one thread (784 x 6400:
  # 4.6 instead of 2.5 ms), and the cond updates W in place as the loop did.
  def dense_evolve(W, D):
    new = _evolve(state._replace(weights=W, d_weights=D), params, with_d_weights=D is not None)
    return new.weights, new.d_weights

  W, D = jax.lax.cond(dense, dense_evolve, lambda W, D: (W, D), W, D)

  # Active rows first, for the LTD of pre-synaptic spikes: contiguous slices,
  # one row or a piece of one per trip. Outside active columns post_spike is
  # 0, and the row pass sees a zero post_trace inside them: dW is 0 there,
  # which leaves those weights as they are (the clip is idempotent) for the
  # column pass to compute in full.
  post_trace = jnp.where(post_active, jnp.zeros((), W.dtype), state.post_trace)
  in_pieces = _in_pieces(W, batch) and D is None
  piece = _piece(n_post, W.dtype.itemsize * (2 + batch) + full_mask) if in_pieces else n_post

  def row(k, start, carry):
    W, D = carry
    i = rows[k]
    w = jax.lax.dynamic_slice(W, (i, start), (1, piece))
    pre_spike = jax.lax.dynamic_slice_in_dim(state.pre_spike, i, 1, axis=1)
    dW = _ltd_dW(params, w, pre_spike, jax.lax.dynamic_slice_in_dim(post_trace, start, piece, axis=1))
    m = jax.lax.dynamic_slice(mask, (i, start), (1, piece)) if full_mask else mask
    W = jax.lax.dynamic_update_slice(W, _apply_dW(params, w, dW, eta, m), (i, start))
    return W, None if D is None else jax.lax.dynamic_update_slice(D, dW, (i, start))

  W, D = _rows_in_pieces(jnp.where(dense, 0, n_rows), n_post, piece, row, (W, D))

  # Then the active columns in full, one per trip: a column of a row-major W
  # is strided, and slicing it in a loop is cheaper than XLA:CPU's gather and
  # scatter (~4 ns per element). Not in pieces: a hoisted loop computes
  # strided pieces more slowly than whole columns as kernels (9.4 vs 7 us for
  # 5 columns of 784).
  def column(k, carry):
    W, D = carry
    j = cols[k]
    take = lambda x: jax.lax.dynamic_slice_in_dim(x, j, 1, axis=1)
    w = take(W)
    dW = _dW(params, w, state.pre_spike, state.pre_trace, take(state.post_spike),
             take(state.post_trace))
    W = jax.lax.dynamic_update_slice_in_dim(
        W, _apply_dW(params, w, dW, eta, take(mask) if full_mask else mask), j, axis=1)
    return W, None if D is None else jax.lax.dynamic_update_slice_in_dim(D, dW, j, axis=1)

  W, D = jax.lax.fori_loop(0, jnp.where(dense, 0, n_cols), column, (W, D))
  if D is None:
    return state._replace(weights=W)
  return state._replace(weights=W, d_weights=D)


def _ltd_dW(params, w, pre_spike, post_trace):
  """`_dW` of a piece of a row where no post-synaptic neuron spiked,
  computing only what is not zero there: exp(-beta W) * sum_k s_pre[k] *
  (-A_minus x_post[k]). The same bits as `_dW`, whose LTP products are exact
  zeros and x_tar term 0 here (a 784 x 100 scanned step 0.45 us faster).
  With more batch elements than `_dW` sums one by one, it sums by a matmul:
  then `_dW` itself runs."""
  batch = pre_spike.shape[0]
  if 2 * batch > _MAX_BROADCAST_ROWS:
    zeros = jnp.zeros_like
    return _dW(params, w, pre_spike, zeros(pre_spike), zeros(post_trace), post_trace)
  dtype = w.dtype
  hebbian = _sum_of_outer_products(pre_spike, -_scalar(params.A_minus, dtype) * post_trace)
  return jnp.exp(-_scalar(params.exp_beta, dtype) * w) * hebbian


def forward_events(state: SynapseState, params: ExpSTDPParams, inputs=None, *,
                   max_active: int) -> SynapseState:
  """`forward` reading only the rows of W whose input is non-zero in some
  batch element: for spike inputs, cost grows with the number of spikes.

  Equal to `forward` up to the order of the sum. Exact dense fallback when
  more than `max_active` (static) inputs are non-zero; dense on backends
  other than CPU (see the module's docstring).
  """
  state = _with_activity(state, params, inputs=inputs)
  n_pre = state.weights.shape[0]
  max_active = _check_capacity("max_active", max_active, n_pre)
  return state._replace(outputs=_outputs(state, params, max_active=max_active))


@compiled(static_argnames="max_active")
def _outputs(state, params, *, max_active):
  if _dense_only(state):  # forward's matmul (told its output sharding, if sharded)
    return _dense_outputs(params, state.weights, state.inputs, state.biases)
  return _scale_and_bias(params, _sparse_matmul(state.inputs, state.weights, max_active),
                         state.biases)


def _matmul(x, W):
  return jnp.matmul(x, W, precision=_forward_precision())


def _sparse_matmul(x, W, max_active):
  """x @ W, one row of W per non-zero column of x (B, N) when at most
  `max_active` are, else the matmul; dense under vmap, off CPU and for
  derivatives, as in evolve_events."""
  rows_or_matmul = functools.partial(_rows_or_matmul, max_active=max_active)
  return _loops_on_cpu(rows_or_matmul, _matmul)(x, W)


def _rows_or_matmul(x, W, *, max_active):
  rows, count = _compact(jnp.any(x != 0, axis=0), max_active)
  # Summed in at least float32, as a matmul of bfloat16 or float16 is (not
  # by promote_types, which jax_numpy_dtype_promotion="strict" refuses).
  acc = W.dtype if jnp.finfo(W.dtype).bits >= 32 else jnp.dtype(jnp.float32)

  batch, n_post = x.shape[0], W.shape[1]
  piece = (_piece(n_post, W.dtype.itemsize + 2 * batch * jnp.dtype(acc).itemsize)
           if _in_pieces(W, batch) else n_post)

  def add_row(k, start, total):
    i = rows[k]
    w = jax.lax.dynamic_slice(W, (i, start), (1, piece)).astype(acc)
    part = jax.lax.dynamic_slice_in_dim(total, start, piece, axis=1)
    part = part + jax.lax.dynamic_slice_in_dim(x, i, 1, axis=1).astype(acc) * w
    return jax.lax.dynamic_update_slice_in_dim(total, part, start, axis=1)

  def rows_only(x, W):
    total = _rows_in_pieces(count, n_post, piece, add_row,
                            _varying(jnp.zeros((batch, n_post), acc), x, W))
    return total.astype(W.dtype)

  return jax.lax.cond(count <= max_active, rows_only, _matmul, x, W)
