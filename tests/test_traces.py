"""expstdp.traces.update against ngclearn 3.1.1's VarTrace itself."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from expstdp import traces

pytest.importorskip("ngclearn")
from ngclearn import Context, MethodProcess  # noqa: E402
from ngclearn.components.other.varTrace import VarTrace  # noqa: E402

_names = itertools.count()
CASES = [
    dict(tau_tr=20.0, a_delta=0.5),
    dict(tau_tr=10.0, a_delta=0.0),
    dict(tau_tr=10.0, a_delta=0.0, P_scale=0.7, gamma_tr=0.9),
    dict(tau_tr=15.0, a_delta=1.0, decay_type="lin"),
    dict(tau_tr=15.0, a_delta=0.0, decay_type="step"),
    dict(tau_tr=8.0, a_delta=0.8, n_nearest_spikes=1),
    dict(tau_tr=8.0, a_delta=1.0, n_nearest_spikes=3, decay_type="exponential"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_multistep_parity_with_ngclearn_vartrace(case):
  hp, batch, n, dt = CASES[case], 2, 7, 0.5
  with Context(f"trace{next(_names)}"):
    ref = VarTrace("tr", n, batch_size=batch, **hp)
    process = MethodProcess("p") >> ref.advance_state
  kwargs = {k: v for k, v in hp.items()}
  step = jax.jit(lambda z, s: traces.update(z, s, dt=dt, **kwargs))
  rng = np.random.default_rng(case)
  z = jnp.zeros((batch, n), jnp.float32)
  for _ in range(12):
    s = jnp.asarray(rng.uniform(size=(batch, n)) < 0.3, jnp.float32)
    ref.inputs.set(s)
    process.run(dt=dt)
    z = step(z, s)
    np.testing.assert_allclose(z, ref.trace.get(), rtol=1e-6, atol=1e-6)


def test_dt_and_tau_are_traced_and_a_delta_may_be():
  update = jax.jit(traces.update, static_argnames=("decay_type", "n_nearest_spikes"))
  z, s = jnp.full((1, 3), 0.5), jnp.asarray([[1.0, 0.0, 1.0]])
  for dt, tau, a_delta in [(1.0, 10.0, 0.5), (0.5, 20.0, 0.0), (2.0, 5.0, 1.0)]:
    out = update(z, s, dt=dt, tau_tr=tau, a_delta=a_delta)
    decayed = 0.5 * np.exp(-dt / tau)
    expected = [decayed + a_delta, decayed, decayed + a_delta] if a_delta > 0 else [1.0, decayed, 1.0]
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
  assert update._cache_size() == 1


def test_bad_arguments():
  z = jnp.zeros((1, 3))
  with pytest.raises(ValueError, match="decay_type must contain"):
    traces.update(z, z, dt=1.0, tau_tr=2.0, decay_type="cubic")
  with pytest.raises(ValueError, match=r"spikes must have the shape of trace, \(1, 3\), got "
                     r"\(1, 4\)"):  # was: "must have shape (1, 3)", not saying whose
    traces.update(z, jnp.zeros((1, 4)), dt=1.0, tau_tr=2.0)
  with pytest.raises(ValueError, match="n_nearest_spikes"):
    traces.update(z, z, dt=1.0, tau_tr=2.0, n_nearest_spikes=-1)
  for tau in (0.0, -5.0):
    with pytest.raises(ValueError, match=f"tau_tr must be > 0, got {tau}"):
      traces.update(z, z, dt=1.0, tau_tr=tau)
  with pytest.raises(ValueError, match="dt must be >= 0, got -1.0"):
    traces.update(z, z, dt=-1.0, tau_tr=2.0)
  with pytest.raises(ValueError, match="a_delta must be a float or an int that int"):
    traces.update(z, z, dt=1.0, tau_tr=2.0, a_delta=2**64)  # was jit's OverflowError
  with pytest.raises(ValueError, match="n_nearest_spikes must be a static int"):
    traces.update(z, z, dt=1.0, tau_tr=2.0, n_nearest_spikes=True)
  s = jnp.asarray([[1.0, 0.0, 1.0]])  # a numpy int is an int too
  np.testing.assert_array_equal(
      traces.update(z + 0.5, s, dt=1.0, tau_tr=2.0, a_delta=1.0, n_nearest_spikes=np.int64(2)),
      traces.update(z + 0.5, s, dt=1.0, tau_tr=2.0, a_delta=1.0, n_nearest_spikes=2))
  np.testing.assert_array_equal(  # an int past int32 (it overflowed), read as the float it is
      traces.update(z + 0.5, s, dt=1.0, tau_tr=2.0, a_delta=1.0, n_nearest_spikes=10**30),
      traces.update(z + 0.5, s, dt=1.0, tau_tr=2.0, a_delta=1.0, n_nearest_spikes=10**20))
  with pytest.raises(TypeError, match="trace must be a floating array, got dtype int32"):
    traces.update(z.astype(jnp.int32), z, dt=1.0, tau_tr=2.0)
  with pytest.raises(TypeError, match="trace must be a floating array, got list"):
    traces.update([[0.0] * 3], z, dt=1.0, tau_tr=2.0)
  with pytest.raises(TypeError, match="spikes must have the trace's dtype float16"):
    traces.update(z.astype(jnp.float16), z, dt=1.0, tau_tr=2.0)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(a_delta="1"), TypeError, r"a_delta must be a real number .*got '1'"),  # was read as 1.0
    (dict(dt=None), TypeError, "dt must be a real number"),  # was: '>=' not supported
    (dict(gamma_tr=float("nan")), ValueError, "gamma_tr must be finite, got nan"),  # a NaN trace
    (dict(P_scale=jnp.inf), ValueError, "P_scale must be finite"),
    (dict(tau_tr=jnp.ones(2)), ValueError,  # was jax's 'mul got incompatible shapes'
     r"tau_tr must be a number or an array broadcastable to the trace's shape \(1, 3\), got shape \(2,\)"),
    (dict(a_delta=jnp.ones((2, 1, 3))), ValueError, r"a_delta must be .*got shape \(2, 1, 3\)"),
])
def test_bad_values(kwargs, error, pattern):
  z = jnp.zeros((1, 3))
  with pytest.raises(error, match=pattern):
    traces.update(z, z, **{**dict(dt=1.0, tau_tr=2.0), **kwargs})


def test_values_per_neuron_and_numpy_traces():
  """A time constant per neuron broadcasts; a numpy float64 trace becomes
  float32 without x64, as its spikes do (the spikes were refused)."""
  z, s = np.full((2, 3), 0.5), np.asarray([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
  tau = np.asarray([1.0, 2.0, 4.0])
  got = traces.update(z, s, dt=1.0, tau_tr=tau, a_delta=1.0)
  np.testing.assert_allclose(got, 0.5 * np.exp(-1.0 / tau) + s, rtol=1e-6)
  assert got.dtype == jnp.asarray(z).dtype
