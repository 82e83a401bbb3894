"""Bad input fails at trace time with a message naming the argument."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp

PARAMS = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=1.0)
STATE = expstdp.init(jax.random.PRNGKey(0), (4, 3), batch_size=2)
EVOLVE_JIT = jax.jit(expstdp.evolve)


@pytest.mark.parametrize("evolve", [expstdp.evolve, EVOLVE_JIT], ids=["eager", "jit"])
@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(pre_spike=jnp.ones((2, 3))), ValueError, r"pre_spike must have shape \(2, 4\)"),
    (dict(post_trace=jnp.ones((3, 3))), ValueError, r"post_trace must have shape \(2, 3\)"),
    (dict(post_spike=jnp.ones((2, 3), jnp.int32)), TypeError, "post_spike must be a floating"),
    (dict(pre_spike=jnp.ones((2, 4), bool)), TypeError, "pre_spike must be a floating"),
    (dict(pre_trace=jnp.ones((2, 4), jnp.float16)), TypeError, "pre_trace must have the weights' dtype float32"),
])
def test_evolve_rejects_bad_activity(evolve, kwargs, error, pattern):
  with pytest.raises(error, match=pattern):
    evolve(STATE, PARAMS, **kwargs)


def test_compute_dW_rejects_mismatched_batches():
  w, a = STATE.weights, jnp.ones((2, 4), jnp.float32)
  with pytest.raises(ValueError, match=r"post_spike must have shape \(2, 3\)"):
    jax.jit(expstdp.compute_dW)(PARAMS, w, a, a, jnp.ones((5, 3)), jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="weights must be a 2-D"):
    expstdp.compute_dW(PARAMS, jnp.ones(4), a, a, a, a)
  b = jnp.ones((2, 3), jnp.float32)
  with pytest.raises(TypeError, match="weights must be floating, got dtype int32"):
    expstdp.compute_dW(PARAMS, jnp.ones((4, 3), jnp.int32), a, a, b, b)
  with pytest.raises(TypeError, match="weights must be an array, got list"):
    expstdp.compute_dW(PARAMS, [[1.0] * 3] * 4, a, a, b, b)
  with pytest.raises(TypeError, match="pre_trace must be an array of dtype float32, got list"):
    expstdp.compute_dW(PARAMS, STATE.weights, a, [[1.0] * 4] * 2, b, b)
  with pytest.raises(ValueError, match=r"pre_spike must have shape \(2, 3\), got \(2, 4\): its "
                     r"width is the 3 pre-synaptic neurons of weights, of shape \(3, 4\)"):
    expstdp.compute_dW(PARAMS, STATE.weights.T, a, a, b, b)  # the weights are the wrong ones


def test_forward_rejects_bad_inputs():
  with pytest.raises(ValueError, match=r"inputs must have shape \(2, 4\)"):
    jax.jit(expstdp.forward)(STATE, PARAMS, jnp.ones((2, 3)))
  for value in ("x", {"a": 1.0}, object(), 10**30):  # jnp.asarray's errors named no argument
    with pytest.raises(TypeError, match=f"inputs must be an array of dtype float32, got "
                       f"{type(value).__name__}"):
      expstdp.forward(STATE, PARAMS, value)
    with pytest.raises(TypeError, match="post_trace must be an array of dtype float32"):
      jax.jit(lambda s: expstdp.evolve_events(s, PARAMS, post_trace=value, max_pre=2,
                                              max_post=2))(STATE)
  nested = [[1.0] * 4] * 2  # still taken, as jnp.asarray reads it
  if jnp.asarray(nested).dtype == jnp.float32:
    np.testing.assert_array_equal(expstdp.forward(STATE, PARAMS, nested).outputs,
                                  expstdp.forward(STATE, PARAMS, jnp.ones((2, 4))).outputs)
  else:  # float64 with x64: refused, not narrowed
    with pytest.raises(TypeError, match="inputs must have the weights' dtype float32, got float64"):
      expstdp.forward(STATE, PARAMS, nested)
  with pytest.raises(ValueError, match=r"got \(3, 4\): the state's batch size is 2, which "
                     r"expstdp.init\(..., batch_size=B\) sets"):
    jax.jit(expstdp.forward)(STATE, PARAMS, jnp.ones((3, 4)))


def test_inconsistent_state_is_named():
  # Jax arrays, whose layout is checked once per layout (a failure is not
  # remembered), and numpy ones, checked field by field.
  for as_array in (jnp.asarray, jnp.asarray, np.asarray):
    with pytest.raises(ValueError, match=r"state.post_trace must have shape \(2, 3\)"):
      expstdp.evolve(STATE._replace(post_trace=as_array(jnp.ones((1, 3)))), PARAMS)
    with pytest.raises(ValueError, match="state.weight_mask"):
      expstdp.evolve(STATE._replace(weight_mask=as_array(jnp.ones((4, 3)))), PARAMS)
    with pytest.raises(ValueError, match="state.eta must be a scalar"):
      expstdp.evolve(STATE._replace(eta=as_array(jnp.ones((1, 1)))), PARAMS)
    # The field that sets the expected size may be the wrong one: it is named.
    with pytest.raises(ValueError, match=r"state.inputs must have shape \(2, 2\), got \(2, 4\): "
                       r"its width is the 2 pre-synaptic neurons of state.weights, of shape "
                       r"\(2, 3\)"):
      expstdp.evolve(STATE._replace(weights=as_array(jnp.ones((2, 3)))), PARAMS)
    with pytest.raises(ValueError, match=r"state.pre_spike must have shape \(5, 4\), got \(2, 4\): "
                       "the batch size is 5, that of state.inputs"):
      expstdp.evolve(STATE._replace(inputs=as_array(jnp.ones((5, 4), jnp.float32))), PARAMS)
    with pytest.raises(ValueError, match=r"d_weights must have the shape \(4, 3\) of state.weights"):
      expstdp.evolve(STATE._replace(d_weights=as_array(jnp.ones((3, 4)))), PARAMS)
  for evolve in (expstdp.evolve, functools.partial(expstdp.evolve_events, max_pre=2, max_post=2)):
    with pytest.raises(ValueError, match="state.eta must be finite, got nan"):  # was: W all NaN
      evolve(STATE._replace(eta=jnp.asarray(jnp.nan, jnp.float32)), PARAMS)
  with pytest.raises(TypeError, match="state must be an expstdp.SynapseState"):
    expstdp.reset(tuple(STATE))
  with pytest.raises(TypeError, match="state.weights must be an array, got list"):
    expstdp.forward(STATE._replace(weights=STATE.weights.tolist()), PARAMS)
  for entry_point in (expstdp.jitted.evolve, expstdp.jitted.forward):
    with pytest.raises(TypeError, match="state must be an expstdp.SynapseState"):
      entry_point(tuple(STATE), PARAMS)
    for params in (None, 3, tuple(PARAMS)):  # None and 3: "object is not iterable"
      with pytest.raises(TypeError, match="params must be an expstdp.ExpSTDPParams"):
        entry_point(STATE, params)
    with pytest.raises(TypeError, match="state.weights must be an array, got list"):
      entry_point(STATE._replace(weights=STATE.weights.tolist()), PARAMS)
    # Params the number cache cannot hold get the plain functions' errors.
    for value in (np.complex64(1), "1", "float32", None):  # a string is no dtype name here
      for fn in (entry_point, getattr(expstdp, entry_point.__name__)):
        with pytest.raises(TypeError, match="params.A_plus must be a real number"):
          fn(STATE, PARAMS._replace(A_plus=value))
    # Ints past what jit makes of them (int32) met OverflowError or isfinite's TypeError.
    bits = 64 if jax.config.jax_enable_x64 else 32
    for value in (10**400, 2**63, 2**(bits - 1), -2**(bits - 1) - 1):
      for fn in (entry_point, getattr(expstdp, entry_point.__name__)):
        with pytest.raises(ValueError, match=f"params.A_plus must be a float or an int that "
                           f"int{bits} holds, got an int of {abs(value).bit_length()} bits"):
          fn(STATE, PARAMS._replace(A_plus=value))
    entry_point(jax.tree.map(jnp.copy, STATE), PARAMS._replace(A_plus=2**(bits - 1) - 1))
  with pytest.raises(ValueError, match="params.A_minus must be a float or an int that int"):
    expstdp.evolve(STATE, PARAMS._replace(A_plus=jnp.float32(1), A_minus=2**(bits - 1)))  # mixed


@pytest.mark.parametrize("change, pattern", [
    (dict(A_minus=-0.1), "A_minus must be >= 0"),
    (dict(w_bound=0.02), r"w_bound must be > 2 \* params.w_eps"),
    (dict(w_eps=0.3, w_bound=0.5), r"w_bound must be > 2 \* params.w_eps"),
    (dict(w_eps=-0.01), "w_eps must be >= 0"),
    (dict(tau_w=-1.0), "tau_w must be >= 0"),
    (dict(A_plus=jnp.ones(3)), "A_plus must be a scalar"),
    # ngclearn would make every weight NaN, or every output (resist_scale)
    (dict(A_plus=float("nan")), "params.A_plus must be finite, got A_plus=nan"),
    (dict(A_minus=float("inf")), "params.A_minus must be finite, got A_minus=inf"),
    (dict(pretrace_target=float("-inf")), "params.pretrace_target must be finite"),
    (dict(resist_scale=float("nan")), "params.resist_scale must be finite"),
    (dict(tau_w=float("inf")), "params.tau_w must be finite"),
])
def test_invalid_hyperparameters_are_rejected(change, pattern):
  bad = PARAMS._replace(**change)
  as_arrays = jax.tree.map(jnp.float32, bad)  # as load gives them
  # Checked once per set of values, numbers or arrays: a failure is not remembered.
  for params in (bad, bad, as_arrays, as_arrays):
    with pytest.raises(ValueError, match=pattern):
      expstdp.evolve(STATE, params)
  with pytest.raises(ValueError, match=pattern):
    expstdp.validate_params(PARAMS._replace(**change))


def test_a_dtype_where_a_value_or_a_dtype_is_meant_is_named():
  """Each got an error from numpy that named nothing."""
  with pytest.raises(TypeError, match="params.A_plus must be a real number, got <"):
    expstdp.evolve(STATE, PARAMS._replace(A_plus=jnp.float32))
  for bad in ("x", [1, 2], 1.5):
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
      expstdp.validate_params(PARAMS, bad)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
      expstdp.max_exponent(bad)


def test_params_valid_for_one_dtype_are_checked_again_for_another():
  # Values, and params of jax arrays by identity, are remembered per dtype.
  for params in (PARAMS._replace(exp_beta=10.0),
                 jax.tree.map(jnp.float32, PARAMS._replace(exp_beta=10.0))):
    for _ in range(2):
      expstdp.validate_params(params, jnp.float32)
      with pytest.raises(ValueError, match="must be <= 8 for float16 weights"):
        expstdp.validate_params(params, jnp.float16)


def test_traced_hyperparameters_are_not_checked_at_trace_time():
  """Under jit values are unknown: expstdp.checked covers them (test_nonfinite)."""
  out = EVOLVE_JIT(STATE, PARAMS._replace(A_minus=-0.1))
  assert out.weights.shape == (4, 3)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(shape=(4,)), ValueError, "shape must be"),
    (dict(shape=(4, 0)), ValueError, "shape must be"),
    (dict(shape=4), TypeError, r"shape must be \(n_pre, n_post\).*got 4"),  # was: int has no len()
    (dict(shape=None), TypeError, r"shape must be \(n_pre, n_post\).*got None"),
    (dict(shape=(True, 3)), ValueError, r"shape must be.*got \(True, 3\)"),  # was: (1, 3)
    (dict(shape=(4, 3), dtype=None), TypeError, "dtype must be a floating dtype, got None"),
    (dict(shape=(4, 3), dtype="x"), TypeError, "dtype must be a floating dtype, got 'x'"),
    (dict(shape=(4, 3), dtype=1.5), TypeError, "dtype must be a floating dtype, got 1.5"),
    (dict(shape=jnp.ones(())), TypeError, r"shape must be \(n_pre, n_post\).*got Array"),
    (dict(shape=(4, 3), eta=1j), TypeError, r"eta must be a real scalar number, got 1j"),
    (dict(shape=(4, 3), batch_size=0), ValueError, "batch_size must be"),
    (dict(shape=(4, 3), p_conn=0.0), ValueError, r"p_conn must be a number in \(0, 1\]"),
    (dict(shape=(4, 3), p_conn=1.5), ValueError, r"p_conn must be a number in \(0, 1\]"),
    (dict(shape=(4, 3), p_conn="0.5"), TypeError, r"p_conn must be a number.*got '0.5'"),
    (dict(shape=(4, 3), eta=jnp.ones(3)), ValueError, r"eta must be a real scalar number, got shape"),
    (dict(shape=(4, 3), eta="0.1"), TypeError, "eta must be a real scalar number, got '0.1'"),
    (dict(shape=(4, 3), eta=True), TypeError, "eta must be a real scalar number, got True"),
    (dict(shape=(4, 3), eta=float("nan")), ValueError, "eta must be finite, got nan"),
    (dict(shape=(4, 3), eta=jnp.inf), ValueError, "eta must be finite, got inf"),
    (dict(shape=(4, 3), weight_init=0.5), TypeError, "weight_init must be a function f.key, sh"),
    (dict(shape=(4, 3), bias_init=0.1), TypeError, "bias_init must be a function"),
    (dict(shape=(4, 3), weight_mask=jnp.ones((2, 2))), ValueError,
     "weight_mask must be broadcastable"),
    (dict(shape=(4, 3), weight_mask=jnp.array([[1.0, jnp.nan, 0.0]])), ValueError,
     "weight_mask must not contain NaN"),  # was: NaN != 0, connected
    (dict(shape=(4, 3), weight_mask="0 1"), TypeError,
     "weight_mask must be an array of bools or real numbers"),
    (dict(shape=(4, 3), weight_init=lambda k, s, d: jnp.ones((3, 4), d)), ValueError,
     r"weight_init.*shape \(4, 3\)"),
    (dict(shape=(4, 3), weight_init=lambda k, s, d: jnp.zeros(s, jnp.int32)), TypeError,
     r"weight_init\(key, shape, dtype\) must be a floating array of dtype float32, got dtype "
     r"int32\.$"),  # was: "(spikes are 0.0/1.0 floats)"
    (dict(shape=(4, 3), weight_init=lambda k, s, d: jnp.eye(4, 3, dtype=d) / 0), ValueError,
     r"weight_init\(key, shape, dtype\) returned non-finite values"),  # was: NaN weights
    (dict(shape=(4, 3), bias_init=lambda k, s, d: jnp.full(s, jnp.inf, d)), ValueError,
     r"bias_init\(key, \(1, n_post\), dtype\) returned non-finite values"),
])
def test_init_rejects_bad_arguments(kwargs, error, pattern):
  with pytest.raises(error, match=pattern):
    expstdp.init(jax.random.PRNGKey(0), **kwargs)


@pytest.mark.parametrize("key, got", [
    (0, "0"), (None, "None"),
    (jax.random.split(jax.random.key(0), 3), r"shape \(3,\) and dtype key<fry>"),
    (jax.random.split(jax.random.PRNGKey(0), 3), r"shape \(3, 2\) and dtype uint32"),
])
def test_init_names_a_bad_key(key, got):
  with pytest.raises(TypeError, match=f"key must be one PRNG key.*got {got} .for several"):
    expstdp.init(key, (4, 3))


def test_init_names_a_traced_p_conn():
  """It sets whether the state has a mask; the message was 'p_conn must be a
  number in (0, 1], got JitTracer(...)'."""
  with pytest.raises(TypeError, match="p_conn must be a concrete number, not a traced value"):
    jax.jit(lambda p: expstdp.init(jax.random.PRNGKey(0), (4, 3), p_conn=p))(0.5)


def test_init_rejects_integer_dtype():
  with pytest.raises(TypeError, match="dtype must be a floating"):
    expstdp.init(jax.random.PRNGKey(0), (2, 2), dtype=jnp.int32)


def test_init_asks_for_64_bit_jax_for_float64():
  """Without it JAX makes every array float32, and the mismatch used to be
  blamed on weight_init."""
  if jax.config.jax_enable_x64:
    assert expstdp.init(jax.random.PRNGKey(0), (2, 2), dtype=jnp.float64).weights.dtype == "float64"
  else:
    with pytest.raises(ValueError, match=r"dtype float64 needs 64-bit JAX .*jax_enable_x64"):
      expstdp.init(jax.random.PRNGKey(0), (2, 2), dtype=jnp.float64)


def test_a_state_consumed_by_a_jitted_call_is_named(capfd):
  """The jitted entry points donate W and dW; passing the old state again
  (to them or to the plain functions) says so, naming the field."""
  state = jax.tree.map(jnp.copy, STATE)
  new = expstdp.jitted.evolve(state, PARAMS)
  capfd.readouterr()
  for fn in (expstdp.jitted.evolve, expstdp.jitted.forward, expstdp.evolve, expstdp.forward):
    with pytest.raises(ValueError, match="state.weights has been deleted.*expstdp.jitted"):
      fn(state, PARAMS)
  # Said before XLA could log its own "Buffer has been deleted or donated".
  assert "deleted" not in capfd.readouterr().err
  with pytest.raises(ValueError, match="state.d_weights has been deleted"):
    expstdp.jitted.evolve(new._replace(d_weights=state.d_weights), PARAMS)
  expstdp.jitted.evolve(new, PARAMS)  # the returned state works


def test_one_buffer_for_weights_and_d_weights_is_named(capfd):
  """jax's own error ("donate the same buffer twice") names no field, and
  XLA logged it to stderr first."""
  W = jnp.copy(STATE.weights)
  capfd.readouterr()
  for fn in (expstdp.jitted.evolve, expstdp.jitted.forward):
    with pytest.raises(ValueError, match="state.weights and state.d_weights are the same array"):
      fn(STATE._replace(weights=W, d_weights=W), PARAMS)
  assert "donate" not in capfd.readouterr().err
  assert not W.is_deleted()  # nothing was consumed: the state can be fixed and used
  # Inside someone's jit nothing is donated: the plain function runs.
  same = jax.jit(lambda: expstdp.jitted.evolve(STATE._replace(weights=W, d_weights=W), PARAMS))()
  np.testing.assert_array_equal(same.weights, expstdp.evolve(STATE, PARAMS).weights)


def test_stacked_populations_get_a_hint():
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), STATE)
  for fn in (expstdp.evolve, expstdp.jitted.evolve):
    with pytest.raises(ValueError, match=r"got shape \(2, 4, 3\)\. For stacked populations, "
                       r"jax.vmap the plain functions"):
      fn(stacked, PARAMS)


def test_with_d_weights_must_be_a_bool():
  """A string such as "False" would count as true and keep dW."""
  for fn, kwargs in ((expstdp.evolve, {}), (expstdp.jitted.evolve, {}),
                     (expstdp.evolve_events, dict(max_pre=4, max_post=3))):
    with pytest.raises(TypeError, match="with_d_weights must be a Python bool .*'False'"):
      fn(jax.tree.map(jnp.copy, STATE), PARAMS, with_d_weights="False", **kwargs)
  with pytest.raises(TypeError, match="with_d_weights must be a Python bool"):
    jax.jit(lambda s, w: expstdp.evolve(s, PARAMS, with_d_weights=w))(STATE, True)


def test_jitted_entry_points_name_an_unhashable_option():
  """jit's static hashing failed first, with a message naming no argument."""
  state = jax.tree.map(jnp.copy, STATE)
  with pytest.raises(TypeError, match="with_d_weights must be a Python bool"):
    expstdp.jitted.evolve(state, PARAMS, with_d_weights=[True])
  with pytest.raises(ValueError, match="max_pre must be a positive int"):
    expstdp.jitted.evolve_events(state, PARAMS, max_pre=jnp.int32(3), max_post=3)
  with pytest.raises(ValueError, match="max_active must be a positive int"):
    expstdp.jitted.forward_events(state, PARAMS, max_active=np.ones(2, int))
  assert not state.weights.is_deleted()  # nothing was consumed


def test_clip_weights_checks_its_arguments():
  """Crossed clip bounds would set every weight to 0 without a word."""
  with pytest.raises(ValueError, match=r"w_bound must be > 2 \* params.w_eps"):
    expstdp.clip_weights(STATE, PARAMS._replace(w_bound=0.01))
  with pytest.raises(TypeError, match="state must be an expstdp.SynapseState"):
    expstdp.clip_weights(tuple(STATE), PARAMS)
  with pytest.raises(TypeError, match="dtype must be a floating dtype .*int32"):
    expstdp.max_exponent(jnp.int32)
