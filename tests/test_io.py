import io
import json
import struct
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


def _members(path):
  """The arrays of the .npz at `path`, and its __expstdp__ record decoded."""
  with np.load(path, allow_pickle=False) as f:
    members = {k: f[k] for k in f.files}
  return members, json.loads(members.pop("__expstdp__").tobytes())


def _write(out, members, meta):
  """An .npz of `members` with `meta` (any JSON value) as its record: a file
  written by other means than expstdp.save."""
  np.savez(out, **members, __expstdp__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
  return out


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_round_trip(tmp_path, dtype):
  state = expstdp.init(jax.random.PRNGKey(0), (5, 4), batch_size=2, p_conn=0.5, dtype=dtype, eta=0.1)
  expstdp.save(tmp_path / "syn.npz", state, PARAMS)
  loaded, params = expstdp.load(tmp_path / "syn.npz")
  _assert_same(loaded, state)
  _assert_same(params, jax.tree.map(jnp.asarray, PARAMS))
  with np.load(tmp_path / "syn.npz", allow_pickle=False) as f:  # nothing pickled
    assert "state.weights" in f.files


def test_round_trip_through_a_file_object():
  # save took one (numpy's savez does), load did not.
  state = expstdp.init(jax.random.PRNGKey(0), (5, 4), eta=0.1)
  buffer = io.BytesIO(b"header")
  buffer.seek(0, io.SEEK_END)
  expstdp.save(buffer, state, PARAMS)
  buffer.seek(len(b"header"))
  loaded, params = expstdp.load(buffer)
  _assert_same(loaded, state)
  _assert_same(params, jax.tree.map(jnp.asarray, PARAMS))
  with pytest.raises(ValueError, match="BytesIO is not a readable expstdp file"):
    expstdp.load(io.BytesIO(buffer.getvalue()[len(b"header"):-100]))


def test_paths_of_bytes_and_what_is_no_path(tmp_path):
  state = expstdp.init(jax.random.PRNGKey(0), (5, 4), eta=0.1)
  expstdp.save(bytes(tmp_path / "syn"), state, PARAMS)  # as open takes them
  _assert_same(expstdp.load(bytes(tmp_path / "syn.npz"))[0], state)
  for path in (None, 3):  # "expected str, bytes or os.PathLike object", naming nothing
    with pytest.raises(TypeError, match="path must be a file path or a binary file object open "
                       f"for writing, got {type(path).__name__}"):
      expstdp.save(path, state, PARAMS)
    with pytest.raises(TypeError, match="path must be a file path or a binary file object open "
                       f"for reading, got {type(path).__name__}"):
      expstdp.load(path)
  # In text mode: "write() argument must be str", or "not a .npz (zip) archive".
  with open(tmp_path / "text", "w") as f, pytest.raises(TypeError, match=r"binary mode \('wb'\)"):
    expstdp.save(f, state, PARAMS)
  with open(tmp_path / "syn.npz") as f, pytest.raises(TypeError, match=r"binary mode \('rb'\)"):
    expstdp.load(f)
  with pytest.raises(TypeError, match="save writes values, and it was given traced ones"):
    jax.jit(lambda w: expstdp.save(tmp_path / "t", state._replace(weights=w), PARAMS))(
        state.weights)
  assert not (tmp_path / "t.npz").exists() and not (tmp_path / "text").read_bytes()


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
  with pytest.raises(ValueError, match="state.post_trace must have shape"):
    expstdp.save(tmp_path / "odd.npz", bad, PARAMS)  # save refuses to write it
  members, meta = _members(good)
  meta["shapes"]["state.post_trace"] = [1, 7]
  odd = _write(tmp_path / "odd.npz",
               members | {"state.post_trace": np.zeros((1, 7), np.float32)}, meta)
  with pytest.raises(ValueError, match="inconsistent synapse: state.post_trace must have shape"):
    expstdp.load(odd)


def test_damaged_archives_are_rejected_with_a_value_error(tmp_path):
  """Found by flipping bytes of saved files: zipfile's NotImplementedError
  and RuntimeError, and zlib's error (in a compressed .npz), came through
  as they were."""
  good = tmp_path / "good.npz"
  expstdp.save(good, expstdp.init(jax.random.PRNGKey(0), (5, 4)), PARAMS)
  data = good.read_bytes()
  entry = data.index(b"PK\x01\x02")  # the first member in the central directory
  damaged = {
      "compression": (entry + 10, b"\x63\x00"),  # method 99: "not supported"
      "encryption": (entry + 8, b"\x01\x00"),    # flag bit 0: "password required"
  }
  for name, (offset, patch) in damaged.items():
    path = tmp_path / f"{name}.npz"
    path.write_bytes(data[:offset] + patch + data[offset + len(patch):])
    with pytest.raises(ValueError, match="truncated or foreign"):
      expstdp.load(path)

  members, meta = _members(good)
  compressed = tmp_path / "compressed.npz"
  np.savez_compressed(compressed, **members,
                      __expstdp__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
  expstdp.load(compressed)  # a compressed copy is read
  data = compressed.read_bytes()
  with zipfile.ZipFile(compressed) as z:
    at = z.getinfo("state.weights.npy").header_offset
  name_length, extra_length = struct.unpack("<HH", data[at + 26:at + 30])  # its local header
  start = at + 30 + name_length + extra_length  # where its deflate stream begins
  bad = tmp_path / "bad_stream.npz"
  bad.write_bytes(data[:start] + b"\xff" * 8 + data[start + 8:])
  with pytest.raises(ValueError, match="truncated or foreign"):
    expstdp.load(bad)


def test_a_corrupt_record_is_rejected_with_a_value_error(tmp_path):
  good = tmp_path / "good.npz"
  expstdp.save(good, expstdp.init(jax.random.PRNGKey(0), (5, 4)), PARAMS)
  members, meta = _members(good)
  weights_as = lambda dtype: meta | {"dtypes": meta["dtypes"] | {"state.weights": dtype}}
  for i, (m, pattern) in enumerate([
      ([1, 2], "record is corrupt: not a JSON object"),
      ({k: v for k, v in meta.items() if k != "dtypes"}, "no valid dtype and shape for state"),
      (weights_as("no such dtype"), "no valid dtype and shape for state.weights"),
      (weights_as("int32"), "state.weights must be floating"),
      (weights_as("U1"), "state.weights has dtype <U1, which JAX cannot hold"),  # was: TypeError
  ]):
    with pytest.raises(ValueError, match=pattern):
      expstdp.load(_write(tmp_path / f"corrupt{i}.npz", members, m))


def test_every_member_of_a_population_is_checked(tmp_path):
  states = jax.vmap(lambda k: expstdp.init(k, (5, 4)))(jax.random.split(jax.random.PRNGKey(1), 3))
  params = jax.tree.map(lambda x: jnp.full(3, x, jnp.float32), PARAMS)
  bad = params._replace(A_minus=params.A_minus.at[2].set(-0.1))
  with pytest.raises(ValueError, match=r"A_minus must be >= 0.*got A_minus=-0.1 in population "
                     r"member \(2,\)"):  # was -0.10000000149011612
    expstdp.save(tmp_path / "bad", states, bad)  # save refuses to write it
  with pytest.raises(ValueError, match=r"params.w_bound must be a scalar or have the population "
                     r"shape \(3,\)"):
    expstdp.save(tmp_path / "bad", states, params._replace(w_bound=jnp.ones(2)))
  with pytest.raises(ValueError, match=r"state.eta has shape \(2,\), but the population axes "):
    expstdp.save(tmp_path / "bad", states._replace(eta=jnp.ones(2)), params)
  assert not list(tmp_path.iterdir())

  good = tmp_path / "good.npz"
  expstdp.save(good, states, params)
  members, meta = _members(good)
  written = _write(tmp_path / "written.npz",
                   members | {"params.A_minus": np.asarray(bad.A_minus)}, meta)
  with pytest.raises(ValueError, match=r"inconsistent synapse: .*population member \(2,\)"):
    expstdp.load(written)  # load catches a file written by other means


def test_a_float64_synapse_is_not_narrowed_silently(tmp_path):
  good = tmp_path / "good.npz"
  expstdp.save(good, expstdp.init(jax.random.PRNGKey(0), (5, 4)), PARAMS)
  members, meta = _members(good)  # made into what an x64 process writes for float64
  for key in [k for k in members if k.startswith("state.") and members[k].dtype == np.float32]:
    members[key] = members[key].astype(np.float64)
    meta["dtypes"][key] = "float64"
  wide = _write(tmp_path / "wide.npz", members, meta)
  if jax.config.jax_enable_x64:
    assert expstdp.load(wide)[0].weights.dtype == jnp.float64
  else:  # jnp.asarray would make it float32
    with pytest.raises(ValueError, match=r"holds a float64 synapse \(state.weights\), which "
                       r"needs 64-bit JAX"):
      expstdp.load(wide)
