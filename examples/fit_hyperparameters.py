"""Differentiate through a simulation: find the A_plus and A_minus that
produced a set of learned weights, by Gauss-Newton through 200 scanned steps
of plasticity: the Jacobian of the whole simulation comes from jax.jacfwd.

    python examples/fit_hyperparameters.py
"""
import jax, jax.numpy as jnp
import expstdp

N, M, T = 64, 32, 200
key_w, key_pre, key_post = jax.random.split(jax.random.key(0), 3)
pre = jax.random.bernoulli(key_pre, 0.05, (T, 1, N)).astype(jnp.float32)    # spikes replayed
post = jax.random.bernoulli(key_post, 0.05, (T, 1, M)).astype(jnp.float32)  # from a recording
state = expstdp.init(key_w, (N, M), eta=0.05)

def simulate(A_plus, A_minus):                             # the final weights
  params = expstdp.ExpSTDPParams(A_plus=A_plus, A_minus=A_minus, exp_beta=2.0)
  trace = lambda x, s: expstdp.traces.update(x, s, dt=1.0, tau_tr=10.0, a_delta=1.0)
  def step(state, spikes):
    x, y = spikes
    return expstdp.evolve(state, params, pre_spike=x, post_spike=y, with_d_weights=False,
                          pre_trace=trace(state.pre_trace, x),
                          post_trace=trace(state.post_trace, y)), None
  return jax.lax.scan(step, state, (pre, post))[0].weights

observed = simulate(1.0, 0.4)                              # what we want to explain
residuals = lambda log_a: (simulate(*jnp.exp(log_a)) - observed).ravel()  # log space: A > 0

@jax.jit
def gauss_newton(log_a):                                   # one step; the Jacobian by jax
  r, J = residuals(log_a), jax.jacfwd(residuals)(log_a)   # (N*M,), (N*M, 2)
  return log_a - jnp.linalg.solve(J.T @ J, J.T @ r), jnp.mean(r ** 2)

log_a = jnp.log(jnp.array([0.3, 1.2]))                     # a first guess
for i in range(8):
  A_plus, A_minus = jnp.exp(log_a)
  log_a, mse = gauss_newton(log_a)
  print(f"iteration {i}: A_plus={A_plus:.5f} A_minus={A_minus:.5f} mean squared error {mse:.1e}")
A_plus, A_minus = jnp.exp(log_a)
print(f"fitted: A_plus={A_plus:.5f} A_minus={A_minus:.5f} (true: 1.0 and 0.4)")
