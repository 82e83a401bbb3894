"""The mathematics of the rule, as hypothesis properties.

Shapes are fixed (N=5, M=4, B=3) and every function is jitted once at module
level, so examples reuse compiled code; hyperparameters are traced values, so
new values never recompile.
"""

import jax
import pytest
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

import expstdp
from conftest import random_activity

N, M, B = 5, 4, 3
settings.register_profile("expstdp", max_examples=60, deadline=None)
settings.load_profile("expstdp")

compute_dW = jax.jit(expstdp.compute_dW)
evolve = jax.jit(expstdp.evolve)

seeds = st.integers(0, 2**32 - 1)
# XLA:CPU flushes subnormal floats to zero, so a subnormal w_eps acts as 0.
def floats(lo, hi):
  return st.floats(lo, hi).filter(lambda x: x == 0 or abs(x) >= np.finfo(np.float32).tiny)
A = floats(0.0, 2.0)
params_st = st.builds(
    expstdp.ExpSTDPParams,
    A_plus=A, A_minus=A, exp_beta=floats(0.0, 5.0), pretrace_target=floats(0.0, 1.0),
    w_bound=floats(0.5, 3.0), w_eps=floats(0.0, 0.2), tau_w=st.sampled_from([0.0, 5.0, 50.0]),
    resist_scale=floats(0.1, 3.0),
)


def _case(seed, params, rate=0.4):
  rng = np.random.default_rng(seed)
  act = random_activity(rng, B, N, M, rate)
  del act["inputs"]
  W = rng.uniform(0.0, float(params.w_bound), (N, M)).astype(np.float32)
  return rng, W, act


def _state(W, act, eta=1.0, mask=None):
  state = expstdp.init(jax.random.PRNGKey(0), (N, M), batch_size=B, eta=eta)
  mask = jnp.ones((1, 1), bool) if mask is None else jnp.asarray(mask)
  return state._replace(weights=jnp.asarray(W), weight_mask=mask,
                        **{k: jnp.asarray(v) for k, v in act.items()})


def _terms(p, W, act):
  """The three terms of dW in float64: LTP, x_tar, LTD (without A_plus / A_minus)."""
  W = W.astype(np.float64)
  ltp = np.exp(-p.exp_beta * W) * (act["pre_trace"].T.astype(np.float64) @ act["post_spike"])
  tar = np.exp(-p.exp_beta * (p.w_bound - W)) * p.pretrace_target * act["post_spike"].sum(0)
  ltd = np.exp(-p.exp_beta * W) * (act["pre_spike"].T.astype(np.float64) @ act["post_trace"])
  return ltp, tar, ltd


def _close(actual, expected, scale, rel=2e-6):
  np.testing.assert_array_less(np.abs(np.asarray(actual, np.float64) - expected),
                               rel * (scale + 1e-30) + 1e-30)


@given(seeds, params_st)
def test_dW_is_the_closed_form(seed, p):
  _, W, act = _case(seed, p)
  ltp, tar, ltd = _terms(p, W, act)
  expected = p.A_plus * (ltp - tar) - p.A_minus * ltd
  scale = p.A_plus * (np.abs(ltp) + np.abs(tar)) + p.A_minus * np.abs(ltd)
  _close(compute_dW(p, W, **act), expected, scale)


@given(seeds, params_st)
def test_beta_zero_is_the_additive_rule(seed, p):
  p = p._replace(exp_beta=0.0)
  _, W, act = _case(seed, p)
  x_pre, s_post, s_pre, x_post = (act[k].astype(np.float64) for k in
                                  ("pre_trace", "post_spike", "pre_spike", "post_trace"))
  ltp, tar, ltd = x_pre.T @ s_post, p.pretrace_target * s_post.sum(0), s_pre.T @ x_post
  expected = p.A_plus * (ltp - tar) - p.A_minus * ltd
  _close(compute_dW(p, W, **act), expected, p.A_plus * (ltp + tar) + p.A_minus * ltd)


@given(seeds, params_st, floats(0.0, 4.0))
def test_dW_is_linear_in_A_plus_and_A_minus(seed, p, k):
  _, W, act = _case(seed, p)
  ltp_only = compute_dW(p._replace(A_minus=0.0), W, **act)
  ltd_only = compute_dW(p._replace(A_plus=0.0), W, **act)
  both = compute_dW(p, W, **act)
  scaled_ltp = compute_dW(p._replace(A_plus=k * p.A_plus, A_minus=0.0), W, **act)
  scaled_ltd = compute_dW(p._replace(A_plus=0.0, A_minus=k * p.A_minus), W, **act)
  ltp, tar, ltd = _terms(p, W, act)
  ltp_scale, ltd_scale = p.A_plus * (np.abs(ltp) + np.abs(tar)), p.A_minus * np.abs(ltd)
  _close(both, np.asarray(ltp_only, np.float64) + ltd_only, ltp_scale + ltd_scale)
  _close(scaled_ltp, k * np.asarray(ltp_only, np.float64), k * ltp_scale)
  _close(scaled_ltd, k * np.asarray(ltd_only, np.float64), k * ltd_scale)


@given(seeds, params_st, floats(0.0, 50.0))
def test_weights_stay_in_bounds_and_masked_weights_are_exactly_zero(seed, p, eta):
  rng, W, act = _case(seed, p)
  W = rng.uniform(-1.0, 2.0 * float(p.w_bound), (N, M)).astype(np.float32)  # even out of range
  mask = rng.uniform(size=(N, M)) < 0.6
  new = np.asarray(evolve(_state(W, act, eta, mask), p).weights)
  lo, hi = np.float32(p.w_eps), np.float32(p.w_bound) - np.float32(p.w_eps)
  assert np.all(new[~mask] == 0.0)
  assert np.all((new[mask] >= lo) & (new[mask] <= hi))


@given(seeds, params_st, floats(0.0, 1.0), floats(0.0, 1.0))
def test_eta_scales_the_step(seed, p, eta1, eta2):
  p = p._replace(tau_w=0.0, w_eps=0.0, w_bound=100.0)  # no clip, no decay in play
  _, W, act = _case(seed, p._replace(w_bound=1.0))
  dW = np.asarray(compute_dW(p, W, **act), np.float64)
  for eta in (eta1, eta2):
    new = np.asarray(evolve(_state(W, act, eta), p).weights)
    eta = float(np.float32(eta))  # the state holds eta in the weights' dtype
    free = W + eta * dW > 0  # entries the clip at 0 did not touch
    # W' = fl(W + fl(eta dW)): exact up to half an ulp of each of the two roundings.
    ulps = np.spacing(np.abs(np.float32(eta * dW))) + np.spacing(np.abs(new))
    assert np.all(np.abs((new.astype(np.float64) - W) - eta * dW)[free] <= ulps[free])


betas = floats(0.1, 5.0)


def _increasing_weights(seed, w_bound):
  gaps = np.random.default_rng(seed).uniform(1.0, 2.0, N * M)
  return (np.cumsum(gaps) / gaps.sum() * 0.9 * w_bound).reshape(N, M).astype(np.float32)


@given(seeds, betas, floats(0.1, 2.0))
def test_ltp_factor_decreases_with_W(seed, beta, A_plus):
  p = expstdp.ExpSTDPParams(A_plus=A_plus, A_minus=0.0, exp_beta=beta)
  W = _increasing_weights(seed, 1.0)
  ones = np.ones((B, N), np.float32)
  zeros = np.zeros((B, N), np.float32)
  dW = compute_dW(p, W, zeros, ones, np.ones((B, M), np.float32), np.zeros((B, M), np.float32))
  factor = np.asarray(dW).ravel() / (A_plus * B)
  assert np.all(np.diff(factor) < 0)
  np.testing.assert_allclose(factor, np.exp(-beta * W.ravel().astype(np.float64)), rtol=2e-6)


@given(seeds, betas, floats(0.1, 1.0), floats(0.5, 3.0))
def test_x_tar_factor_increases_with_W(seed, beta, x_tar, w_bound):
  p = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.0, exp_beta=beta, pretrace_target=x_tar,
                            w_bound=w_bound)
  W = _increasing_weights(seed, w_bound)
  zeros = np.zeros((B, N), np.float32)
  dW = compute_dW(p, W, zeros, zeros, np.ones((B, M), np.float32), np.zeros((B, M), np.float32))
  factor = -np.asarray(dW).ravel() / (x_tar * B)
  assert np.all(np.diff(factor) > 0)
  np.testing.assert_allclose(
      factor, np.exp(-beta * (np.float32(w_bound) - W.ravel().astype(np.float64))), rtol=2e-6)


P, T = 3, 4


def _step(state, params, act):
  state = expstdp.forward(state, params, act["inputs"])
  return expstdp.evolve(state, params, **{k: v for k, v in act.items() if k != "inputs"})


step = jax.jit(_step)
vmapped_step = jax.jit(jax.vmap(_step))


@jax.jit
def scanned(state, params, acts):
  def body(s, act):
    s = _step(s, params, act)
    return s, s.outputs
  return jax.lax.scan(body, state, acts)


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _assert_trees_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6), a, b)


@settings(max_examples=20)
@given(seeds, st.lists(params_st, min_size=P, max_size=P))
def test_vmap_over_populations_equals_a_loop(seed, params):
  rng = np.random.default_rng(seed)
  states = [_state(*_case(seed + i, p)[1:], eta=rng.uniform(0, 2)) for i, p in enumerate(params)]
  acts = [random_activity(rng, B, N, M) for _ in range(P)]
  params = [jax.tree.map(np.float32, p) for p in params]
  looped = [step(s, p, a) for s, p, a in zip(states, params, acts, strict=True)]
  _assert_trees_close(vmapped_step(_stack(states), _stack(params), _stack(acts)), _stack(looped))


@settings(max_examples=20)
@given(seeds, params_st)
def test_scan_over_time_equals_a_loop(seed, p):
  rng, W, act = _case(seed, p)
  state = _state(W, act, eta=0.5)
  acts = [random_activity(rng, B, N, M) for _ in range(T)]
  final, outputs = scanned(state, p, _stack(acts))
  looped_outputs = []
  for a in acts:
    state = step(state, p, a)
    looped_outputs.append(state.outputs)
  _assert_trees_close(final, state)
  _assert_trees_close(outputs, jnp.stack(looped_outputs))


@given(seeds, floats(-1.0, 1.0), floats(0.5, 3.0))
def test_x_tar_factor_is_accurate_over_the_whole_allowed_range(seed, beta_fraction, w_bound):
  """exp(-beta (w_bound - W)) is computed as exp(-beta w_bound) / exp(-beta W):
  its error grows with |beta| w_bound no faster than that of the direct formula."""
  beta = beta_fraction * expstdp.max_exponent(jnp.float32) / w_bound
  p = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.0, exp_beta=beta, pretrace_target=1.0,
                            w_bound=w_bound)
  W = np.random.default_rng(seed).uniform(0.0, w_bound, (N, M)).astype(np.float32)
  zeros = np.zeros((B, N), np.float32)
  dW = compute_dW(p, W, zeros, zeros, np.ones((B, M), np.float32), np.zeros((B, M), np.float32))
  truth = -B * np.exp(-beta * (np.float32(w_bound) - W.astype(np.float64)))
  rel_error = np.abs(np.asarray(dW, np.float64) / truth - 1)
  assert rel_error.max() <= (abs(beta) * w_bound + 2) * 2.0**-23


def test_exponent_range_is_enforced():
  p = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.0, exp_beta=40.0, w_bound=2.0)
  zeros = np.zeros((B, N), np.float32)
  with pytest.raises(ValueError, match=r"\|params.exp_beta \* params.w_bound\| must be <= 79"):
    expstdp.compute_dW(p, np.zeros((N, M), np.float32), zeros, zeros, zeros[:, :M], zeros[:, :M])
  with jax.enable_x64(True):  # float64 weights allow a far wider range
    expstdp.compute_dW(p, np.zeros((N, M)), *[np.zeros((B, n)) for n in (N, N, M, M)])
