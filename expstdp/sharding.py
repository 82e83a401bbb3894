"""Shardings for running expstdp on many devices with JAX's own machinery.

Two layouts, both plain `jax.sharding.NamedSharding`s for `jax.jit` (or
`jax.device_put`) to use; XLA inserts whatever communication is needed.

Population-parallel (`population`): state and params carry a leading
population axis P (from `jax.vmap`), sharded over a mesh axis. Each device
evolves its own populations; there is no communication.

Synapse-parallel (`synapse`): one large W (N, M) sharded by post-synaptic
columns and/or pre-synaptic rows. dW[i, j] needs only row i of the
pre-synaptic vectors and column j of the post-synaptic ones, so with those
vectors laid out to match (pre-side vectors replicated or sharded like the
rows, post-side like the columns) `compute_dW` and `evolve` communicate
nothing. `forward` sums over the pre-synaptic axis: with rows sharded it
needs one all-reduce of the (B, M) outputs across the row shards; with only
columns sharded it needs none.

Memory per device, float32, D devices: synapse-parallel holds
8 N M / D bytes of W and d_weights (plus N M / D for a full weight_mask)
and the (B, N), (B, M) vectors; population-parallel holds P / D whole
synapses of 8 N M bytes each.
"""

import jax
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec as P

from expstdp.types import SynapseState


def _check_mesh(mesh, *axes):
  """`mesh` is a mesh and every name in `axes` one of its axes: otherwise
  NamedSharding fails with an AttributeError or jax's own message."""
  if not isinstance(mesh, (Mesh, AbstractMesh)):
    raise TypeError(f"mesh must be a jax.sharding.Mesh (jax.make_mesh), got {type(mesh).__name__}.")
  for name in axes:
    if name not in mesh.axis_names:
      raise ValueError(f"{name!r} is not an axis of the mesh {mesh.axis_names}.")


def replicated(mesh: Mesh, tree):
  """A copy of every leaf on every device of `mesh`."""
  _check_mesh(mesh)
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)


def population(mesh: Mesh, tree, axis: str | tuple[str, ...] = "pop"):
  """Shards the leading (population) axis of every leaf of `tree` (a
  vmapped SynapseState, ExpSTDPParams, or anything else) over mesh `axis`."""
  axes = (axis,) if isinstance(axis, str) else axis
  if not isinstance(axes, tuple) or not all(isinstance(name, str) for name in axes):
    raise TypeError(f"axis must be a mesh axis name or a tuple of them, got {axis!r}.")
  _check_mesh(mesh, *axes)
  def spec(x):
    if jax.numpy.ndim(x) == 0:
      raise ValueError("population sharding needs a leading population axis on every leaf; "
                       "found a scalar (give params a leading axis, e.g. with jnp.full).")
    return NamedSharding(mesh, P(axis))
  return jax.tree.map(spec, tree)


def synapse(mesh: Mesh, state: SynapseState, *, pre_axis: str | None = None,
            post_axis: str | None = None) -> SynapseState:
  """Shardings for one synapse split over devices: W's rows (pre-synaptic
  neurons) over mesh `pre_axis` and/or its columns (post-synaptic neurons)
  over `post_axis`. Pre-side vectors (B, N) follow W's rows, post-side ones
  (B, M) its columns; the batch axis is not sharded."""
  if not isinstance(state, SynapseState):  # a template from jax.eval_shape is one too
    raise TypeError(f"state must be an expstdp.SynapseState, got {type(state).__name__}.")
  if pre_axis is None and post_axis is None:
    raise ValueError("give pre_axis, post_axis or both (mesh axis names).")
  if pre_axis == post_axis:
    raise ValueError(f"pre_axis and post_axis must be different mesh axes, got {pre_axis!r} "
                     "twice.")
  _check_mesh(mesh, *(name for name in (pre_axis, post_axis) if name is not None))
  s = lambda *spec: NamedSharding(mesh, P(*spec))
  matrix, pre, post = s(pre_axis, post_axis), s(None, pre_axis), s(None, post_axis)
  return SynapseState(
      weights=matrix,
      biases=post if jax.numpy.ndim(state.biases) == 2 else s(),
      weight_mask=matrix if state.weight_mask.shape != (1, 1) else s(),
      eta=s(),
      inputs=pre,
      outputs=post,
      pre_spike=pre,
      post_spike=post,
      pre_trace=pre,
      post_trace=post,
      d_weights=matrix,
  )
