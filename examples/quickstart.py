"""64 populations of a 784 -> 100 ExpSTDP synapse, each with its own A_plus,
simulated for 200 steps: jit + vmap over populations + lax.scan over time."""
import jax, jax.numpy as jnp
import expstdp

P, T, N, M = 64, 200, 784, 100
params = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.4, exp_beta=2.0, pretrace_target=0.1)
params = jax.tree.map(lambda x: jnp.full(P, x, jnp.float32), params)._replace(
    A_plus=jnp.linspace(0.2, 2.0, P))                      # a sweep: one value per population
states = jax.vmap(lambda k: expstdp.init(k, (N, M), eta=0.01))(jax.random.split(jax.random.key(0), P))

def step(params, state, key):                              # one time step of one population
  pre = jax.random.bernoulli(key, 0.05, state.pre_spike.shape).astype(jnp.float32)
  state = expstdp.forward(state, params, inputs=pre)
  post = (state.outputs > 19.0).astype(jnp.float32)         # stand-in for a neuron model
  trace = lambda x, s: expstdp.traces.update(x, s, dt=1.0, tau_tr=10.0, a_delta=1.0)
  return expstdp.evolve(state, params, pre_spike=pre, post_spike=post,
                        pre_trace=trace(state.pre_trace, pre),
                        post_trace=trace(state.post_trace, post)), post.mean()

run = jax.vmap(lambda p, s, k: jax.lax.scan(lambda s, k: step(p, s, k), s, jax.random.split(k, T)))
simulate = jax.jit(run, compiler_options=expstdp.jitted.compiler_options())  # CPU tuning, or None
states, rates = simulate(params, states, jax.random.split(jax.random.key(1), P))
for i in range(0, P, 9):
  print(f"A_plus={params.A_plus[i]:.2f}  post rate={rates[i].mean():.3f}  mean W={states.weights[i].mean():.4f}")
