"""expstdp against ngclearn 3.1.1's ExpSTDPSynapse itself (installed by the
`test` extra and run here), over multi-step sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp
from conftest import random_activity
from ngclearn_reference import Reference

TOL = dict(rtol=1e-6, atol=1e-6)


@jax.jit
def _step(state, params, inputs, pre_spike, pre_trace, post_spike, post_trace):
  state = expstdp.forward(state, params, inputs)
  return expstdp.evolve(state, params, pre_spike=pre_spike, pre_trace=pre_trace,
                        post_spike=post_spike, post_trace=post_trace)


CASES = [
    # shape, batch, hyperparameters, with a weight mask
    ((5, 4), 1, dict(A_plus=1.0, A_minus=1.0, exp_beta=1.25), False),
    ((7, 3), 3, dict(A_plus=0.8, A_minus=0.4, exp_beta=2.0, pretrace_target=0.3, eta=0.05), False),
    ((6, 6), 2, dict(A_plus=1.0, A_minus=0.0, exp_beta=1.0, pretrace_target=0.1, eta=0.5), True),
    ((16, 9), 4, dict(A_plus=0.5, A_minus=0.7, exp_beta=3.0, pretrace_target=0.2, eta=1.0,
                      w_bound=2.0, resist_scale=2.5), True),
    ((3, 11), 1, dict(A_plus=1.0, A_minus=0.5, exp_beta=0.0, eta=0.3), False),
    # dW's batch sum as a matrix product (past batch 4)
    ((12, 7), 6, dict(A_plus=0.9, A_minus=0.3, exp_beta=1.5, pretrace_target=0.1, eta=0.2), False),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_multistep_sequence_matches_ngclearn(case):
  shape, batch, hp, masked = CASES[case]
  rng = np.random.default_rng(case)
  key = jax.random.PRNGKey(case)
  mask = (rng.uniform(size=shape) < 0.7).astype(np.float32) if masked else None
  ref = Reference(key, shape, batch_size=batch, weight_mask=mask, **hp)

  eta = hp.pop("eta", 1.0)
  params = expstdp.ExpSTDPParams(**hp)
  state = expstdp.init(key, shape, batch_size=batch, weight_mask=mask, eta=eta)
  np.testing.assert_array_equal(state.weights, ref.read()["weights"])

  for _ in range(6):
    act = random_activity(rng, batch, *shape)
    expected = ref.step(**act)
    state = _step(state, params, **act)
    for name in ("outputs", "weights", "d_weights"):
      np.testing.assert_allclose(getattr(state, name), expected[name], **TOL, err_msg=name)

  expected = ref.reset()
  state = expstdp.reset(state)
  for name, value in expected.items():
    np.testing.assert_allclose(getattr(state, name), value, **TOL, err_msg=name)
    if name != "weights":
      assert not np.any(getattr(state, name)), name


def test_eager_compute_dW_matches_ngclearn_dweights():
  rng = np.random.default_rng(7)
  key, shape, batch = jax.random.PRNGKey(7), (8, 5), 3
  hp = dict(A_plus=0.9, A_minus=0.6, exp_beta=1.7, pretrace_target=0.25)
  ref = Reference(key, shape, batch_size=batch, **hp)
  weights = ref.read()["weights"]
  act = random_activity(rng, batch, *shape)
  expected = ref.step(**act)["d_weights"]
  del act["inputs"]
  dW = expstdp.compute_dW(expstdp.ExpSTDPParams(**hp), jnp.asarray(weights, jnp.float32), **act)
  np.testing.assert_allclose(dW, expected, **TOL)


def test_golden_values_of_ngclearns_own_unit_test():
  """W = 0.1, beta = 1.25, A_plus = A_minus = 1, x_tar = 0, x_pre = 1.25,
  x_post = 0.65: a lone post spike gives 1.1031212, a lone pre spike -0.57362294."""
  params = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=1.0, exp_beta=1.25, pretrace_target=0.0)
  w = jnp.full((1, 1), 0.1)
  x_pre, x_post = jnp.full((1, 1), 1.25), jnp.full((1, 1), 0.65)
  one, zero = jnp.ones((1, 1)), jnp.zeros((1, 1))
  post_only = expstdp.compute_dW(params, w, zero, x_pre, one, x_post)
  pre_only = expstdp.compute_dW(params, w, one, x_pre, zero, x_post)

  ref = Reference(jax.random.PRNGKey(0), (1, 1), A_plus=1.0, A_minus=1.0, exp_beta=1.25,
                  weight_init=lambda shape, key: jnp.full(shape, 0.1))
  ref_post = ref.step(zero, zero, x_pre, one, x_post)["d_weights"]
  ref.syn.weights.set(w)
  ref_pre = ref.step(zero, one, x_pre, zero, x_post)["d_weights"]

  np.testing.assert_allclose(post_only, ref_post, **TOL)
  np.testing.assert_allclose(pre_only, ref_pre, **TOL)
  np.testing.assert_allclose(post_only, 1.1031212, **TOL)
  np.testing.assert_allclose(pre_only, -0.57362294, **TOL)


@pytest.mark.parametrize("p_conn", [0.3, 0.8])
def test_p_conn_draws_the_same_connections_as_ngclearn(p_conn):
  key = jax.random.PRNGKey(3)
  ref = Reference(key, (20, 30), A_plus=1.0, A_minus=1.0, exp_beta=1.0, p_conn=p_conn)
  state = expstdp.init(key, (20, 30), p_conn=p_conn)
  w = ref.read()["weights"]
  np.testing.assert_array_equal(state.weights, w)
  np.testing.assert_array_equal(state.weight_mask, w != 0)


def test_p_conn_mask_persists_where_ngclearn_lets_connections_back():
  """A documented difference: ngclearn's clip turns p_conn zeros into w_eps."""
  key, shape = jax.random.PRNGKey(4), (10, 12)
  ref = Reference(key, shape, A_plus=1.0, A_minus=1.0, exp_beta=1.0, p_conn=0.5)
  state = expstdp.init(key, shape, p_conn=0.5)
  absent = ~np.asarray(state.weight_mask)
  act = random_activity(np.random.default_rng(0), 1, *shape)
  ref_w = ref.step(**act)["weights"]
  del act["inputs"]
  state = expstdp.evolve(state, expstdp.ExpSTDPParams(1.0, 1.0, 1.0), **act)
  assert absent.any()
  np.testing.assert_array_equal(np.asarray(state.weights)[absent], 0.0)
  assert np.all(ref_w[absent] >= 0.01)
  np.testing.assert_allclose(np.asarray(state.weights)[~absent], ref_w[~absent], **TOL)
