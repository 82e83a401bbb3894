"""Sharded == unsharded on 8 simulated CPU devices, for both layouts.

Run by tests/test_sharding.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (it must be set before jax
is imported); the main test process keeps its single device.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import expstdp

if jax.device_count() != 8:
  pytest.skip("needs 8 (simulated) devices", allow_module_level=True)

TOL = dict(rtol=1e-6, atol=1e-6)
PARAMS = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=2.0, pretrace_target=0.1,
                               resist_scale=1.5)
N, M, B, T = 16, 64, 2, 5
COLLECTIVES = r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)"


def _activity(rng, batch=B, n=N, m=M):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return dict(inputs=f32(rng.uniform(size=(batch, n))),
              pre_spike=f32(rng.uniform(size=(batch, n)) < 0.3),
              pre_trace=f32(rng.uniform(size=(batch, n))),
              post_spike=f32(rng.uniform(size=(batch, m)) < 0.3),
              post_trace=f32(rng.uniform(size=(batch, m))))


def _state(seed=0, **kwargs):
  state = expstdp.init(jax.random.PRNGKey(seed), (N, M), batch_size=B, eta=0.5, **kwargs)
  return state._replace(**_activity(np.random.default_rng(seed)))


def _step(state, params, act):
  state = expstdp.forward(state, params, act["inputs"])
  return expstdp.evolve(state, params, **{k: v for k, v in act.items() if k != "inputs"})


def _run(state, params, acts):
  return jax.lax.scan(lambda s, a: (_step(s, params, a), s.outputs), state, acts)


def _close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **TOL), a, b)


def _assert_shardings(tree, shardings):
  def check(x, s):
    assert x.sharding.is_equivalent_to(s, x.ndim), (x.sharding, s)
  jax.tree.map(check, tree, shardings)


def _collectives(fn, *args):
  return set(re.findall(COLLECTIVES, jax.jit(fn).lower(*args).compile().as_text()))


@pytest.fixture(params=[AxisType.Auto, AxisType.Explicit], ids=["auto", "explicit"])
def axis_type(request):
  return request.param


def _one_step_matches(state, shardings):
  """One forward + evolve, sharded as `shardings`, equals the unsharded one
  and keeps the documented shardings. Returns the sharded state and activity."""
  sharded = jax.device_put(state, shardings)
  act = _activity(np.random.default_rng(1))
  act_sharded = jax.device_put(act, {k: getattr(shardings, k) for k in act})
  step = jax.jit(_step)
  out = step(sharded, PARAMS, act_sharded)
  _close(out, step(state, PARAMS, act))
  _assert_shardings(out, shardings)
  return sharded, act_sharded


@pytest.mark.parametrize("p_conn", [1.0, 0.7])
def test_synapse_parallel_by_columns(axis_type, p_conn):
  mesh = jax.make_mesh((8,), ("post",), axis_types=(axis_type,))
  state = _state(p_conn=p_conn)
  shardings = expstdp.sharding.synapse(mesh, state, post_axis="post")
  sharded, act_sharded = _one_step_matches(state, shardings)
  # dW[i, j] needs only column j of the post-side vectors: no communication.
  assert _collectives(_step, sharded, PARAMS, act_sharded) == set()

  acts = jax.tree.map(lambda *x: jnp.stack(x), *[_activity(np.random.default_rng(t)) for t in range(T)])
  acts_sharded = jax.device_put(acts, {k: NamedSharding(mesh, P(None, *getattr(shardings, k).spec))
                                       for k in acts})
  final, outputs = jax.jit(_run)(sharded, PARAMS, acts_sharded)
  ref_final, ref_outputs = jax.jit(_run)(state, PARAMS, acts)
  _close((final, outputs), (ref_final, ref_outputs))
  _assert_shardings(final, shardings)


def test_synapse_parallel_by_rows_and_columns(axis_type):
  mesh = jax.make_mesh((2, 4), ("pre", "post"), axis_types=(axis_type,) * 2)
  state = _state()
  shardings = expstdp.sharding.synapse(mesh, state, pre_axis="pre", post_axis="post")
  sharded, act_sharded = _one_step_matches(state, shardings)
  # evolve is local; forward sums over the pre-synaptic (row) shards.
  evolve_only = lambda s, p, a: expstdp.evolve(s, p, **{k: v for k, v in a.items() if k != "inputs"})
  assert _collectives(evolve_only, sharded, PARAMS, act_sharded) == set()
  assert _collectives(lambda s, p: expstdp.forward(s, p), sharded, PARAMS) & {"all-reduce", "reduce-scatter"}


def test_event_driven_functions_on_a_sharded_synapse(axis_type):
  """Under explicit sharding they raised jax's ShardingTypeError (a dynamic
  slice of a sharded axis); they now compute densely there. Eager and
  jitted, equal to the dense functions and sharded as documented."""
  mesh = jax.make_mesh((2, 4), ("pre", "post"), axis_types=(axis_type,) * 2)
  state = expstdp.clip_weights(_state(), PARAMS)
  shardings = expstdp.sharding.synapse(mesh, state, pre_axis="pre", post_axis="post")
  sharded = jax.device_put(state, shardings)

  def events(s):
    s = expstdp.forward_events(s, PARAMS, max_active=N)
    return expstdp.evolve_events(s, PARAMS, max_pre=N, max_post=M)

  with jax.set_mesh(mesh):
    for got in (events(sharded), jax.jit(events)(sharded)):
      _close(got, jax.jit(lambda s: _step(s, PARAMS, {k: getattr(s, k) for k in (
          "inputs", "pre_spike", "pre_trace", "post_spike", "post_trace")}))(state))
      _assert_shardings(got, shardings)


@pytest.mark.parametrize("batch", [1, 2, 5])  # rows in pieces, whole rows, LTD by matmul
@pytest.mark.parametrize("axis", ["pre_axis", "post_axis"])
def test_event_driven_functions_inside_shard_map(axis, batch):
  """Inside shard_map each device runs the event loops over its own block of
  W. Their carries started replicated and became device-varying, which jax
  refused ("carry input and carry output must have equal types")."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
  state = expstdp.init(jax.random.PRNGKey(0), (N, M), batch_size=batch, eta=0.5, p_conn=0.7)
  state = expstdp.clip_weights(state._replace(**_activity(np.random.default_rng(2), batch)),
                               PARAMS._replace(tau_w=0.0))
  shardings = expstdp.sharding.synapse(mesh, state, **{axis: "x"})
  specs = jax.tree.map(lambda sharding: sharding.spec, shardings)
  per_device = lambda fn: jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(specs,), out_specs=specs))
  events = per_device(lambda s: expstdp.evolve_events(s, PARAMS, max_pre=N, max_post=M))
  dense = per_device(lambda s: expstdp.evolve(s, PARAMS))
  sharded = jax.device_put(state, shardings)
  got = events(sharded)
  _close(got, jax.jit(expstdp.evolve)(state, PARAMS))
  if batch <= 3:  # past 4 dW's batch sum is a matrix product, summed in an order of XLA's
    np.testing.assert_array_equal(got.d_weights, dense(sharded).d_weights)
  _assert_shardings(got, shardings)
  if axis == "post_axis":  # forward needs no sum across devices
    forward = per_device(lambda s: expstdp.forward_events(s, PARAMS, max_active=N))
    _close(forward(sharded).outputs, jax.jit(expstdp.forward)(state, PARAMS).outputs)


def test_population_parallel(axis_type):
  mesh = jax.make_mesh((8,), ("pop",), axis_types=(axis_type,))
  pops = 16
  states = jax.tree.map(lambda *x: jnp.stack(x), *[_state(seed=i) for i in range(pops)])
  params = jax.tree.map(lambda x: jnp.full(pops, x, jnp.float32), PARAMS)._replace(
      A_plus=jnp.linspace(0.5, 1.5, pops))
  acts = jax.tree.map(lambda *x: jnp.stack(x), *[
      jax.tree.map(lambda *y: jnp.stack(y), *[_activity(np.random.default_rng(100 * i + t))
                                              for t in range(T)]) for i in range(pops)])
  state_sh = expstdp.sharding.population(mesh, states, "pop")
  sharded = (jax.device_put(states, state_sh),
             jax.device_put(params, expstdp.sharding.population(mesh, params, "pop")),
             jax.device_put(acts, expstdp.sharding.population(mesh, acts, "pop")))
  run = jax.jit(jax.vmap(_run))
  final, outputs = run(*sharded)
  _close((final, outputs), run(states, params, acts))
  _assert_shardings(final, state_sh)
  assert _collectives(jax.vmap(_run), *sharded) == set()

  step = jax.jit(jax.vmap(_step))
  one = jax.tree.map(lambda x: x[:, 0], acts)
  out = step(sharded[0], sharded[1], jax.device_put(one, expstdp.sharding.population(mesh, one, "pop")))
  _close(out, step(states, params, one))
  _assert_shardings(out, state_sh)


def test_init_directly_into_shards():
  """A state too big for one device is created where it lives, without a gather."""
  mesh = jax.make_mesh((8,), ("post",), axis_types=(AxisType.Auto,))
  template = jax.eval_shape(lambda: expstdp.init(jax.random.PRNGKey(0), (N, M), batch_size=B))
  shardings = expstdp.sharding.synapse(mesh, template, post_axis="post")
  make = jax.jit(lambda key: expstdp.init(key, (N, M), batch_size=B), out_shardings=shardings)
  state = make(jax.random.PRNGKey(3))
  _assert_shardings(state, shardings)
  np.testing.assert_array_equal(state.weights, expstdp.init(jax.random.PRNGKey(3), (N, M)).weights)


def test_helpers_reject_bad_layouts():
  mesh = jax.make_mesh((8,), ("post",), axis_types=(AxisType.Auto,))
  with pytest.raises(TypeError, match="state must be an expstdp.SynapseState, got tuple"):
    expstdp.sharding.synapse(mesh, tuple(_state()), post_axis="post")  # was an AttributeError
  with pytest.raises(ValueError, match="give pre_axis, post_axis"):
    expstdp.sharding.synapse(mesh, _state())
  with pytest.raises(ValueError, match="'rows' is not an axis"):
    expstdp.sharding.synapse(mesh, _state(), pre_axis="rows")
  with pytest.raises(ValueError, match="leading population axis"):
    expstdp.sharding.population(mesh, PARAMS, "post")
  # Found by fuzzing: AttributeErrors from NamedSharding, and jax's DuplicateSpecError.
  with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh .*, got tuple"):
    expstdp.sharding.replicated(("post",), PARAMS)
  with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh .jax.make_mesh., got dict"):
    expstdp.sharding.synapse({"post": 8}, _state(), post_axis="post")
  with pytest.raises(ValueError, match="'pop' is not an axis of the mesh"):
    expstdp.sharding.population(mesh, PARAMS, "pop")
  with pytest.raises(TypeError, match="axis must be a mesh axis name"):
    expstdp.sharding.population(mesh, PARAMS, ["post"])
  with pytest.raises(ValueError, match="must be different mesh axes, got 'post' twice"):
    expstdp.sharding.synapse(mesh, _state(), pre_axis="post", post_axis="post")
