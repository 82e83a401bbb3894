"""The two pytrees every function takes: `SynapseState` and `ExpSTDPParams`."""

from typing import NamedTuple

import jax


class ExpSTDPParams(NamedTuple):
  """Hyperparameters of the exponential weight-dependent STDP rule.

  Every field is a traced value (a Python float or a scalar array), never a
  constant baked into the compiled code: changing a value does not recompile,
  and a params pytree whose fields carry a leading population axis can be
  vmapped. Values are checked where they are concrete (eager calls,
  `expstdp.validate_params`, or the checked mode in `expstdp.checked`), not
  here: pytree utilities rebuild this tuple with non-array leaves.

  Attributes:
    A_plus: shape (), float. Strength of long-term potentiation (LTP).
    A_minus: shape (), float, >= 0. Strength of long-term depression (LTD).
      0 turns LTD off (ngclearn also drops it for negative values; we reject
      those instead).
    exp_beta: shape (), float. Strength of the exponential weight dependence
      (beta); 0 gives the additive rule.
    pretrace_target: shape (), float. Target pre-synaptic trace x_tar: the
      depressive term applied at every post-synaptic spike.
    w_bound: shape (), float, > 2 * w_eps. Upper bound of the weights.
    w_eps: shape (), float, >= 0. Margin of the clip after evolve: weights
      end in [w_eps, w_bound - w_eps] (ngclearn hard-codes 0.01).
    tau_w: shape (), float, >= 0. Weight decay time constant: evolve
      subtracts W / tau_w when tau_w > 0 (ngclearn computes and drops it).
    resist_scale: shape (), float. Scale applied to the output of `forward`.
  """

  A_plus: jax.typing.ArrayLike
  A_minus: jax.typing.ArrayLike
  exp_beta: jax.typing.ArrayLike
  pretrace_target: jax.typing.ArrayLike = 0.0
  w_bound: jax.typing.ArrayLike = 1.0
  w_eps: jax.typing.ArrayLike = 0.01
  tau_w: jax.typing.ArrayLike = 0.0
  resist_scale: jax.typing.ArrayLike = 1.0


class SynapseState(NamedTuple):
  """Everything that changes while a synapse runs, for N pre-synaptic and M
  post-synaptic neurons and a batch of B. All floating arrays share the dtype
  of `weights` (float32 by default).

  Attributes:
    weights: (N, M) float. Synaptic efficacies W; row i is pre-synaptic
      neuron i, column j post-synaptic neuron j.
    biases: () or (1, M) float. Added to the output of `forward`; the scalar
      0 when the synapse has no bias (ngclearn's default).
    weight_mask: (N, M) or (1, 1) bool. Structural connectivity: evolve sets
      W to exactly 0 where False. (1, 1) True means fully connected.
    eta: () float. Global learning rate; state, so it can change at run time.
    inputs: (B, N) float. Input signal of `forward`.
    outputs: (B, M) float. Output of the last `forward`.
    pre_spike: (B, N) float. Pre-synaptic spikes s_pre (usually 0 or 1).
    post_spike: (B, M) float. Post-synaptic spikes s_post.
    pre_trace: (B, N) float. Pre-synaptic traces x_pre.
    post_trace: (B, M) float. Post-synaptic traces x_post.
    d_weights: (N, M) float. The raw dW of the last evolve (before eta, the
      decay, the clip and the mask).
  """

  weights: jax.Array
  biases: jax.Array
  weight_mask: jax.Array
  eta: jax.Array
  inputs: jax.Array
  outputs: jax.Array
  pre_spike: jax.Array
  post_spike: jax.Array
  pre_trace: jax.Array
  post_trace: jax.Array
  d_weights: jax.Array
