"""jit, vmap, scan and grad: the functions compose with JAX's transforms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp
from conftest import counting_compiles, random_activity, run_with_xla_flags

N, M, B = 6, 5, 2
PARAMS = expstdp.ExpSTDPParams(A_plus=0.9, A_minus=0.6, exp_beta=1.3, pretrace_target=0.2,
                               tau_w=40.0, resist_scale=1.5)


def _state(seed=0, dtype=jnp.float32):
  state = expstdp.init(jax.random.PRNGKey(seed), (N, M), batch_size=B, eta=0.1, dtype=dtype,
                       p_conn=0.8, bias_init=expstdp.initializers.constant(0.2))
  act = random_activity(np.random.default_rng(seed), B, N, M)
  return state._replace(**{k: jnp.asarray(v, dtype) for k, v in act.items()})


def _step(state, params):
  return expstdp.evolve(expstdp.forward(state, params), params)


def test_eager_calls_run_as_one_compiled_program():
  """Op by op, an eager evolve compiled 35 XLA programs for a new shape and
  ran as many, and the event-driven loops compiled again on every call (new
  closures each time: 0.7-1 s a call at 784 x 6400). Now each function
  compiles once per shape, not again for new values, and gives the bits of
  jax.jit of itself."""
  # A shape no other test uses: nothing compiled for it yet. Everything comes
  # from the state: under jax.jit, XLA would fold constants (in its own
  # arithmetic, which can round differently).
  state = expstdp.init(jax.random.PRNGKey(5), (5, 7), batch_size=3, eta=0.3, p_conn=0.7)
  act = random_activity(np.random.default_rng(5), 3, 5, 7)
  activity = lambda s: (s.pre_spike, s.pre_trace, s.post_spike, s.post_trace)
  calls = {
      "forward": expstdp.forward,
      "evolve": expstdp.evolve,
      "compute_dW": lambda s, p: expstdp.compute_dW(p, s.weights, *activity(s)),
      "clip_weights": expstdp.clip_weights,
      "evolve_events": lambda s, p: expstdp.evolve_events(s, p, max_pre=4, max_post=4),
      "forward_events": lambda s, p: expstdp.forward_events(s, p, max_active=4),
      "reset": lambda s, p: expstdp.reset(s),
      "traces.update": lambda s, p: expstdp.traces.update(  # an op-by-op update: 0.8 ms
          s.pre_trace, s.pre_spike, dt=1.0, tau_tr=20.0, a_delta=p.A_plus),
  }
  with counting_compiles() as compiles:
    state = expstdp.clip_weights(state, PARAMS)._replace(
        **{name: jnp.asarray(x) for name, x in act.items()})
    for name, call in calls.items():
      compiles.clear()
      call(state, PARAMS)
      assert len(compiles) <= 3, (name, len(compiles))  # the function, and jax's own helpers
      compiles.clear()
      params = PARAMS._replace(A_plus=1.7, exp_beta=0.4)
      got = call(state, params)
      assert not compiles, name
      chex.assert_trees_all_equal(got, jax.jit(call)(state, params), custom_message=name)


def test_jit_equals_eager():
  state = _state()
  eager = _step(state, PARAMS)
  jitted = jax.jit(_step)(state, PARAMS)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), eager, jitted)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               expstdp.reset(eager), jax.jit(expstdp.reset)(eager))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_compiler_options_change_no_bit(dtype):
  """At a shape with full vectors and a remainder in every row."""
  state = expstdp.init(jax.random.PRNGKey(3), (37, 301), batch_size=B, eta=0.7, p_conn=0.9,
                       dtype=dtype)
  act = random_activity(np.random.default_rng(3), B, 37, 301)
  state = state._replace(**{k: jnp.asarray(v, dtype) for k, v in act.items()})
  compiled = jax.jit(_step).lower(state, PARAMS).compile()
  plain = compiled(state, PARAMS)
  tuned = jax.jit(_step, compiler_options=expstdp.jitted.compiler_options())(state, PARAMS)
  assert np.any(plain.weights != state.weights)
  # Where XLA:CPU hands forward's matmul to YNNPACK by default (it does on an
  # AMD EPYC with jax 0.10.2), the options keep it in XLA's own dot, which
  # sums in another order: the outputs agree to rounding.
  ynn_dot = "ynn_fusion" in compiled.as_text()
  for name, a, b in zip(tuned._fields, tuned, plain):
    if name == "outputs" and ynn_dot:
      np.testing.assert_allclose(a, b, rtol=8 * jnp.finfo(dtype).eps)  # 37 terms
    else:
      np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")
def test_compiler_options_are_those_xla_accepts():
  """An older jax whose XLA lacks an option must get the others, not a
  compile error in every `expstdp.jitted` call."""
  assert not expstdp.backend.accepts_option("xla_cpu_no_such_option", 1)
  assert expstdp.backend.accepts_option("xla_cpu_prefer_vector_width", 512)
  assert expstdp.jitted.compiler_options()["xla_cpu_prefer_vector_width"] == 512


def test_new_hyperparameter_values_do_not_recompile():
  step = jax.jit(chex.assert_max_traces(_step, n=1))
  state = _state()
  outs = []
  for i, A_plus in enumerate([0.1, 0.5, 2.0]):
    params = PARAMS._replace(A_plus=A_plus, exp_beta=0.5 * i, w_bound=1.0 + i, tau_w=10.0 * i)
    outs.append(step(state._replace(eta=jnp.asarray(0.1 * i, jnp.float32)), params))
  assert not np.array_equal(outs[1].weights, outs[2].weights)
  chex.clear_trace_counter()


def test_sweep_hyperparameters_with_vmap_in_one_compile():
  state, betas = _state(), jnp.linspace(0.0, 4.0, 7)
  params = PARAMS._replace(exp_beta=betas)
  axes = jax.tree.map(lambda _: None, PARAMS)._replace(exp_beta=0)
  sweep = jax.jit(jax.vmap(_step, in_axes=(None, axes)))
  out = sweep(state, params)
  for i, beta in enumerate(betas):
    np.testing.assert_allclose(out.weights[i], _step(state, PARAMS._replace(exp_beta=beta)).weights,
                               rtol=1e-6, atol=1e-7)


def _simulate(params, state, acts):
  def body(s, act):
    s = expstdp.forward(s, params, act["inputs"])
    s = expstdp.evolve(s, params, pre_spike=act["pre_spike"], pre_trace=act["pre_trace"],
                       post_spike=act["post_spike"], post_trace=act["post_trace"])
    return s, s.outputs
  final, outputs = jax.lax.scan(body, state, acts)
  return jnp.sum(final.weights ** 2) + jnp.mean(outputs)


@pytest.mark.parametrize("name", ["A_plus", "A_minus", "exp_beta"])
def test_grad_through_a_scanned_simulation_matches_finite_differences(name):
  with jax.enable_x64(True):
    state = expstdp.init(jax.random.PRNGKey(1), (N, M), batch_size=B, eta=0.05,
                         weight_init=expstdp.initializers.uniform(0.3, 0.6), dtype=jnp.float64)
    rng = np.random.default_rng(1)
    acts = [random_activity(rng, B, N, M, dtype=np.float64) for _ in range(8)]
    acts = jax.tree.map(lambda *x: jnp.stack(x), *acts)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)

    def loss(value):
      return _simulate(params._replace(**{name: value}), state, acts)

    x = getattr(params, name)
    grad = jax.jit(jax.grad(loss))(x)
    h = 1e-5
    fd = (loss(x + h) - loss(x - h)) / (2 * h)
    assert np.isfinite(grad) and abs(grad) > 1e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


@pytest.mark.parametrize("event_driven", [False, True])
def test_evolving_before_the_next_forward_gives_the_same_simulation(event_driven):
  # README "Fast scans on CPU": a scan body may evolve with the activity the
  # previous step stored, then run the forward; one evolve after the scan
  # finishes. Bit for bit the same weights and outputs as forward then evolve,
  # also under the CPU scheduler option the README suggests.
  params = PARAMS._replace(tau_w=0.0)
  if event_driven:
    forward = lambda s, x: expstdp.forward_events(s, params, x, max_active=N)
    evolve = lambda s: expstdp.evolve_events(s, params, max_pre=N, max_post=M)
  else:
    forward, evolve = (lambda s, x: expstdp.forward(s, params, x),
                       lambda s: expstdp.evolve(s, params))
  rng = np.random.default_rng(2)
  acts = [random_activity(rng, B, N, M) for _ in range(6)]
  acts = jax.tree.map(lambda *x: jnp.stack(x), *acts)
  state = expstdp.reset(expstdp.clip_weights(_state(), params))

  @jax.jit
  def forward_then_evolve(state):
    def body(s, a):
      s = forward(s, a["pre_spike"])
      return evolve(s._replace(**{k: v for k, v in a.items() if k != "inputs"})), s.outputs
    return jax.lax.scan(body, state, acts)

  def evolve_then_forward(state):
    def body(s, a):
      s = forward(evolve(s), a["pre_spike"])
      return s._replace(**{k: v for k, v in a.items() if k != "inputs"}), s.outputs
    final, outputs = jax.lax.scan(body, state, acts)
    return evolve(final), outputs

  evolve_then_forward = jax.jit(evolve_then_forward,
                                compiler_options=expstdp.jitted.compiler_options())

  (want, want_out), (got, got_out) = forward_then_evolve(state), evolve_then_forward(state)
  assert np.any(want.weights != state.weights)
  np.testing.assert_array_equal(got_out, want_out)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_evolve_for_multi_output_fusion_changes_no_bit(monkeypatch):
  """Where XLA fuses sibling loops, evolve computes dW a second time for W'
  (expstdp.backend.fuses_siblings): the same values and derivatives."""
  state = _state()._replace(weight_mask=jnp.ones((1, 1), bool))

  def loss(W):
    out = expstdp.evolve(state._replace(weights=W), PARAMS)
    return jnp.sum(out.weights ** 2) + jnp.sum(out.d_weights)

  want = jax.jit(lambda s: expstdp.evolve(s, PARAMS))(state)
  want_grad = jax.jit(jax.grad(loss))(state.weights)
  monkeypatch.setattr(expstdp.backend, "fuses_siblings", lambda: True)
  assert "optimization_barrier" in str(jax.make_jaxpr(lambda s: expstdp.evolve(s, PARAMS))(state))
  got = jax.jit(lambda s: expstdp.evolve(s, PARAMS))(state)
  got_grad = jax.jit(jax.grad(lambda W: loss(W)))(state.weights)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-6)
  assert np.any(got_grad != 0)


# README, "Performance": the XLA_FLAGS under which evolve keeps d_weights in one pass.
MULTI_OUTPUT = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion=true"
EVOLVE_KEEPING_DW = r"""
import re, sys, jax, jax.numpy as jnp, numpy as np, expstdp
p = expstdp.ExpSTDPParams(A_plus=0.9, A_minus=0.6, exp_beta=1.3, pretrace_target=0.2)
rng = np.random.default_rng(0)
s = expstdp.init(jax.random.key(0), (64, 300), batch_size=2, eta=0.1)
s = s._replace(**{k: jnp.asarray(rng.uniform(size=getattr(s, k).shape) < 0.3, jnp.float32)
                  for k in ("pre_spike", "post_spike")},
               **{k: jnp.asarray(rng.uniform(size=getattr(s, k).shape), jnp.float32)
                  for k in ("pre_trace", "post_trace")})
text = jax.jit(lambda s: expstdp.evolve(s, p)).lower(s).compile().as_text()
one_pass = re.search(r"fusion[.\d]* = \(f32\[64,300\]\{1,0\}, f32\[64,300\]", text) is not None
out = expstdp.jitted.evolve(s, p)
np.savez(sys.argv[1], weights=out.weights, d_weights=out.d_weights,
         siblings=expstdp.backend.fuses_siblings(), one_pass=one_pass)
"""


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_multi_output_fusion_writes_W_and_dW_in_one_pass(tmp_path):
  out = {name: run_with_xla_flags(EVOLVE_KEEPING_DW, flags, tmp_path / f"{name}.npz")
         for name, flags in (("plain", ""), ("fused", MULTI_OUTPUT))}
  assert not out["plain"]["siblings"] and not out["plain"]["one_pass"]
  # The probe tells evolve the truth: one pass where XLA fuses the siblings
  # (jax 0.8 to 0.11.0), and no second dW where it does not (0.11.2, 0.12).
  assert out["fused"]["siblings"] == out["fused"]["one_pass"]
  np.testing.assert_array_equal(out["fused"]["weights"], out["plain"]["weights"])
  np.testing.assert_array_equal(out["fused"]["d_weights"], out["plain"]["d_weights"])


def test_jitted_entry_points_run_the_plain_functions_under_transforms():
  """Given traced values, or while a jit or scan is traced, expstdp.jitted
  runs the plain function: the same bits under jit, vmap, scan and grad,
  and nothing donated."""
  state = expstdp.clip_weights(_state(3), PARAMS)
  stacked = jax.tree.map(lambda *x: jnp.stack(x), state, expstdp.clip_weights(_state(4), PARAMS))
  inputs = jnp.asarray(np.random.default_rng(3).uniform(size=(3, B, N)), jnp.float32)
  events = dict(max_pre=N, max_post=M)
  cases = {
      "jit": lambda m: jax.jit(lambda s: m.evolve(m.forward(s, PARAMS), PARAMS))(state),
      "vmap over states": lambda m: jax.vmap(lambda s: m.evolve(s, PARAMS))(stacked),
      "vmap over inputs": lambda m: jax.vmap(lambda x: m.forward(state, PARAMS, x))(inputs),
      "scan": lambda m: jax.lax.scan(
          lambda s, x: (m.evolve_events(m.forward_events(s, PARAMS, x, max_active=N), PARAMS,
                                        **events), None), state, inputs)[0],
      "grad over params": lambda m: jax.grad(
          lambda a: m.evolve(state, PARAMS._replace(A_plus=a)).weights.sum())(0.9),
      # Nothing traced: the state and params are constants captured by the jit.
      "jit of constants": lambda m: jax.jit(lambda x: m.forward(m.evolve(state, PARAMS), PARAMS,
                                                                x))(inputs[0]),
      "scan of constants, new params": lambda m: jax.lax.scan(
          lambda c, x: (c, m.evolve_events(state, PARAMS._replace(A_plus=0.7), **events)),
          0, inputs)[1],
  }
  # Params seen once outside: "jit of constants" then reaches the nested jit.
  expstdp.jitted.evolve(jax.tree.map(jnp.copy, state), PARAMS)
  for name, case in cases.items():
    chex.assert_trees_all_equal(case(expstdp.jitted), case(expstdp), custom_message=name)
    assert not state.weights.is_deleted() and not stacked.weights.is_deleted(), name


@pytest.mark.parametrize("symbolic, sizes", [
    ("b", [(N, M, 1), (N, M, 3), (N, M, 9)]),
    ("n, m, b", [(N, M, 1), (3, 7, 9)]),
    ("n, m", [(N, M, B), (1, 4, B)]),  # B = 2: broadcast outer products
])
def test_export_with_symbolic_sizes(symbolic, sizes):
  """jax.export with sizes left symbolic: one exported program for every
  size. The event-driven functions compute densely there (the sizes of their
  loops depend on them); they failed to export, as did evolve."""
  params = jax.tree.map(jnp.float32, PARAMS._replace(tau_w=0.0))  # else events run dense anyway

  def state(n_pre, n_post, batch):
    s = expstdp.init(jax.random.PRNGKey(0), (n_pre, n_post), batch_size=batch, eta=0.1,
                     p_conn=0.8)
    act = random_activity(np.random.default_rng(batch), batch, n_pre, n_post)
    return expstdp.clip_weights(s._replace(**{k: jnp.asarray(v) for k, v in act.items()}), params)

  dims = dict(zip(symbolic.split(", "), jax.export.symbolic_shape(symbolic)))
  n_pre, n_post, batch = (dims.get(name, size) for name, size in zip("nmb", (N, M, B)))
  spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state(N, M, B))
  spec = spec._replace(**{
      name: jax.ShapeDtypeStruct(shape, getattr(spec, name).dtype) for name, shape in (
          ("weights", (n_pre, n_post)), ("d_weights", (n_pre, n_post)),
          ("weight_mask", (n_pre, n_post)), ("inputs", (batch, n_pre)),
          ("pre_spike", (batch, n_pre)), ("pre_trace", (batch, n_pre)),
          ("outputs", (batch, n_post)), ("post_spike", (batch, n_post)),
          ("post_trace", (batch, n_post)))})
  for fn in (expstdp.forward, expstdp.evolve, expstdp.clip_weights,
             lambda s, p: expstdp.reset(s),
             lambda s, p: expstdp.forward_events(s, p, max_active=4),
             lambda s, p: expstdp.evolve_events(s, p, max_pre=4, max_post=4)):
    exported = jax.export.export(jax.jit(fn))(spec, params)
    for size in sizes:
      chex.assert_trees_all_close(exported.call(state(*size), params),
                                  jax.jit(fn)(state(*size), params), atol=1e-6)


def test_traces_export_with_symbolic_sizes():
  # The broadcast check of tau_tr and the others failed on symbolic sizes.
  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, n"), jnp.float32)
  update = jax.jit(lambda t, s: expstdp.traces.update(t, s, dt=1.0, tau_tr=10.0, a_delta=0.5))
  exported = jax.export.export(update)(spec, spec)
  rng = np.random.default_rng(0)
  for shape in ((1, 3), (4, 7)):
    trace = jnp.asarray(rng.uniform(size=shape), jnp.float32)
    spikes = jnp.asarray(rng.uniform(size=shape) < 0.5, jnp.float32)
    np.testing.assert_array_equal(exported.call(trace, spikes), update(trace, spikes))
