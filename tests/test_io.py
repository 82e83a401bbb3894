import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp

PARAMS = expstdp.ExpSTDPParams(A_plus=0.9, A_minus=0.3, exp_beta=2.0, pretrace_target=0.2)


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert jnp.asarray(x).dtype == jnp.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_round_trip(tmp_path, dtype):
  state = expstdp.init(jax.random.PRNGKey(0), (5, 4), batch_size=2, p_conn=0.5, dtype=dtype, eta=0.1)
  expstdp.save(tmp_path / "syn.npz", state, PARAMS)
  loaded, params = expstdp.load(tmp_path / "syn.npz")
  _assert_same(loaded, state)
  _assert_same(params, jax.tree.map(jnp.asarray, PARAMS))
  with np.load(tmp_path / "syn.npz", allow_pickle=False) as f:  # nothing pickled
    assert "state.weights" in f.files


def test_round_trip_of_a_population(tmp_path):
  states = jax.vmap(lambda k: expstdp.init(k, (5, 4)))(jax.random.split(jax.random.PRNGKey(1), 3))
  params = jax.tree.map(lambda x: jnp.full(3, x, jnp.float32), PARAMS)
  expstdp.save(tmp_path / "pop", states, params)  # numpy appends .npz
  for name in ("pop.npz", "pop"):  # load takes the name save was given, too
    loaded, loaded_params = expstdp.load(tmp_path / name)
    _assert_same(loaded, states)
    _assert_same(loaded_params, params)


def test_foreign_truncated_and_inconsistent_files_are_rejected(tmp_path):
  state = expstdp.init(jax.random.PRNGKey(0), (5, 4))
  good = tmp_path / "good.npz"
  expstdp.save(good, state, PARAMS)

  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
  with pytest.raises(ValueError, match="truncated or foreign"):
    expstdp.load(truncated)

  foreign = tmp_path / "foreign.npz"
  np.savez(foreign, weights=np.ones((5, 4)))
  with pytest.raises(ValueError, match="not an expstdp file"):
    expstdp.load(foreign)

  text = tmp_path / "text.npz"
  text.write_text("hello")
  with pytest.raises(ValueError, match=r"truncated or foreign\): not a .npz \(zip\) archive"):
    expstdp.load(text)

  with pytest.raises(FileNotFoundError):
    expstdp.load(tmp_path / "missing.npz")

  with zipfile.ZipFile(good) as z:
    members = {n: z.read(n) for n in z.namelist()}
  broken = tmp_path / "broken.npz"
  with zipfile.ZipFile(broken, "w") as z:
    for name, data in members.items():
      if name != "state.pre_trace.npy":
        z.writestr(name, data)
  with pytest.raises(ValueError, match=r"lacks the fields \['state.pre_trace'\]"):
    expstdp.load(broken)

  bad = state._replace(post_trace=jnp.zeros((1, 7)))
  odd = tmp_path / "odd.npz"
  expstdp.save(odd, bad, PARAMS)
  with pytest.raises(ValueError, match="inconsistent synapse: state.post_trace must have shape"):
    expstdp.load(odd)
