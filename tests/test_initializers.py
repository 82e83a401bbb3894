import jax
import jax.numpy as jnp
import numpy as np
import pytest

import expstdp
from expstdp import initializers

pytest.importorskip("ngclearn")
from ngclearn.utils.distribution_generator import DistributionGenerator as DG  # noqa: E402

KEY = jax.random.PRNGKey(11)

SAME_AS_NGCLEARN = [
    (initializers.uniform(0.025, 0.8), DG.uniform(0.025, 0.8)),
    (initializers.uniform(-1.0, 2.0, amin=0.0, amax=1.0), DG.uniform(-1.0, 2.0, amin=0.0, amax=1.0)),
    (initializers.gaussian(0.5, 0.2), DG.gaussian(0.5, 0.2)),
    (initializers.gaussian(0.0, 1.0, hollow=True), DG.gaussian(0.0, 1.0, hollow=True)),
    (initializers.constant(0.3, eye=True), DG.constant(0.3, eye=True)),
    (initializers.uniform(lower_triangle=True), DG.uniform(lower_triangle=True)),
    (initializers.uniform(upper_triangle=True), DG.uniform(upper_triangle=True)),
    (initializers.uniform(col_mask=3), DG.uniform(col_mask=3)),
    (initializers.fan_in_uniform(), DG.fan_in_uniform()),
    (initializers.fan_in_gaussian(), DG.fan_in_gaussian()),
]


@pytest.mark.parametrize("case", range(len(SAME_AS_NGCLEARN)))
@pytest.mark.parametrize("shape", [(6, 6), (5, 8)])
def test_same_key_same_weights_as_ngclearn(case, shape):
  ours, theirs = SAME_AS_NGCLEARN[case]
  np.testing.assert_array_equal(ours(KEY, shape, jnp.float32), theirs(shape, KEY))


def test_index_masks_keep_those_rows_and_columns():
  """ngclearn's row_mask masks columns and its list col_mask raises; ours do as named."""
  w = initializers.uniform(0.5, 1.0, col_mask=[0, 4])(KEY, (5, 7))
  np.testing.assert_array_equal(np.asarray(w).any(axis=0), [1, 0, 0, 0, 1, 0, 0])
  w = initializers.uniform(0.5, 1.0, row_mask=[1, 3])(KEY, (5, 7))
  kept = np.asarray(w).any(axis=1)
  np.testing.assert_array_equal(kept, [False, True, False, True, False])
  w = initializers.uniform(0.5, 1.0, row_mask=2)(KEY, (5, 7))
  assert np.asarray(w).any(axis=1).sum() == 2
  # numpy and jax indices and counts, as from research code
  for keep in (np.array([1, 3]), jnp.array([1, 3])):
    w = initializers.uniform(0.5, 1.0, row_mask=keep)(KEY, (5, 7))
    np.testing.assert_array_equal(np.asarray(w).any(axis=1), [False, True, False, True, False])
  w = initializers.uniform(0.5, 1.0, col_mask=np.int64(3))(KEY, (5, 7))
  assert np.asarray(w).any(axis=0).sum() == 3


@pytest.mark.parametrize("keep", [[0, 7], [-1], [0.5], [True, False, True] + [False] * 4])
def test_index_masks_reject_what_a_scatter_would_misread(keep):
  # Out of range, an index is dropped; a bool or a float is read as 0 or 1.
  with pytest.raises(ValueError, match=r"col_mask must be a 1-D sequence of int indices in \[0, 7"):
    initializers.uniform(col_mask=keep)(KEY, (5, 7))
  with pytest.raises(TypeError, match="row_mask must be an int .* or a sequence of indices, got bool"):
    initializers.uniform(row_mask=True)(KEY, (5, 7))


def test_dtype_is_honoured():
  for init in (initializers.uniform(), initializers.gaussian(), initializers.constant(1.0),
               initializers.fan_in_uniform(), initializers.fan_in_gaussian()):
    assert init(KEY, (3, 4), jnp.bfloat16).dtype == jnp.bfloat16


def test_jax_initializers_plug_in():
  state = expstdp.init(KEY, (8, 5), weight_init=jax.nn.initializers.glorot_uniform(),
                       bias_init=jax.nn.initializers.normal(0.1))
  expected = jax.nn.initializers.glorot_uniform()(jax.random.split(KEY, 4)[1], (8, 5), jnp.float32)
  np.testing.assert_array_equal(state.weights, expected)
  assert state.biases.shape == (1, 5)


def test_default_is_ngclearns_uniform():
  state = expstdp.init(KEY, (8, 5))
  np.testing.assert_array_equal(state.weights, DG.uniform(0.025, 0.8)((8, 5), jax.random.split(KEY, 4)[1]))


def test_bad_modifiers_are_rejected_at_construction():
  with pytest.raises(TypeError, match="amn"):
    initializers.uniform(amn=0.1)
  with pytest.raises(ValueError, match="mutually exclusive"):
    initializers.uniform(lower_triangle=True, upper_triangle=True)
  with pytest.raises(ValueError, match="2 dimensions"):
    initializers.fan_in_uniform()(KEY, (4,))


@pytest.mark.parametrize("make, error, pattern", [
    (lambda: initializers.uniform(0.8, 0.1), ValueError, "low must be <= high"),  # was all 0.8
    (lambda: initializers.uniform(float("nan"), 1.0), ValueError, "low must be finite"),
    (lambda: initializers.gaussian(0.0, -1.0), ValueError, r"std must be >= 0, got -1\.0"),
    (lambda: initializers.gaussian(jnp.inf), ValueError, "mean must be finite"),
    (lambda: initializers.constant("0.5"), TypeError, "value must be a real number, got '0.5'"),
    (lambda: initializers.constant(0.5, amin=0.8, amax=0.2), ValueError,
     "amin must be <= amax"),  # was all 0.2
    (lambda: initializers.uniform(amin=1j), TypeError, "amin must be a real number"),
    # Found by fuzzing; each was an error from numpy or jax that named nothing.
    (lambda: initializers.constant(jnp.float32), TypeError, "value must be a real number, got <"),
    (lambda: initializers.uniform(jnp.zeros((2, 2))), ValueError,
     r"low must be a number, got shape \(2, 2\)"),
    (lambda: initializers.gaussian(hollow=np.ones(3)), TypeError, "hollow must be a Python bool"),
])
def test_bad_values_are_rejected_at_construction(make, error, pattern):
  with pytest.raises(error, match=pattern):
    make()


def test_traced_values_are_drawn_with():
  draw = jax.jit(lambda low, std: (initializers.uniform(low, 1.0)(KEY, (3, 4)),
                                   initializers.gaussian(0.0, std)(KEY, (3, 4))))
  got = draw(0.5, 2.0)
  np.testing.assert_array_equal(got[0], initializers.uniform(0.5, 1.0)(KEY, (3, 4)))
  np.testing.assert_array_equal(got[1], initializers.gaussian(0.0, 2.0)(KEY, (3, 4)))
