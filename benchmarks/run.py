"""The expstdp benchmark suite: every performance target of the project,
measured as ratios side by side in one process.

  python benchmarks/run.py [--quick] [--json results/bench.json] [--plot results/bench.png]

Sections: dense evolve at 4096 x 4096 against a line-by-line transcription of
ngclearn's code and against the exp floor, with the machine's own ceilings
(in-place copy, exp throughput) measured alongside; a dense evolve with a
batch of 4, XLA's defaults against expstdp.jitted; event-driven evolve at 784 x 6400
(and over capacity, where it runs its dense fallback) and its scaling
with synapse count and spike rate; a whole synapse step in lax.scan against
ngclearn 3.1.1 itself (where installed) and the transcription; 256 vmapped
populations against a loop of jitted calls; peak memory of a donated evolve;
an eager call against the same call op by op.
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import expstdp  # noqa: E402
import reference_transcription as ref  # noqa: E402
from harness import NOISY, measure, stateful  # noqa: E402

HP = dict(A_plus=1.0, A_minus=0.5, exp_beta=2.0, pretrace_target=0.1)
PARAMS = expstdp.ExpSTDPParams(**HP)
REF_HP = dict(A_plus=1.0, A_minus=0.5, exp_beta=2.0, x_tar=0.1)


def activity(rng, batch, n_pre, n_post, rate):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return dict(pre_spike=f32(rng.uniform(size=(batch, n_pre)) < rate),
              pre_trace=f32(rng.uniform(size=(batch, n_pre))),
              post_spike=f32(rng.uniform(size=(batch, n_post)) < rate),
              post_trace=f32(rng.uniform(size=(batch, n_post))))


def new_state(shape, batch, rng, rate):
  state = expstdp.init(jax.random.PRNGKey(0), shape, batch_size=batch)
  return expstdp.clip_weights(state, PARAMS)._replace(**activity(rng, batch, *shape, rate))


def rows_for(results, section, shape, batch, weights, reference=None, floor=None):
  rows = []
  for name, r in results.items():
    t = r["median_s"]
    rows.append(dict(section=section, variant=name, shape=list(shape), batch=batch,
                     median_ms=t * 1e3, ns_per_weight=t * 1e9 / weights, iqr_rel=r["iqr_rel"],
                     noisy=r["iqr_rel"] > NOISY, calls=r["n"],
                     vs_reference=(results[reference]["median_s"] / t) if reference else None,
                     vs_exp_floor=(t / floor) if floor else None))
  return rows


FLOOR, REFERENCE = "in-place exp(-beta W) [floor]", "reference transcription (jit)"
# expstdp.jitted compiles with these, and the README tells users to pass them
# to their own jit of a scan: on CPU, the memory-optimised scheduler (small
# kernels stay on one thread), 512-bit vectors (exp-bound loops), and no
# YNNPACK (batched evolves of wide rows).
CPU_OPTIONS = expstdp.jitted.compiler_options()


def dense(n, reps, rng):
  """Dense evolve at n x n against the transcription, with the machine's own
  ceilings (in-place copy, in-place exp: the floor) measured interleaved with
  the variants, so that no ratio is skewed by the load changing in between.
  The floor and the transcription are compiled both as plain `jax.jit` and
  with `CPU_OPTIONS` (as `expstdp.jitted` is); ratios use the faster."""
  shape, weights = (n, n), n * n
  state = new_state(shape, 1, rng, 0.05)
  add = jax.jit(lambda W: W + 1e-7, donate_argnums=0)
  ref_args = (state.weights, state.eta, state.weight_mask, state.pre_spike, state.pre_trace,
              state.post_spike, state.post_trace)
  plain = jax.jit(expstdp.evolve)
  variants = {"ceiling: in-place copy (W + c)": stateful(add, jnp.copy(state.weights))}
  for suffix, options in (("", None), (", CPU_OPTIONS", CPU_OPTIONS)):
    exp = jax.jit(lambda W: jnp.exp(-1e-9 * W), donate_argnums=0, compiler_options=options)
    transcription = jax.jit(functools.partial(ref.evolve, **REF_HP), compiler_options=options)
    variants[FLOOR + suffix] = stateful(exp, jnp.copy(state.weights))
    variants[REFERENCE + suffix] = functools.partial(transcription, *ref_args)
  res = measure(variants | {
      "expstdp.evolve (jit, not donated)": lambda: plain(state, PARAMS),
      "expstdp.jitted.evolve": stateful(lambda s: expstdp.jitted.evolve(s, PARAMS),
                                        jax.tree.map(jnp.copy, state)),
      "expstdp.jitted.evolve, no d_weights": stateful(
          lambda s: expstdp.jitted.evolve(s, PARAMS, with_d_weights=False),
          jax.tree.map(jnp.copy, state)),
  }, rounds=reps, calls=5)
  fastest = lambda prefix: min((k for k in res if k.startswith(prefix)),
                               key=lambda k: res[k]["median_s"])
  floor_s = res[fastest(FLOOR)]["median_s"]
  info = dict(copy_GB_per_s=2 * 4 * weights / res["ceiling: in-place copy (W + c)"]["median_s"] / 1e9,
              exp_Gelem_per_s=weights / floor_s / 1e9)
  rows = rows_for(res, "dense evolve", shape, 1, weights, reference=fastest(REFERENCE),
                  floor=floor_s)
  return rows, info


def batched(n_pre, n_post, batch, reps, rng):
  """A dense evolve with several batch elements: XLA:CPU's defaults against
  `expstdp.jitted` (whose options keep it out of YNNPACK)."""
  shape = (n_pre, n_post)
  plain = jax.jit(functools.partial(expstdp.evolve, with_d_weights=False), donate_argnums=0,
                  keep_unused=True)
  res = measure({
      "jax.jit(evolve), donated, XLA defaults": stateful(
          lambda s: plain(s, PARAMS), new_state(shape, batch, rng, 0.05)),
      "expstdp.jitted.evolve": stateful(
          lambda s: expstdp.jitted.evolve(s, PARAMS, with_d_weights=False),
          new_state(shape, batch, rng, 0.05)),
  }, rounds=reps, calls=5)
  return rows_for(res, f"dense evolve, batch {batch}, no d_weights", shape, batch,
                  n_pre * n_post, reference="jax.jit(evolve), donated, XLA defaults")


def eager(shape, reps, rng):
  """A dense evolve called from Python without a jit of one's own: as one
  cached compiled program (what expstdp does), against op by op (what it did
  before, and does under `jax.disable_jit`) and the donating entry point."""
  state = new_state(shape, 1, rng, 0.05)

  def op_by_op():
    with jax.disable_jit():
      return expstdp.evolve(state, PARAMS)

  res = measure({"op by op (jax.disable_jit)": op_by_op,
                 "expstdp.evolve, called eagerly": lambda: expstdp.evolve(state, PARAMS),
                 "expstdp.jitted.evolve": stateful(lambda s: expstdp.jitted.evolve(s, PARAMS),
                                                   jax.tree.map(jnp.copy, state))},
                rounds=reps, calls=10)
  return rows_for(res, "eager calls, evolve", shape, 1, shape[0] * shape[1],
                  reference="op by op (jax.disable_jit)")


def capacity(n, rate):
  """Room for the active neurons of a step: 6 standard deviations above the
  mean count, so the dense fallback practically never runs."""
  mean = rate * n
  return int(np.ceil(mean + 6 * np.sqrt(mean) + 4))


def events(n_pre, n_post, rate, reps, rng, over_capacity=False):
  """Dense against event-driven evolve; `over_capacity` adds the event-driven
  evolve with capacities of 1, which runs its dense fallback."""
  shape = (n_pre, n_post)
  acts = [activity(rng, 1, n_pre, n_post, rate) for _ in range(16)]
  max_pre, max_post = capacity(n_pre, rate), capacity(n_post, rate)

  def cycle(fn, **kw):
    i = [0]

    def step(s):
      i[0] += 1
      return fn(s, PARAMS, **acts[i[0] % len(acts)], **kw)
    return stateful(step, new_state(shape, 1, rng, rate))

  variants = {
      "dense: jitted.evolve": cycle(expstdp.jitted.evolve),
      "dense: jitted.evolve, no d_weights": cycle(expstdp.jitted.evolve, with_d_weights=False),
      "events: jitted.evolve_events": cycle(expstdp.jitted.evolve_events, max_pre=max_pre,
                                            max_post=max_post),
      "events: jitted.evolve_events, no d_weights": cycle(
          expstdp.jitted.evolve_events, max_pre=max_pre, max_post=max_post, with_d_weights=False),
  }
  if over_capacity:
    variants.update({
        "over capacity (dense fallback): jitted.evolve_events": cycle(
            expstdp.jitted.evolve_events, max_pre=1, max_post=1),
        "over capacity (dense fallback), no d_weights": cycle(
            expstdp.jitted.evolve_events, max_pre=1, max_post=1, with_d_weights=False),
    })
  res = measure(variants, rounds=reps, calls=5)
  rows = rows_for(res, f"event-driven evolve, {rate:.1%} spikes", shape, 1, n_pre * n_post,
                  reference="dense: jitted.evolve")
  for row in rows:
    row.update(rate=rate, max_pre=max_pre, max_post=max_post)
  return rows


def forward_events(n_pre, n_post, rate, reps, rng):
  shape = (n_pre, n_post)
  acts = [activity(rng, 1, n_pre, n_post, rate)["pre_spike"] for _ in range(16)]
  max_active = capacity(n_pre, rate)

  def cycle(fn, **kw):
    i = [0]

    def step(s):
      i[0] += 1
      return fn(s, PARAMS, acts[i[0] % len(acts)], **kw)
    return stateful(step, new_state(shape, 1, rng, rate))

  res = measure({"dense: jitted.forward": cycle(expstdp.jitted.forward),
                 "events: jitted.forward_events": cycle(expstdp.jitted.forward_events,
                                                        max_active=max_active)},
                rounds=reps, calls=5)
  return rows_for(res, f"event-driven forward, {rate:.1%} spikes", shape, 1, n_pre * n_post,
                  reference="dense: jitted.forward")


TUNED = "events, forward then evolve, CPU_OPTIONS"
UNROLLED = TUNED + ", unroll 4"
DENSE_TUNED = "dense, evolve then forward, CPU_OPTIONS"


def scan_step(T, reps, rng, rate=0.05, shape=(784, 100)):
  n_pre, n_post = shape
  seq = [activity(rng, 1, n_pre, n_post, rate) for _ in range(T)]
  seq = jax.tree.map(lambda *x: jnp.stack(x), *seq)
  state = new_state(shape, 1, rng, rate)
  cap = dict(max_pre=capacity(n_pre, rate), max_post=capacity(n_post, rate))
  dense_fns = (lambda s, x: expstdp.forward(s, PARAMS, x),
               lambda s: expstdp.evolve(s, PARAMS, with_d_weights=False))
  event_fns = (lambda s, x: expstdp.forward_events(s, PARAMS, x, max_active=cap["max_pre"]),
               lambda s: expstdp.evolve_events(s, PARAMS, with_d_weights=False, **cap))

  def forward_then_evolve(fns, unroll=1, **jit_options):
    forward, evolve = fns

    def run(state):
      def body(s, a):
        return evolve(forward(s, a["pre_spike"])._replace(**a)), None
      return jax.lax.scan(body, state, seq, unroll=unroll)[0]
    return jax.jit(run, **jit_options)

  def evolve_then_forward(fns, unroll=1, **jit_options):
    # The same steps, rotated: each body first evolves with the activity the
    # previous step stored, then reads W. XLA:CPU copies W every step when a
    # read of W precedes its in-place update in a loop body and nothing orders
    # them (evolve_events orders them itself; the dense evolve does not).
    forward, evolve = fns

    def run(state):
      def body(s, a):
        return forward(evolve(s), a["pre_spike"])._replace(**a), None
      return evolve(jax.lax.scan(body, state, seq, unroll=unroll)[0])
    return jax.jit(run, **jit_options)

  def transcription(carry):
    def body(c, a):
      W, dW = c
      out = ref.advance_state(W, a["pre_spike"])
      W, dW = ref.evolve(W, 1.0, jnp.ones((1, 1)), a["pre_spike"], a["pre_trace"],
                         a["post_spike"], a["post_trace"], **REF_HP)
      return (W, dW), out
    return jax.lax.scan(body, carry, seq)[0]

  ref_carry = (state.weights, state.d_weights)
  variants = {
      "seed transcription in lax.scan": stateful(jax.jit(transcription), ref_carry),
      "seed transcription, CPU_OPTIONS": stateful(
          jax.jit(transcription, compiler_options=CPU_OPTIONS), ref_carry),
      "dense, forward then evolve": stateful(forward_then_evolve(dense_fns), state),
      DENSE_TUNED: stateful(evolve_then_forward(dense_fns, compiler_options=CPU_OPTIONS), state),
      "events, forward then evolve": stateful(forward_then_evolve(event_fns), state),
      TUNED: stateful(forward_then_evolve(event_fns, compiler_options=CPU_OPTIONS), state),
      "events, evolve then forward, CPU_OPTIONS": stateful(
          evolve_then_forward(event_fns, compiler_options=CPU_OPTIONS), state),
      # Four steps per loop trip, the same results. Unrolled the same way, the
      # transcription took 8x longer: 0.52 ms a step.
      UNROLLED: stateful(forward_then_evolve(event_fns, unroll=4, compiler_options=CPU_OPTIONS),
                         state),
  }
  ngc = ngclearn_step(shape, seq, T)
  if ngc is None:
    print("  ngclearn 3.1.1 not installed: its row is skipped (pip install -e '.[test]')")
  else:
    variants["ngclearn 3.1.1 MethodProcess, .set() per step"] = ngc
  res = measure(variants, rounds=reps, calls=2, warmup=1)
  res = {k: dict(v, median_s=v["median_s"] / T) for k, v in res.items()}  # per step
  reference = ("ngclearn 3.1.1 MethodProcess, .set() per step" if ngc else
               "seed transcription in lax.scan")
  rows = rows_for(res, "synapse step (forward + evolve), per step", shape, 1, n_pre * n_post,
                  reference=reference)
  fastest = min(v["median_s"] for k, v in res.items() if k.startswith("seed transcription"))
  for row in rows:  # against the fastest compilation of the transcription
    row["vs_transcription"] = fastest / res[row["variant"]]["median_s"]
  return rows


def ngclearn_step(shape, seq, T):
  try:
    from ngclearn import Context, MethodProcess
    from ngclearn.components.synapses.hebbian.expSTDPSynapse import ExpSTDPSynapse
  except ImportError:
    return None
  with Context("bench"):
    syn = ExpSTDPSynapse("W", shape, key=jax.random.PRNGKey(0), **{
        "A_plus": HP["A_plus"], "A_minus": HP["A_minus"], "exp_beta": HP["exp_beta"],
        "pretrace_target": HP["pretrace_target"]})
    process = MethodProcess("p") >> syn.advance_state >> syn.evolve
  steps = [jax.tree.map(lambda x: x[t], seq) for t in range(T)]

  def run_T():
    for a in steps:  # as ngclearn's own tests feed a component, one step at a time
      syn.inputs.set(a["pre_spike"])
      syn.preSpike.set(a["pre_spike"])
      syn.preTrace.set(a["pre_trace"])
      syn.postSpike.set(a["post_spike"])
      syn.postTrace.set(a["post_trace"])
      process.run()
    return syn.weights.get()
  return run_T


def network_step(T, reps, rng, rate=0.05, shape=(784, 100)):
  """A scanned step of a small network, as research code writes it: forward,
  a threshold neuron fed by the outputs, traces, evolve. Unlike the synapse
  step above, evolve depends on this step's forward, and XLA:CPU then updates
  W in place without copying it, so the natural order is not slowed down.
  Every call starts from the same state (else the spike rates drift)."""
  n_pre, n_post = shape
  state = new_state(shape, 1, rng, rate)._replace(eta=jnp.float32(0.01))
  state = expstdp.reset(state)
  xs = jnp.asarray(rng.uniform(size=(T, 1, n_pre)) < rate, jnp.float32)
  # A threshold that ~2.5% of the initial outputs exceed.
  threshold = np.quantile(np.asarray(xs[:, 0] @ state.weights), 0.975)
  cap = dict(max_pre=capacity(n_pre, rate), max_post=capacity(n_post, rate))
  fns = {"dense": (lambda s, x: expstdp.forward(s, PARAMS, x),
                   lambda s: expstdp.evolve(s, PARAMS, with_d_weights=False)),
         "events": (lambda s, x: expstdp.forward_events(s, PARAMS, x, max_active=cap["max_pre"]),
                    lambda s: expstdp.evolve_events(s, PARAMS, with_d_weights=False, **cap))}

  def neuron(s, x):
    post = (s.outputs > threshold).astype(jnp.float32)
    trace = lambda t, spikes: expstdp.traces.update(t, spikes, dt=1.0, tau_tr=20.0, a_delta=1.0)
    return s._replace(pre_spike=x, post_spike=post, pre_trace=trace(s.pre_trace, x),
                      post_trace=trace(s.post_trace, post))

  def simulation(kind, rotated, **jit_options):
    forward, evolve = fns[kind]
    if rotated:  # evolve with the previous step's activity, then forward
      run = lambda s: evolve(jax.lax.scan(
          lambda s, x: (neuron(forward(evolve(s), x), x), None), s, xs)[0])
    else:
      run = lambda s: jax.lax.scan(lambda s, x: (evolve(neuron(forward(s, x), x)), None), s, xs)[0]
    return functools.partial(jax.jit(run, **jit_options), state)

  res = measure({
      "dense, forward then evolve": simulation("dense", False),
      "dense, forward then evolve, CPU_OPTIONS": simulation("dense", False, compiler_options=CPU_OPTIONS),
      "dense, evolve then forward, CPU_OPTIONS": simulation("dense", True, compiler_options=CPU_OPTIONS),
      "events, forward then evolve, CPU_OPTIONS": simulation("events", False, compiler_options=CPU_OPTIONS),
      "events, evolve then forward, CPU_OPTIONS": simulation("events", True, compiler_options=CPU_OPTIONS),
  }, rounds=reps, calls=2, warmup=1)
  res = {k: dict(v, median_s=v["median_s"] / T) for k, v in res.items()}  # per step
  return rows_for(res, "network step (forward, neuron, traces, evolve)", shape, 1,
                  n_pre * n_post, reference="dense, forward then evolve")


def populations(P, n, reps, rng):
  shape = (n, n)
  states = [new_state(shape, 1, rng, 0.05) for _ in range(P)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
  one = jax.jit(lambda s: expstdp.evolve(s, PARAMS), donate_argnums=0)
  many = jax.jit(jax.vmap(lambda s: expstdp.evolve(s, PARAMS)), donate_argnums=0)
  # Under vmap the event-driven evolve runs dense: this row shows it costs the same.
  cap = dict(max_pre=capacity(n, 0.05), max_post=capacity(n, 0.05))
  many_events = jax.jit(jax.vmap(lambda s: expstdp.evolve_events(s, PARAMS, **cap)),
                        donate_argnums=0)

  def loop(states):
    return [one(s) for s in states]

  res = measure({"loop of jitted calls": stateful(loop, states),
                 "one vmapped call": stateful(many, stacked),
                 "one vmapped call, evolve_events": stateful(
                     many_events, jax.tree.map(jnp.copy, stacked))}, rounds=reps, calls=3)
  return rows_for(res, f"{P} populations, evolve", shape, 1, P * n * n,
                  reference="loop of jitted calls")


MEMORY_PROBE = """
import resource, jax, jax.numpy as jnp, numpy as np, expstdp
n = {n}
p = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=2.0, pretrace_target=0.1)
s = expstdp.init(jax.random.PRNGKey(0), (n, n))
s = s._replace(pre_spike=s.pre_spike.at[0, ::20].set(1.0), post_spike=s.post_spike.at[0, ::20].set(1.0))
jax.block_until_ready(s)
peak = lambda: (jax.devices()[0].memory_stats() or dict(peak_bytes_in_use=-1))["peak_bytes_in_use"]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, peak()
for _ in range(5):
  s = expstdp.jitted.evolve(s, p)
jax.block_until_ready(s)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, peak()
print(*before, *after)
"""


def memory(n):
  """Peak memory growth over 5 donated evolves, in a fresh process (peaks
  never decrease, so it must not be shared with the other benchmarks): the
  device's peak bytes in use where it counts them (GPU, TPU), else the
  process's peak RSS (CPU, where W lives in host memory)."""
  out = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(n=n)], capture_output=True,
                       text=True, check=True).stdout.split()
  rss_before, device_before, rss_after, device_after = map(int, out)
  on_device = device_before >= 0
  before, after = (device_before, device_after) if on_device else (rss_before, rss_after)
  w_bytes = n * n * 4
  compiled = jax.jit(expstdp.evolve, donate_argnums=0, keep_unused=True).lower(
      expstdp.init(jax.random.PRNGKey(0), (n, n)), PARAMS).compile().memory_analysis()
  return dict(shape=[n, n], W_MiB=w_bytes / 2**20,
              measure="device peak bytes in use" if on_device else "peak RSS",
              peak_before_MiB=before / 2**20, peak_after_MiB=after / 2**20,
              growth_in_W=(after - before) / w_bytes, xla_temp_MiB=compiled.temp_size_in_bytes / 2**20)


def summarize(rows, mem):
  """Each target of issue 5 as a measured ratio and whether it is met."""
  def t(section, variant):
    return next(r["median_ms"] for r in rows if r["section"] == section and r["variant"] == variant)
  d, e = "dense evolve", "event-driven evolve, 2.0% spikes"
  s, p = "synapse step (forward + evolve), per step", "256 populations, evolve"
  # Against the faster of the two compilations of the transcription and of the floor.
  ref = min(t(d, REFERENCE), t(d, REFERENCE + ", CPU_OPTIONS"))
  floor = min(t(d, FLOOR), t(d, FLOOR + ", CPU_OPTIONS"))
  fast = t(d, "expstdp.jitted.evolve, no d_weights")
  out = [
      ("dense evolve vs transcription (>= 4x), no d_weights", ref / fast, 4.0, True),
      ("dense evolve vs transcription (>= 4x), with d_weights", ref / t(d, "expstdp.jitted.evolve"), 4.0, True),
      ("dense evolve / exp floor (<= 1.6), no d_weights", fast / floor, 1.6, False),
      ("events vs dense at 2% spikes (>= 10x), no d_weights",
       t(e, "dense: jitted.evolve, no d_weights") / t(e, "events: jitted.evolve_events, no d_weights"), 10.0, True),
      ("events vs dense at 2% spikes (>= 10x), with d_weights",
       t(e, "dense: jitted.evolve") / t(e, "events: jitted.evolve_events"), 10.0, True),
      ("vmapped populations vs loop (>= 2x)", t(p, "loop of jitted calls") / t(p, "one vmapped call"), 2.0, True),
      (f"{mem['measure']} growth of a donated evolve, in units of W (< 4)", mem["growth_in_W"],
       4.0, False),
  ]
  ngc = "ngclearn 3.1.1 MethodProcess, .set() per step"
  # Against the faster of the transcription's two compilations.
  transcription = min(t(s, "seed transcription in lax.scan"),
                      t(s, "seed transcription, CPU_OPTIONS"))
  for variant in ("dense, forward then evolve", DENSE_TUNED, "events, forward then evolve", TUNED,
                  UNROLLED):
    if any(r["variant"] == ngc for r in rows):
      out.append((f"step: {variant} vs ngclearn (>= 20x)", t(s, ngc) / t(s, variant), 20.0, True))
    out.append((f"step: {variant} vs transcription in scan (>= 2x)",
                transcription / t(s, variant), 2.0, True))
  return [dict(target=name, measured=v, bound=b, met=(v >= b) if higher else (v <= b))
          for name, v, b, higher in out]


def machine_name():
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
  return device.device_kind


def plot(rows, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
  variants = (("dense: jitted.evolve, no d_weights", "o-", "dense evolve, no d_weights"),
              ("events: jitted.evolve_events, no d_weights", "s-",
               "event-driven evolve, no d_weights"))
  from matplotlib import ticker
  for ax, prefix, x_of, x_label, xlabel in (
      (left, "scaling", lambda r: r["shape"][0] * r["shape"][1], lambda x, _: f"{x / 1e6:.2g}M",
       "synapses N x M (N = 784, 2% spikes, batch 1)"),
      (right, "rate", lambda r: r["rate"] * 100, lambda x, _: f"{x:g}",
       "spike probability per step, % ({})".format(
           next(("x".join(map(str, r["shape"])) for r in rows if r["section"].startswith("rate")),
                "")))):
    xs = set()
    for variant, style, label in variants:
      pts = sorted((x_of(r), r["median_ms"]) for r in rows
                   if r["section"].startswith(prefix) and r["variant"] == variant)
      if pts:
        ax.loglog(*zip(*pts), style, label=label)
        xs.update(x for x, _ in pts)
    # Ticks where the measurements are (x) and at 1, 2, 5 (y), in plain numbers.
    ax.set_xticks(sorted(xs))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(x_label))
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    for axis in (ax.xaxis, ax.yaxis):
      axis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time per evolve (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  fig.suptitle(f"expstdp evolve, float32, {machine_name()}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def table(rows):
  ws = max(len(r["section"]) for r in rows)
  wv = max(len(r["variant"]) for r in rows)
  print(f"{'section':{ws}s} {'variant':{wv}s} {'shape':>11s} {'batch':>5s} {'median ms':>10s} "
        f"{'ns/weight':>9s} {'x ref':>7s} {'x floor':>7s}")
  for r in rows:
    fmt = lambda v, spec: format(v, spec) if v is not None else ""
    flag = "  NOISY" if r["noisy"] else ""
    print(f"{r['section']:{ws}s} {r['variant']:{wv}s} {'x'.join(map(str, r['shape'])):>11s} "
          f"{r['batch']:5d} {r['median_ms']:10.3f} {r['ns_per_weight']:9.3f} "
          f"{fmt(r['vs_reference'], '7.2f'):>7s} {fmt(r['vs_exp_floor'], '7.2f'):>7s}{flag}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (< 1 min)")
  parser.add_argument("--json", default="results/bench.json")
  parser.add_argument("--plot", default="results/bench.png")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  q = args.quick
  reps = 2 if q else 6
  t0 = time.time()
  rows = []
  if os.environ.get("XLA_FLAGS"):  # process-wide XLA options change every row
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}")
  print("dense evolve ...", flush=True)
  dense_rows, ceiling = dense(1024 if q else 4096, reps, rng)
  rows += dense_rows
  rows += batched(784, 1600 if q else 6400, 4, reps, rng)
  for shape in ((4, 3), (784, 100)):
    rows += eager(shape, reps, rng)
  print("event-driven evolve ...", flush=True)
  rows += events(784, 1600 if q else 6400, 0.02, reps, rng, over_capacity=True)
  rows += forward_events(784, 1600 if q else 6400, 0.02, reps, rng)
  for m in ((400, 1600) if q else (400, 1600, 6400, 25600)):
    for r in events(784, m, 0.02, max(2, reps // 2), rng):
      rows.append(dict(r, section="scaling: " + r["section"]))
  for rate in ((0.01, 0.05) if q else (0.005, 0.01, 0.05, 0.1)):
    for r in events(784, 1600 if q else 6400, rate, max(2, reps // 2), rng):
      rows.append(dict(r, section="rate: " + r["section"]))
  print("synapse step in lax.scan ...", flush=True)
  rows += scan_step(50 if q else 200, reps, rng)
  rows += network_step(50 if q else 200, reps, rng)
  print("vmapped populations ...", flush=True)
  rows += populations(256, 128, reps, rng)
  print("memory ...", flush=True)
  mem = memory(1024 if q else 4096)

  print()
  table(rows)
  print(f"\nceilings: {ceiling['copy_GB_per_s']:.1f} GB/s in-place copy, "
        f"{ceiling['exp_Gelem_per_s']:.2f} Gelem/s exp")
  print(f"memory: donated evolve on {mem['shape']}: {mem['measure']} grew "
        f"{mem['growth_in_W']:.2f} x W ({mem['W_MiB']:.0f} MiB); XLA temp {mem['xla_temp_MiB']:.1f} MiB")
  targets = summarize(rows, mem)
  print("\ntargets (issue 5):")
  for t in targets:
    print(f"  {t['target']:86s} {t['measured']:>8.2f}  {'met' if t['met'] else 'NOT met'}")
  noisy = [r["variant"] for r in rows if r["noisy"]]
  if noisy:
    print(f"\nWARNING: {len(noisy)} rows had an IQR over {NOISY:.0%} of the median: the machine "
          "was too noisy to trust those numbers; rerun.")
  result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                             cpus=os.cpu_count(), jax=jax.__version__,
                             device=str(jax.devices()[0]), device_kind=machine_name(),
                             xla_flags=os.environ.get("XLA_FLAGS", "")),
                quick=q, wall_s=time.time() - t0, ceilings=ceiling, memory=mem, targets=targets,
                rows=rows)
  for path in (args.json, args.plot):
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
  try:
    plot(rows, args.plot)
    print(f"wrote {args.json} and {args.plot}")
  except ImportError:
    print(f"wrote {args.json} (no matplotlib: pip install -e '.[bench]' for the plot)")


if __name__ == "__main__":
  main()
