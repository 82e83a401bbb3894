"""Behaviour of the single functions: documented differences from ngclearn,
dtypes, non-finite values, the checked mode, reset and describe."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp
from conftest import counting_compiles, random_activity

PARAMS = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=1.5, pretrace_target=0.2)


def _state(shape=(6, 5), batch=2, seed=0, dtype=jnp.float32, **kwargs):
  state = expstdp.init(jax.random.PRNGKey(seed), shape, batch_size=batch, dtype=dtype, **kwargs)
  act = random_activity(np.random.default_rng(seed), batch, *shape)
  return state._replace(**{k: jnp.asarray(v, dtype) for k, v in act.items()})


def test_w_eps_is_a_parameter():
  state = _state()
  state = state._replace(weights=state.weights.at[:3].set(0.0).at[3:].set(3.0), eta=jnp.asarray(0.0))
  new = np.asarray(expstdp.evolve(state, PARAMS._replace(w_eps=0.1, w_bound=2.0)).weights)
  np.testing.assert_array_equal(new[:3], np.float32(0.1))
  np.testing.assert_array_equal(new[3:], np.float32(2.0) - np.float32(0.1))


def test_tau_w_applies_the_documented_decay():
  state, params = _state(), PARAMS._replace(tau_w=20.0)
  dW = expstdp.compute_dW(params, state.weights, state.pre_spike, state.pre_trace,
                          state.post_spike, state.post_trace)
  W = state.weights
  expected = np.clip(W - W / 20.0 + dW * state.eta, 0.01, 0.99)
  np.testing.assert_allclose(expstdp.evolve(state, params).weights, expected, rtol=0, atol=1e-7)
  no_decay = expstdp.evolve(state, PARAMS).weights
  np.testing.assert_array_equal(no_decay, jnp.clip(W + dW * state.eta, 0.01, 0.99))


def test_every_weight_is_clipped_even_without_spikes():
  """As ngclearn: 0 -> w_eps and 1 -> w_bound - w_eps, even with eta = 0."""
  state = expstdp.init(jax.random.PRNGKey(0), (2, 2), weight_init=expstdp.initializers.constant(1.0),
                       eta=0.0)
  state = state._replace(weights=state.weights.at[0, 0].set(0.0))
  np.testing.assert_allclose(expstdp.evolve(state, PARAMS).weights, [[0.01, 0.99], [0.99, 0.99]])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64])
def test_the_clip_is_jnp_clip_bit_for_bit(dtype):
  """evolve clips with two selects, not jnp.clip (faster on CPU): the same
  bits for every weight and update, and for any bounds, valid or not (NaN,
  infinite, crossed), but subnormal ones (a w_eps of -0.0 may give -0.0
  where jnp.clip gives +0.0)."""
  from expstdp.synapse import _apply_dW

  def with_jnp_clip(params, W, dW, eta, mask):  # what _apply_dW computed before
    tau_w = params.tau_w
    keep = jnp.where(tau_w > 0, 1 - 1 / jnp.where(tau_w > 0, tau_w, 1), 1)
    new = jnp.clip(W * keep + dW * eta, params.w_eps, params.w_bound - params.w_eps)
    return jnp.where(mask, new, jnp.zeros((), dtype))

  with jax.enable_x64(dtype == jnp.float64):
    tiny = float(jnp.finfo(dtype).smallest_subnormal)
    special = [0.0, -0.0, tiny, -tiny, 0.01, 0.5, 0.99, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan]
    values = np.concatenate([special, np.random.default_rng(0).normal(0.5, 1.0, 100)])
    W, dW = (jnp.asarray(v, dtype) for v in np.meshgrid(values, values))
    mask = jnp.asarray(np.random.default_rng(1).uniform(size=W.shape) < 0.9)
    ours, theirs = jax.jit(_apply_dW), jax.jit(with_jnp_clip)
    bounds = [(0.01, 1.0), (0.0, 1.0), (0.0, 0.0), (0.5, 0.5), (0.6, 1.0),
              (-1.0, -2.0), (np.nan, 1.0), (0.01, np.nan), (np.inf, 1.0), (0.0, np.inf),
              (-np.inf, 1.0), (np.inf, np.inf)]
    run = lambda f, w_eps, w_bound, tau_w: np.asarray(f(
        jax.tree.map(lambda x: jnp.asarray(x, dtype),
                     PARAMS._replace(w_eps=w_eps, w_bound=w_bound, tau_w=tau_w)),
        W, dW, jnp.asarray(0.3, dtype), mask))
    for bound, tau_w in itertools.product(bounds, [0.0, 10.0]):
      got, want = run(ours, *bound, tau_w), run(theirs, *bound, tau_w)
      same = got.view(f"u{got.itemsize}") == want.view(f"u{want.itemsize}")
      same |= np.isnan(got.astype(np.float32)) & np.isnan(want.astype(np.float32))
      assert same.all(), (bound, tau_w, got[~same][:4], want[~same][:4])
    np.testing.assert_array_equal(run(ours, -0.0, 1.0, 0.0).astype(np.float32),  # -0.0 == +0.0
                                  run(theirs, -0.0, 1.0, 0.0).astype(np.float32))


def test_the_clip_passes_derivatives_to_its_bounds():
  """d W' / d w_eps is 1 where the lower bound binds (also at w_eps = 0) and
  -1 where the upper one, w_bound - w_eps, does; d W' / d w_bound is 1 there."""
  W = np.full((6, 5), 0.5, np.float32)
  W[:2], W[2:4] = -0.5, 1.5  # below and above the bounds; the rest in range
  state = _state()._replace(weights=jnp.asarray(W), eta=jnp.asarray(0.0))  # W' = clip(W)
  lower, upper = np.zeros_like(W), np.zeros_like(W)
  lower[:2], upper[2:4] = 1.0, 1.0

  def new_weights(w_eps, w_bound):
    return expstdp.evolve(state, PARAMS._replace(w_eps=w_eps, w_bound=w_bound)).weights

  for w_eps in (0.0, 0.01):
    d_eps, d_bound = jax.jacfwd(new_weights, argnums=(0, 1))(w_eps, 1.0)
    np.testing.assert_array_equal(d_eps, lower - upper)
    np.testing.assert_array_equal(d_bound, upper)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64])
def test_dtype_is_kept_end_to_end(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    state = _state(dtype=dtype, bias_init=expstdp.initializers.constant(0.1))
    # Hyperparameters given as float32 arrays must not promote bfloat16 weights.
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    step = jax.jit(lambda s, p: expstdp.evolve(expstdp.forward(s, p), p))
    for out in (step(state, params), expstdp.reset(step(state, params))):
      for name, leaf in out._asdict().items():
        if name != "weight_mask":
          assert leaf.dtype == dtype, name


def test_a_numpy_float64_state_is_what_jax_makes_of_it():
  # Without x64 JAX reads numpy float64 as float32; the checks must too (they
  # compared numpy's float64 weights with JAX's float32 inputs and refused).
  state = _state()
  as_numpy = jax.tree.map(lambda x: np.asarray(x, np.float64 if x.dtype != bool else bool), state)
  as_jax = jax.tree.map(jnp.asarray, as_numpy)  # float64 only with x64
  same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  for fn in (expstdp.evolve, expstdp.forward, expstdp.clip_weights,
             functools.partial(expstdp.evolve_events, max_pre=6, max_post=5)):
    fn = functools.partial(fn, params=PARAMS)
    same(fn(as_numpy), fn(as_jax))
  same(expstdp.reset(as_numpy), expstdp.reset(as_jax))
  activity = (as_numpy.pre_spike, as_numpy.pre_trace, as_numpy.post_spike, as_numpy.post_trace)
  same(expstdp.compute_dW(PARAMS, as_numpy.weights, *activity),
       expstdp.compute_dW(PARAMS, as_jax.weights, *map(jnp.asarray, activity)))


def test_reset_zeroes_activity_and_keeps_weights():
  state = expstdp.evolve(_state(p_conn=0.5), PARAMS)
  out = expstdp.reset(state._replace(eta=jnp.asarray(0.3)))
  for name in ("inputs", "outputs", "pre_spike", "post_spike", "pre_trace", "post_trace",
               "d_weights"):
    assert not np.any(getattr(out, name)), name
  for name in ("weights", "biases", "weight_mask"):
    np.testing.assert_array_equal(getattr(out, name), getattr(state, name))
  assert out.eta == 0.3


def test_given_activity_is_stored_in_the_returned_state():
  state = _state()
  spikes = jnp.ones_like(state.pre_spike)
  out = expstdp.evolve(state, PARAMS, pre_spike=spikes)
  np.testing.assert_array_equal(out.pre_spike, spikes)
  np.testing.assert_array_equal(out.post_trace, state.post_trace)
  assert not np.array_equal(out.weights, expstdp.evolve(state, PARAMS).weights)


def test_nan_in_a_pre_trace_poisons_its_row_only():
  """Documented: a non-finite trace makes its whole row of dW (and W) NaN,
  because 0 * NaN = NaN in the outer products, as in ngclearn."""
  state = _state()
  state = state._replace(pre_trace=state.pre_trace.at[1, 2].set(jnp.nan))
  out = expstdp.evolve(state, PARAMS)
  nan_rows = np.isnan(np.asarray(out.weights)).any(axis=1)
  np.testing.assert_array_equal(nan_rows, np.arange(6) == 2)
  assert np.isnan(np.asarray(out.weights)[2]).all()


def test_checked_mode_names_the_offending_field_under_jit():
  evolve = jax.jit(expstdp.checked(expstdp.evolve))
  state = _state()
  err, out = evolve(state, PARAMS)
  assert err.get() is None
  # Against the same function jitted: jax 0.11.2 rounds one weight of the
  # eager (op by op) evolve differently in the last bit.
  np.testing.assert_array_equal(out.weights, jax.jit(expstdp.evolve)(state, PARAMS).weights)

  err, _ = evolve(state._replace(post_trace=state.post_trace.at[0, 0].set(jnp.inf)), PARAMS)
  assert "state.post_trace has non-finite values" in err.get()
  err, _ = evolve(state, PARAMS, pre_spike=state.pre_spike.at[0, 0].set(jnp.nan))
  assert "pre_spike has non-finite values" in err.get()
  with pytest.raises(Exception, match="params.A_minus must be >= 0"):
    evolve(state, PARAMS._replace(A_minus=-1.0))[0].throw()
  err, _ = evolve(state, PARAMS._replace(w_bound=0.015))
  assert "params.w_bound must be > 2 * params.w_eps" in err.get()
  # exp(-beta W) overflows for a huge negative weight: the output check sees it.
  err, _ = evolve(state._replace(weights=state.weights.at[0, 0].set(-1e3)),
                  PARAMS._replace(exp_beta=1.0))
  assert "evolve output" in err.get()


def test_checked_mode_runs_under_disable_jit():
  """Params of Python floats stay floats there, which checkify cannot format."""
  state = _state()
  with jax.disable_jit():
    err, out = expstdp.checked(expstdp.evolve)(state, PARAMS)
    assert err.get() is None
    err, _ = expstdp.checked(expstdp.evolve)(state._replace(weights=state.weights.at[0, 0].set(-1e3)),
                                             PARAMS._replace(exp_beta=1.0))
  # Op by op, rounding may differ from the compiled evolve's (README; 2 ulp in one weight on
  # jax 0.11.2).
  np.testing.assert_allclose(out.weights, expstdp.evolve(state, PARAMS).weights, rtol=0, atol=1e-6)
  assert "evolve output" in err.get()


def test_checked_mode_runs_compiled_when_called_eagerly():
  """checkify ran an eager call op by op: 0.24 s for a 784x400 evolve, 1.2 s
  for evolve_events (its loops compiled on every call). Now one cached jit
  per set of static options, which a second call reuses."""
  evolve, events = expstdp.checked(expstdp.evolve), expstdp.checked(expstdp.evolve_events)
  state = expstdp.clip_weights(_state(shape=(7, 3), batch=3), PARAMS)
  for _ in range(2):
    state = state._replace(pre_trace=state.pre_trace + 0.1)
    with counting_compiles() as compiles:
      err, out = evolve(state, PARAMS, with_d_weights=False)
      err_events, _ = events(state, PARAMS, max_pre=4, max_post=4)
  assert not compiles
  assert err.get() is None and err_events.get() is None
  np.testing.assert_array_equal(out.weights, jax.jit(expstdp.evolve)(state, PARAMS).weights)
  np.testing.assert_array_equal(out.d_weights, state.d_weights)
  err, _ = events(state._replace(weights=state.weights.at[0, 0].set(2.0)), PARAMS, max_pre=4,
                  max_post=4)
  assert "clip_weights" in err.get()


def test_checked_mode_compiles_once_for_params_of_python_ints():
  """`A_plus=1` is a value, not an option: each new int compiled again
  (0.45-0.6 s a call at 64x32)."""
  evolve = expstdp.checked(expstdp.evolve)
  state = _state()
  ints = expstdp.ExpSTDPParams(A_plus=1, A_minus=0, exp_beta=2, pretrace_target=0)
  evolve(state, ints)
  with counting_compiles() as compiles:
    results = [evolve(state, ints._replace(A_plus=a_plus)) for a_plus in (2, 3)]
    err, _ = evolve(state, ints._replace(A_minus=-1))
  assert not compiles
  assert "params.A_minus must be >= 0, got -1" in err.get()
  for a_plus, (err, out) in zip((2.0, 3.0), results):
    assert err.get() is None
    floats = expstdp.ExpSTDPParams(A_plus=a_plus, A_minus=0.0, exp_beta=2.0, pretrace_target=0.0)
    np.testing.assert_array_equal(out.weights, jax.jit(expstdp.evolve)(state, floats).weights)
  with pytest.raises(TypeError, match="params.A_plus must be a real number, got True"):
    evolve(state, ints._replace(A_plus=True))


def test_checked_mode_takes_ints_for_values_as_values():
  """`tau_tr=20` compiled again for every int; a capacity is static."""
  trace, spikes = jnp.full((3, 5), 0.5), (jnp.arange(15).reshape(3, 5) % 3 == 0) * 1.0
  update = expstdp.checked(expstdp.traces.update)
  update(trace, spikes, dt=1, tau_tr=20)
  with counting_compiles() as compiles:
    results = [update(trace, spikes, dt=1, tau_tr=tau) for tau in (30, 40)]
  assert not compiles
  for tau, (err, out) in zip((30.0, 40.0), results):
    assert err.get() is None
    np.testing.assert_array_equal(out, expstdp.traces.update(trace, spikes, dt=1.0, tau_tr=tau))
  err, out = update(trace, spikes, dt=1, tau_tr=4, n_nearest_spikes=2)
  np.testing.assert_array_equal(
      out, expstdp.traces.update(trace, spikes, dt=1, tau_tr=4, n_nearest_spikes=2))
  # What traces.update refuses where concrete, checked where traced.
  assert "tau_tr must be > 0, got 0" in update(trace, spikes, dt=1, tau_tr=0)[0].get()
  assert "dt must be >= 0, got -1" in update(trace, spikes, dt=-1, tau_tr=2)[0].get()
  # A function of the user's keeps its ints static (a size, a number of steps).
  err, out = expstdp.checked(lambda n, x: jnp.full(n, x))(3, 0.5)
  assert err.get() is None and out.shape == (3,)
  # init's p_conn decides whether there is a weight_mask: an option.
  err, state = expstdp.checked(expstdp.init)(jax.random.PRNGKey(0), (6, 4), p_conn=0.5, eta=1)
  assert err.get() is None
  np.testing.assert_array_equal(state.weight_mask,
                                expstdp.init(jax.random.PRNGKey(0), (6, 4), p_conn=0.5).weight_mask)


def test_checked_mode_under_vmap():
  states = jax.tree.map(lambda *x: jnp.stack(x), _state(seed=0), _state(seed=1))
  bad = states._replace(weights=states.weights.at[1, 0, 0].set(jnp.nan))
  err, _ = jax.jit(jax.vmap(expstdp.checked(expstdp.evolve), in_axes=(0, None)))(bad, PARAMS)
  assert "state.weights has non-finite values" in err.get()


def test_checked_mode_checks_the_event_driven_precondition():
  """evolve_events leaves the weights outside the active rows and columns as
  they are, which is right only if the clip would too: the checked mode
  says when it would not, also through a functools.partial (the natural way
  to give the capacities), and under vmap."""
  events = jax.jit(expstdp.checked(functools.partial(expstdp.evolve_events, max_pre=6,
                                                     max_post=5)))
  state = _state(p_conn=0.6)
  err, out = events(state, PARAMS)
  assert err.get() is None
  np.testing.assert_array_equal(out.weights, jax.jit(expstdp.evolve)(state, PARAMS).weights)
  i, j = np.argwhere(np.asarray(state.weight_mask))[0]
  for bad in (state.weights.at[i, j].set(0.0),                         # connected, below w_eps
              state.weights.at[i, j].set(1.0),                         # above w_bound - w_eps
              jnp.where(state.weight_mask, state.weights, 0.5)):       # masked, not 0
    err, _ = events(state._replace(weights=bad), PARAMS)
    assert "state.weights must lie in [w_eps, w_bound - w_eps]" in err.get()
  err, _ = jax.vmap(events, in_axes=(0, None))(
      jax.tree.map(lambda *x: jnp.stack(x), state, state._replace(weights=bad)), PARAMS)
  assert "clip_weights" in err.get()
  jitted = jax.jit(expstdp.checked(functools.partial(expstdp.jitted.evolve_events, max_pre=6,
                                                     max_post=5)))
  assert "clip_weights" in jitted(state._replace(weights=bad), PARAMS)[0].get()
  # With a decay it runs densely: then any weights will do.
  decaying = state._replace(weights=bad), PARAMS._replace(tau_w=5.0)
  err, out = events(*decaying)
  assert err.get() is None
  np.testing.assert_array_equal(out.weights, jax.jit(expstdp.evolve)(*decaying).weights)
  # The dense evolve has no such precondition; a partial names its function.
  dense = jax.jit(expstdp.checked(functools.partial(expstdp.evolve, with_d_weights=True)))
  assert dense(state._replace(weights=bad), PARAMS)[0].get() is None
  err, _ = dense(state._replace(weights=state.weights.at[0, 0].set(-1e3)),
                 PARAMS._replace(exp_beta=1.0))
  assert "evolve output" in err.get()


def test_checked_mode_checks_what_a_partial_holds_and_skips_static_options():
  state = _state()
  held = jax.jit(expstdp.checked(functools.partial(
      expstdp.evolve, pre_trace=state.pre_trace.at[0, 0].set(jnp.nan))))
  assert "pre_trace has non-finite values" in held(state, PARAMS)[0].get()
  trace = jax.jit(expstdp.checked(expstdp.traces.update), static_argnames="decay_type")
  spikes = state.pre_spike.at[0, 0].set(jnp.nan)
  assert trace(state.pre_trace, state.pre_spike, dt=1.0, tau_tr=10.0)[0].get() is None
  assert "spikes has non-finite" in trace(state.pre_trace, spikes, dt=1.0, tau_tr=10.0,
                                          decay_type="lin")[0].get()
  err, _ = expstdp.checked(expstdp.init)(jax.random.PRNGKey(0), (4, 3),
                                         weight_init=expstdp.initializers.uniform(0.1, 0.5))
  assert err.get() is None  # a dtype and a function are options, not values
  err, out = expstdp.checked(expstdp.init)(jax.random.PRNGKey(0), [4, 3])  # a list: op by op
  assert err.get() is None and out.weights.shape == (4, 3)
  with pytest.raises(TypeError, match=r"checked takes a function \(expstdp.evolve, say\), got "
                     r"SynapseState"):
    expstdp.checked(state)


def test_describe_covers_every_field():
  info = expstdp.describe()
  assert set(info) == {"ExpSTDPSynapse", "compartments", "dynamics", "hyperparameters"}
  compartments = set().union(*info["compartments"].values())
  assert compartments == set(expstdp.SynapseState._fields)
  assert set(expstdp.ExpSTDPParams._fields) <= set(info["hyperparameters"])


def test_forward_multiplies_in_float32_unless_jax_is_told_otherwise():
  """A GPU multiplies float32 in TF32 by default; forward does not, unless
  jax.default_matmul_precision says so (7x faster at batch 1024 on an H200)."""
  state = _state()
  for fn in (expstdp.forward, lambda s, p: expstdp.forward_events(s, p, max_active=2)):
    precisions = lambda: re.findall(r"precision = \[(\w+)", jax.jit(fn).lower(state, PARAMS).as_text())
    assert precisions() == ["HIGHEST"]
    with jax.default_matmul_precision("tensorfloat32"):
      assert precisions() == ["HIGH"]
