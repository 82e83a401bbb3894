"""The event-driven functions return what the dense ones return."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import expstdp
from expstdp import events
from conftest import run_with_xla_flags

N, M = 23, 17
PARAMS = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.6, exp_beta=2.0, pretrace_target=0.2)

dense_evolve = jax.jit(expstdp.evolve, static_argnames="with_d_weights")
event_evolve = jax.jit(expstdp.evolve_events, static_argnames=("max_pre", "max_post", "with_d_weights"))


compact = jax.jit(events._compact, static_argnums=1)


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 39, 40, 41, 1100]), density=st.sampled_from([0.0, 0.03, 0.5, 1.0]),
       seed=st.integers(0, 2**31))
def test_compact_is_nonzero_and_counts(n, density, seed):
  """Fewer neurons than the capacity (40), as many, more; overflow; none and all."""
  active = np.random.default_rng(seed).uniform(size=n) < density
  index, count = compact(active, 40)
  found = np.flatnonzero(active)[:40]
  np.testing.assert_array_equal(index[:len(found)], found)
  assert index.shape == (40,) and count == active.sum()


def _case(seed, batch, rate, p_conn):
  rng = np.random.default_rng(seed)
  state = expstdp.init(jax.random.PRNGKey(seed % 1000), (N, M), batch_size=batch, p_conn=p_conn,
                       eta=float(rng.uniform(0.1, 2.0)))
  act = dict(
      pre_spike=(rng.uniform(size=(batch, N)) < rate).astype(np.float32),
      post_spike=(rng.uniform(size=(batch, M)) < rate).astype(np.float32),
      pre_trace=rng.uniform(0, 1.5, (batch, N)).astype(np.float32),
      post_trace=rng.uniform(0, 1.5, (batch, M)).astype(np.float32),
  )
  return expstdp.clip_weights(state, PARAMS), act


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.sampled_from([1, 3, 6]), rate=st.sampled_from([0.0, 0.05, 0.2, 1.0]),
       p_conn=st.sampled_from([1.0, 0.6]), tau_w=st.sampled_from([0.0, 10.0]),
       capacity=st.sampled_from([1, 4, 64]))
def test_evolve_events_equals_evolve(seed, batch, rate, p_conn, tau_w, capacity):
  """Also when the capacity overflows (dense fallback) and with tau_w > 0.
  d_weights bit for bit up to batch 3; past 4, dW's sum over the batch is a
  matrix product, whose order of summation XLA:CPU picks by shape (at 4 a
  rare weight rounds differently: one in 120 random cases)."""
  state, act = _case(seed, batch, rate, p_conn)
  params = PARAMS._replace(tau_w=tau_w)
  expected = dense_evolve(state, params, **act)
  got = event_evolve(state, params, max_pre=capacity, max_post=capacity, **act)
  np.testing.assert_allclose(got.weights, expected.weights, rtol=0, atol=1e-6)
  if batch <= 3:
    np.testing.assert_array_equal(got.d_weights, expected.d_weights)
  else:
    np.testing.assert_allclose(got.d_weights, expected.d_weights, rtol=2e-6, atol=2e-6)
  np.testing.assert_array_equal(got.pre_spike, act["pre_spike"])
  without = event_evolve(state, params, max_pre=capacity, max_post=capacity, with_d_weights=False, **act)
  np.testing.assert_array_equal(without.weights, got.weights)
  np.testing.assert_array_equal(without.d_weights, state.d_weights)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), sign=st.sampled_from([1.0, -1.0]))
def test_spikes_of_other_values_give_what_evolve_gives_to_an_ulp(seed, sign):
  """Spikes scaled by real values: active where non-zero; their products
  round, so dW's sums may round differently than the dense evolve's."""
  state, act = _case(seed, 2, 0.2, 1.0)
  scale = np.random.default_rng(seed).uniform(0.1, 2.0, (2, N + M)).astype(np.float32) * sign
  act = dict(act, pre_spike=act["pre_spike"] * scale[:, :N],
             post_spike=act["post_spike"] * scale[:, N:])
  expected = dense_evolve(state, PARAMS, **act)
  got = event_evolve(state, PARAMS, max_pre=64, max_post=64, **act)
  np.testing.assert_allclose(got.weights, expected.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(got.d_weights, expected.d_weights, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16])
def test_event_driven_functions_run_with_x64_and_strict_promotion(dtype):
  """With jax_enable_x64 the loops count in int64, and the search for active
  neurons stores the count in int32 slots (a TypeError until it cast it);
  with strict dtype promotion, forward_events chose its accumulator by
  promote_types, which that mode refuses."""
  with jax.enable_x64(True), jax.numpy_dtype_promotion("strict"):
    state, act = _case(5, 1, 0.2, 1.0)
    cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    state, act = jax.tree.map(cast, state), jax.tree.map(cast, act)
    expected = dense_evolve(state, PARAMS, **act)
    got = event_evolve(state, PARAMS, max_pre=8, max_post=8, **act)
    assert got.weights.dtype == dtype
    np.testing.assert_array_equal(got.d_weights, expected.d_weights)
    atol = 1e-6 if jnp.finfo(dtype).bits >= 32 else 0  # bfloat16 rounds both the same
    np.testing.assert_allclose(got.weights.astype(np.float64), expected.weights.astype(np.float64),
                               rtol=0, atol=atol)
    outputs = expstdp.forward_events(got, PARAMS, act["pre_spike"], max_active=8).outputs
    np.testing.assert_allclose(outputs.astype(np.float64),
                               expstdp.forward(got, PARAMS, act["pre_spike"]).outputs.astype(np.float64),
                               rtol=1e-6 if jnp.finfo(dtype).bits >= 32 else 1e-2)
    # The jitted entry points pack the params in float64 here.
    jitted = expstdp.jitted.evolve(jax.tree.map(jnp.copy, state), PARAMS, **act)
    jax.tree.map(np.testing.assert_array_equal, jitted, expected)


def test_event_driven_functions_run_under_disable_jit():
  """Under jax.disable_jit the loops run in Python, with Python ints for
  counters. Op by op, nothing is fused, so d_weights may differ from the
  dense evolve's in the last bit (as a jitted evolve's do from an eager one)."""
  state, act = _case(9, 2, 0.2, 1.0)
  expected = expstdp.evolve(state, PARAMS, **act)
  with jax.disable_jit():
    got = expstdp.evolve_events(state, PARAMS, max_pre=8, max_post=8, **act)
    outputs = expstdp.forward_events(got, PARAMS, act["pre_spike"], max_active=8).outputs
  np.testing.assert_allclose(got.weights, expected.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(got.d_weights, expected.d_weights, rtol=1e-6, atol=1e-7)
  # In numpy: a GPU multiplies float32 in TF32 by default (expstdp does not).
  np.testing.assert_allclose(outputs, act["pre_spike"] @ np.asarray(got.weights), rtol=1e-6)


def test_nan_outputs_change_nothing():
  """evolve_events reads the outputs only to order itself after forward: a
  NaN output makes its column active, which gives the same weights."""
  state, act = _case(7, 1, 0.1, 1.0)
  outputs = np.zeros((1, M), np.float32)
  outputs[0, [2, 5, 11]] = np.nan
  state = state._replace(outputs=jnp.asarray(outputs))
  expected = dense_evolve(state, PARAMS, **act)
  for capacity in (2, 16):  # over capacity with the NaN columns: the dense fallback
    got = event_evolve(state, PARAMS, max_pre=16, max_post=capacity, **act)
    np.testing.assert_allclose(got.weights, expected.weights, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.d_weights, expected.d_weights)


def test_vmap_over_populations_equals_a_loop():
  """Populations that would take different paths: sparse, no spikes, and
  over capacity. Under vmap both functions run dense."""
  cases = [_case(seed, 1, rate, 1.0) for seed, rate in ((1, 0.1), (2, 0.0), (3, 1.0))]

  def step(state, act):
    state = expstdp.evolve_events(state, PARAMS, max_pre=4, max_post=4, **act)
    return expstdp.forward_events(state, PARAMS, act["pre_spike"], max_active=4)

  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  vmapped = jax.jit(jax.vmap(step))(stack([s for s, _ in cases]), stack([a for _, a in cases]))
  looped = stack([jax.jit(step)(s, a) for s, a in cases])
  np.testing.assert_allclose(vmapped.weights, looped.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(vmapped.outputs, looped.outputs, rtol=1e-6, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, vmapped._replace(weights=0, outputs=0),
               looped._replace(weights=0, outputs=0))


WIDE = (31, 200)  # rows of 200 go in pieces of 50 (float32, batch <= 2, no dW kept)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.sampled_from([1, 2]),
       rate=st.sampled_from([0.05, 0.3]), p_conn=st.sampled_from([1.0, 0.6]))
def test_rows_in_pieces_give_what_whole_rows_give(seed, batch, rate, p_conn):
  """The weights of the dense evolve and of whole rows (kept dW), and the
  outputs of the dense forward. To rounding: compiled into one call, the
  pieces may round an element differently (one ulp in 6200, seen with jax
  0.8.0; bit for bit with 0.10.2)."""
  assert events._piece(WIDE[1], 4 * (2 + batch) + 1) < WIDE[1]
  rng = np.random.default_rng(seed)
  state = expstdp.clip_weights(expstdp.init(jax.random.PRNGKey(seed % 1000), WIDE,
                                            batch_size=batch, p_conn=p_conn), PARAMS)
  act = {name: (rng.uniform(size=(batch, n)) < rate if "spike" in name
                else rng.uniform(0, 1.5, (batch, n))).astype(np.float32)
         for name, n in (("pre_spike", WIDE[0]), ("pre_trace", WIDE[0]),
                         ("post_spike", WIDE[1]), ("post_trace", WIDE[1]))}
  pieces = event_evolve(state, PARAMS, max_pre=WIDE[0], max_post=WIDE[1], with_d_weights=False,
                        **act)
  rows = event_evolve(state, PARAMS, max_pre=WIDE[0], max_post=WIDE[1], **act)
  np.testing.assert_allclose(pieces.weights, rows.weights, rtol=0, atol=1e-6)
  np.testing.assert_allclose(pieces.weights, dense_evolve(state, PARAMS, **act).weights, rtol=0,
                             atol=1e-6)
  fwd = jax.jit(expstdp.forward_events, static_argnames="max_active")
  got = fwd(state, PARAMS, act["pre_spike"], max_active=WIDE[0]).outputs
  np.testing.assert_allclose(got, expstdp.forward(state, PARAMS, act["pre_spike"]).outputs,
                             rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's small-loop threshold")
@pytest.mark.parametrize("shape", [(784, 100), (784, 6400)])
def test_rows_in_pieces_compile_into_single_calls(shape):
  """Each piece of a row stays under XLA:CPU's small-loop threshold, so the
  row loops of evolve (without dW) and forward compile into single calls,
  like the loops that find the active neurons: 3 and 2 in all (4 and 2 where
  XLA makes every loop a single call, the columns' too)."""
  state = expstdp.init(jax.random.PRNGKey(0), shape)
  calls = lambda f: jax.jit(f).lower(state).compile().as_text().count('xla_cpu_small_call="true"')
  evolve_calls = calls(lambda s: expstdp.evolve_events(s, PARAMS, max_pre=64, max_post=64,
                                                       with_d_weights=False))
  assert evolve_calls == (4 if expstdp.backend.hoists_every_loop() else 3)
  assert calls(lambda s: expstdp.forward_events(s, PARAMS, max_active=64)) == 2


def test_forward_then_evolve_in_a_scan_updates_w_in_place():
  """A scanned step of forward_events then evolve_events, where evolve does
  not use forward's outputs, copies W only where the scan begins (W and
  d_weights enter the loop), never inside the loop body."""
  state = expstdp.init(jax.random.PRNGKey(0), (N, M))
  xs = jnp.zeros((4, 1, N), jnp.float32)

  def run(s):
    def step(s, x):
      s = expstdp.forward_events(s, PARAMS, x, max_active=4)
      return expstdp.evolve_events(s, PARAMS, max_pre=4, max_post=4, with_d_weights=False), None
    return jax.lax.scan(step, s, xs)[0]
  text = jax.jit(run).lower(state).compile().as_text()
  assert len(re.findall(rf"f32\[{N},{M}\]\{{1,0\}} copy\(", text)) == 2


@pytest.mark.parametrize("with_d_weights", [False, True])
def test_compiler_options_change_no_bit_in_scanned_steps(with_d_weights):
  """The options change how XLA:CPU compiles the loops; a scanned network,
  event-driven and dense, evolving before and after forward reads W, is
  the same."""
  state = expstdp.clip_weights(expstdp.init(jax.random.PRNGKey(5), (N, M), eta=0.3), PARAMS)
  xs = jnp.asarray(np.random.default_rng(5).uniform(size=(40, 1, N)) < 0.2, jnp.float32)
  thresholds = jnp.linspace(0.5, 2.5, M)

  def run(s):
    def step(s, x):
      # Evolving with the last step's activity, then reading W (each step's
      # activity is learned twice, once by each evolve: a program to compile
      # both ways, not a model).
      s = expstdp.evolve_events(s, PARAMS, max_pre=8, max_post=4, with_d_weights=with_d_weights)
      s = expstdp.forward_events(s, PARAMS, x, max_active=8)
      post = (s.outputs > thresholds).astype(jnp.float32)
      s = s._replace(pre_spike=x, post_spike=post, pre_trace=0.8 * s.pre_trace + x,
                     post_trace=0.8 * s.post_trace + post)
      return expstdp.evolve(s, PARAMS, with_d_weights=with_d_weights), post.sum()
    return jax.lax.scan(step, s, xs)

  plain = jax.jit(run)(state)
  tuned = jax.jit(run, compiler_options=expstdp.jitted.compiler_options())(state)
  assert np.any(plain[0].weights != state.weights) and plain[1].sum() > 0
  jax.tree.map(np.testing.assert_array_equal, tuned, plain)


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="off CPU the event-driven evolve runs the dense one (expstdp.events)")
def test_events_touch_only_active_rows_and_columns():
  state, act = _case(1, 1, 0.1, 1.0)
  # Weights outside the range would be clipped by a dense evolve; the event
  # path does not read them (hence the precondition and clip_weights).
  state = state._replace(weights=state.weights.at[:, :].set(5.0))
  got = np.asarray(event_evolve(state, PARAMS, max_pre=N, max_post=M, **act).weights)
  idle = ~(act["pre_spike"].any(0)[:, None] | act["post_spike"].any(0)[None, :])
  assert idle.any() and (~idle).any()
  assert np.all(got[idle] == 5.0)
  assert np.all((got[~idle] >= np.float32(0.01)) & (got[~idle] <= np.float32(0.99)))


def test_eager_evolve_events_refuses_weights_out_of_range():
  """It would leave them unclipped where evolve clips them. With tau_w > 0
  it runs densely, so any weights do."""
  state, act = _case(13, 1, 0.1, 0.6)
  masked = np.argwhere(~np.asarray(state.weight_mask))[0]
  for bad in (state.weights.at[0, 0].set(0.995), state.weights.at[tuple(masked)].set(0.5),
              state.weights.at[1, 2].set(np.nan)):
    with pytest.raises(ValueError, match=r"state\.weights must lie in .*clip_weights"):
      expstdp.evolve_events(state._replace(weights=bad), PARAMS, max_pre=4, max_post=4, **act)
  params = PARAMS._replace(tau_w=20.0)
  got = expstdp.evolve_events(state._replace(weights=bad), params, max_pre=4, max_post=4, **act)
  np.testing.assert_array_equal(got.weights, dense_evolve(state._replace(weights=bad), params, **act).weights)


def test_forward_events_equals_forward():
  fwd = jax.jit(expstdp.forward_events, static_argnames="max_active")
  for seed, rate in enumerate([0.0, 0.05, 0.3, 1.0]):
    state, act = _case(seed, 2, rate, 0.8)
    inputs = act["pre_spike"] * np.float32(0.7)
    expected = expstdp.forward(state, PARAMS, inputs).outputs
    for capacity in (1, 4, N):
      got = fwd(state, PARAMS, inputs, max_active=capacity)
      np.testing.assert_allclose(got.outputs, expected, rtol=1e-6, atol=1e-6)
      np.testing.assert_array_equal(got.inputs, inputs)


def test_derivatives_are_those_of_the_dense_functions():
  """jit(grad), jit(jvp) and vmap(grad) (reverse mode cannot go through the
  loops: a custom JVP gives the dense derivatives), for the loops and for
  the dense fallback."""
  state, act = _case(5, 2, 0.2, 0.8)
  inputs = act["pre_spike"] * np.float32(0.7)
  target = np.random.default_rng(5).uniform(size=(2, M)).astype(np.float32)

  def derivatives(forward, evolve):
    def loss(W, x):
      s = forward(state._replace(weights=W), PARAMS, x)
      return jnp.sum((s.outputs - target) ** 2) + jnp.sum(evolve(s, PARAMS, **act).weights ** 2)
    grad = jax.grad(loss, argnums=(0, 1))
    tangents = (jnp.ones_like(state.weights), jnp.full_like(inputs, 0.5))
    stacked = (jnp.stack([state.weights, state.weights * 0.5]), jnp.stack([inputs, inputs]))
    return (jax.jit(grad)(state.weights, inputs),
            jax.jit(lambda *p: jax.jvp(loss, p, tangents))(state.weights, inputs),
            jax.jit(jax.vmap(grad))(*stacked))

  dense = derivatives(expstdp.forward, expstdp.evolve)
  for capacity in (2, N):  # the dense fallback, and the loops
    sparse = derivatives(
        lambda s, p, x: expstdp.forward_events(s, p, x, max_active=capacity),
        lambda s, p, **a: expstdp.evolve_events(s, p, max_pre=capacity, max_post=capacity, **a))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), sparse, dense)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_forward_events_sums_low_precision_like_forward(dtype):
  """As accurate as the dense matmul, which accumulates in float32."""
  state = expstdp.init(jax.random.PRNGKey(0), (200, 30), dtype=dtype)
  inputs = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 200)) < 0.5, dtype)
  exact = np.asarray(inputs, np.float64) @ np.asarray(state.weights, np.float64)
  error = lambda out: np.abs(np.asarray(out, np.float64) - exact).max()
  dense = error(expstdp.forward(state, PARAMS, inputs).outputs)
  sparse = error(expstdp.forward_events(state, PARAMS, inputs, max_active=200).outputs)
  assert sparse <= max(dense, float(jnp.finfo(dtype).eps) * np.abs(exact).max())


def test_capacities_are_checked():
  state, act = _case(0, 1, 0.1, 1.0)
  with pytest.raises(ValueError, match="max_pre must be a positive int"):
    expstdp.evolve_events(state, PARAMS, max_pre=0, max_post=3)
  with pytest.raises(ValueError, match="max_active must be a positive int"):
    expstdp.forward_events(state, PARAMS, max_active=2.5)
  with pytest.raises(ValueError, match="max_post must be a positive int.*got True"):
    expstdp.evolve_events(state, PARAMS, max_pre=3, max_post=True)  # was: a capacity of 1


def test_clip_weights_is_what_evolve_does_without_spikes():
  state = expstdp.init(jax.random.PRNGKey(0), (N, M), p_conn=0.5,
                       weight_init=expstdp.initializers.uniform(-1.0, 2.0), eta=0.0)
  np.testing.assert_array_equal(expstdp.clip_weights(state, PARAMS).weights,
                                expstdp.evolve(state, PARAMS).weights)


def test_jitted_entry_points_update_in_place_and_match():
  state, act = _case(2, 1, 0.1, 1.0)
  act = {k: jnp.asarray(v) for k, v in act.items()}
  expected = dense_evolve(state, PARAMS, **act)
  copy = jax.tree.map(jnp.copy, state)
  got = expstdp.jitted.evolve(copy, PARAMS, **act)
  np.testing.assert_array_equal(got.weights, expected.weights)
  np.testing.assert_array_equal(got.d_weights, expected.d_weights)
  assert copy.weights.is_deleted() and copy.d_weights.is_deleted()
  assert not copy.pre_spike.is_deleted()  # only W and dW are donated
  copy = jax.tree.map(jnp.copy, state)
  got = expstdp.jitted.evolve_events(copy, PARAMS, max_pre=8, max_post=8, **act)
  np.testing.assert_array_equal(got.weights, expected.weights)
  # Fields the call did not replace are the arrays passed in, not copies.
  assert got.biases is copy.biases and got.weight_mask is copy.weight_mask
  assert got.outputs is copy.outputs and got.pre_spike is not copy.pre_spike
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  evolved = got
  got = expstdp.jitted.forward(got, PARAMS, act["pre_spike"])
  got = expstdp.jitted.forward_events(got, PARAMS, act["pre_spike"], max_active=4)
  np.testing.assert_allclose(got.outputs, act["pre_spike"] @ np.asarray(expected.weights),
                             rtol=1e-6)
  assert got.pre_trace is evolved.pre_trace and got.eta is evolved.eta


def test_jitted_entry_points_convert_number_params_once_after_checking_them():
  """jit would turn each Python float into a device array on every call (~0.3
  ms a call on a GPU); the entry points do it once per set of values, packed
  into one array, whose values take the weights' dtype exactly as jit's
  arrays would (the same bits), and still reject bad values."""
  from expstdp.jitted import _as_arrays, _Packed

  def as_weights_dtype(params, dtype):
    return [np.asarray(jnp.asarray(x, dtype)) for x in params]

  packed = _as_arrays(PARAMS, jnp.float32)
  assert isinstance(packed, _Packed) and packed.values.shape == (len(PARAMS),)
  assert _as_arrays(PARAMS, jnp.float32) is packed  # the same object again
  assert _as_arrays(expstdp.ExpSTDPParams(*PARAMS), jnp.float32) is packed  # equal values
  arrays = jax.tree.map(jnp.asarray, PARAMS)
  assert _as_arrays(arrays, jnp.float32) is arrays  # arrays are passed through

  def check(params, dtype):
    got = _as_arrays(params, dtype)
    got = got.unpack() if isinstance(got, _Packed) else got
    jax.tree.map(np.testing.assert_array_equal, as_weights_dtype(got, dtype),
                 as_weights_dtype(jax.tree.map(jnp.asarray, params), dtype))

  check(PARAMS._replace(tau_w=-0.0, A_plus=3), jnp.float32)
  check(PARAMS._replace(resist_scale=1 / 3), jnp.bfloat16)
  assert np.signbit(_as_arrays(PARAMS._replace(tau_w=-0.0), jnp.float32).unpack().tau_w)
  with jax.enable_x64(False):
    assert _as_arrays(PARAMS, jnp.float32).values.dtype == jnp.float32
  with jax.enable_x64(True):  # where jit makes float64 of a Python float, int64 of an int
    assert _as_arrays(PARAMS, jnp.float32).values.dtype == jnp.float64  # the same object
    # The same object, valid for float64 weights only: the check runs again.
    steep = PARAMS._replace(exp_beta=100.0)
    assert _as_arrays(steep, jnp.float64).values.dtype == jnp.float64
    with pytest.raises(ValueError, match="exp_beta"):
      _as_arrays(steep, jnp.float32)
    # An int64 that float64 rounds, to a tie that float32 then rounds down;
    # straight to float32 it rounds up: it is not packed.
    check(PARAMS._replace(resist_scale=2**53 + 2**29 + 1), jnp.float32)
  state, act = _case(3, 2, 0.2, 0.8)
  expected = dense_evolve(state, PARAMS, **act)
  got = expstdp.jitted.evolve(jax.tree.map(jnp.copy, state), PARAMS, **act)
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  with pytest.raises(ValueError, match="A_minus must be >= 0"):
    expstdp.jitted.evolve(state, PARAMS._replace(A_minus=-1.0))


def test_jitted_evolves_agree_with_wide_rows_and_a_batch():
  """With two batch elements and rows of 4096, XLA:CPU by default hands the
  dense evolve to YNNPACK, whose exp rounds differently from XLA's in the
  last bit (and which is slower); the jitted entry points compile without
  it, so there the event-driven d_weights equal the dense ones."""
  rng = np.random.default_rng(4)
  state = expstdp.clip_weights(expstdp.init(jax.random.PRNGKey(4), (4, 4096), batch_size=2,
                                            eta=0.1), PARAMS)
  state = state._replace(
      pre_spike=jnp.asarray(rng.uniform(size=(2, 4)) < 0.5, jnp.float32),
      pre_trace=jnp.asarray(rng.uniform(0, 1.5, (2, 4)), jnp.float32),
      post_spike=jnp.asarray(rng.uniform(size=(2, 4096)) < 0.1, jnp.float32),
      post_trace=jnp.asarray(rng.uniform(0, 1.5, (2, 4096)), jnp.float32))
  copy = lambda s: jax.tree.map(jnp.copy, s)  # the entry points consume W and dW
  dense = expstdp.jitted.evolve(copy(state), PARAMS)
  sparse = expstdp.jitted.evolve_events(copy(state), PARAMS, max_pre=4, max_post=4096)
  assert np.any(dense.d_weights != 0)
  np.testing.assert_array_equal(sparse.d_weights, dense.d_weights)
  np.testing.assert_allclose(sparse.weights, dense.weights, rtol=0, atol=1e-6)


@pytest.mark.parametrize("platform", ["cpu", "cuda", "tpu"])
def test_loops_only_on_cpu(platform):
  """On an accelerator each trip of a loop is kernel launches and a host
  round trip for its condition: there the functions must lower densely."""
  state, act = _case(0, 1, 0.1, 1.0)
  programs = [
      jax.jit(lambda s: expstdp.evolve_events(s, PARAMS, max_pre=4, max_post=4)).trace(
          state._replace(**act)),
      jax.jit(lambda s: expstdp.forward_events(s, PARAMS, max_active=4)).trace(
          state._replace(inputs=act["pre_spike"])),
  ]
  for traced in programs:
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    assert ("stablehlo.while" in text) == (platform == "cpu")


# README, "Fast scans on CPU": the small-loop XLA_FLAGS, which must change no bit.
SMALL_LOOPS = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=65536"
SCANNED_NETWORK = """
import sys, jax, jax.numpy as jnp, numpy as np, expstdp
p = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=2.0, pretrace_target=0.1)
s = expstdp.clip_weights(expstdp.init(jax.random.key(0), (784, 100), eta=0.05), p)
xs = jnp.asarray(np.random.default_rng(0).uniform(size=(30, 1, 784)) < 0.05, jnp.float32)
def body(s, x):
  s = expstdp.forward_events(s, p, x, max_active=64)
  post = (s.outputs > jnp.linspace(18.0, 30.0, 100)).astype(jnp.float32)
  s = s._replace(pre_spike=x, post_spike=post, pre_trace=0.9 * s.pre_trace + x,
                 post_trace=0.9 * s.post_trace + post)
  return expstdp.evolve_events(s, p, max_pre=64, max_post=16), post.sum()
run = jax.jit(lambda s: jax.lax.scan(body, s, xs),
              compiler_options=expstdp.jitted.compiler_options())
(s, spikes), text = run(s), run.lower(s).compile().as_text()
np.savez(sys.argv[1], weights=s.weights, spikes=spikes,
         small_calls=text.count('xla_cpu_small_call="true"'))
"""


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_small_loop_flag_changes_no_bit(tmp_path):
  """With SMALL_LOOPS, XLA:CPU compiles evolve's two event loops as single
  calls instead of kernels per trip; the simulation is bit for bit the
  same."""
  out = {name: run_with_xla_flags(SCANNED_NETWORK, flags, tmp_path / f"{name}.npz")
         for name, flags in (("plain", ""), ("small", SMALL_LOOPS))}
  # Evolve's loops over active columns and rows (whole rows: it keeps dW).
  # Single calls already: the loops that find the active neurons and the
  # forward's, in pieces of rows. Where XLA makes every loop a single call
  # by default, the scan over time too (on one thread), the flag instead
  # keeps the scan, which touches all of W, as kernels.
  gained = out["small"]["small_calls"] - out["plain"]["small_calls"]
  assert gained == (-1 if expstdp.backend.hoists_every_loop() else 2)
  assert 0 < out["plain"]["spikes"].sum() < 30 * 100 / 4
  np.testing.assert_array_equal(out["small"]["weights"], out["plain"]["weights"])
  np.testing.assert_array_equal(out["small"]["spikes"], out["plain"]["spikes"])
