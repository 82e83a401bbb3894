"""An ngclearn 3.1.1 model, an ExpSTDPSynapse fed by two VarTraces, and its
port to expstdp, run side by side on the same spikes: the same weights after
every step. Needs ngclearn (`pip install -e ".[test]"`).

ngclearn wires compartments in a Context and runs a process once per step;
in expstdp the state is a value, and all T steps are one jitted lax.scan.
"""
import jax, numpy as np
from ngclearn import Context, MethodProcess
from ngclearn.components import ExpSTDPSynapse, VarTrace
from ngclearn.utils.distribution_generator import DistributionGenerator as DG
import expstdp

N, M, T, dt = 64, 16, 200, 1.0
rule = dict(A_plus=1.0, A_minus=0.4, exp_beta=2.0, pretrace_target=0.1)  # the same names
trace = dict(tau_tr=20.0, a_delta=0.0)                                    # set-to-1 traces
key = jax.random.PRNGKey(0)
rng = np.random.default_rng(0)
pre = (rng.uniform(size=(T, 1, N)) < 0.05).astype(np.float32)             # (T, B, N) spikes
post = (rng.uniform(size=(T, 1, M)) < 0.05).astype(np.float32)

# ngclearn: components, wiring, one process run per step.
with Context("model"):
  W = ExpSTDPSynapse("W", (N, M), eta=0.05, weight_init=DG.uniform(0.025, 0.8), key=key, **rule)
  x_pre, x_post = VarTrace("x_pre", N, **trace), VarTrace("x_post", M, **trace)
  x_pre.inputs >> W.inputs
  x_pre.inputs >> W.preSpike
  x_post.inputs >> W.postSpike
  x_pre.trace >> W.preTrace
  x_post.trace >> W.postTrace
  step = (MethodProcess("step") >> x_pre.advance_state >> x_post.advance_state
          >> W.advance_state >> W.evolve)
ngclearn_weights = []
for t in range(T):
  x_pre.inputs.set(pre[t])
  x_post.inputs.set(post[t])
  step.run(dt=dt)
  ngclearn_weights.append(np.asarray(W.weights.get()))

# expstdp: the same key gives the same initial weights; one scan over the steps.
params = expstdp.ExpSTDPParams(**rule)
state = expstdp.init(key, (N, M), weight_init=expstdp.initializers.uniform(0.025, 0.8), eta=0.05)
initial = float(state.weights.mean())

def body(state, spikes):
  s_pre, s_post = spikes
  update = lambda x, s: expstdp.traces.update(x, s, dt=dt, **trace)
  state = expstdp.forward(state, params, inputs=s_pre)
  state = expstdp.evolve(state, params, pre_spike=s_pre, post_spike=s_post,
                         pre_trace=update(state.pre_trace, s_pre),
                         post_trace=update(state.post_trace, s_post))
  return state, state.weights

state, weights = jax.jit(lambda s: jax.lax.scan(body, s, (pre, post)))(state)

diff = np.abs(np.asarray(weights) - np.stack(ngclearn_weights)).max()
print(f"{T} steps of a {N}x{M} synapse: max |W_expstdp - W_ngclearn| over all steps = {diff:.1e}")
print(f"mean W: initial {initial:.6f}, final ngclearn {ngclearn_weights[-1].mean():.6f}, "
      f"expstdp {float(state.weights.mean()):.6f}")
