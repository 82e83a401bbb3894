"""A line-by-line JAX transcription of ngclearn 3.1.1's ExpSTDPSynapse
(`_compute_update`, `evolve`, `advance_state`): the baseline the benchmarks
compare against. Hyperparameters are Python constants, as in ngclearn."""

import jax.numpy as jnp


def compute_update(W, pre, x_pre, post, x_post, *, A_plus, A_minus, exp_beta, x_tar, w_bound):
  post_term1 = jnp.exp(-exp_beta * W) * jnp.matmul(x_pre.T, post)
  x_tar_vec = x_pre * 0 + x_tar
  post_term2 = jnp.exp(-exp_beta * (w_bound - W)) * jnp.matmul(x_tar_vec.T, post)
  dWpost = (post_term1 - post_term2) * A_plus
  dWpre = 0.
  if A_minus > 0.:
    dWpre = -jnp.exp(-exp_beta * W) * jnp.matmul(pre.T, x_post) * A_minus
  return dWpost + dWpre


def evolve(W, eta, mask, pre, x_pre, post, x_post, *, A_plus, A_minus, exp_beta, x_tar=0.0,
           w_bound=1.0):
  """Returns (W', dW) as ngclearn's evolve stores them."""
  dW = compute_update(W, pre, x_pre, post, x_post, A_plus=A_plus, A_minus=A_minus,
                      exp_beta=exp_beta, x_tar=x_tar, w_bound=w_bound)
  _W = W + dW * eta
  eps = 0.01
  _W = jnp.clip(_W, eps, w_bound - eps)
  _W = jnp.where(mask != 0., _W, 0.)
  return _W, dW


def advance_state(W, inputs, *, resist_scale=1.0, biases=0.0):
  return jnp.matmul(inputs, W * jnp.ones((1, 1))) * resist_scale + biases
