"""Time per step of the two multi-device layouts, on 8 simulated CPU devices.

  python benchmarks/sharding.py [--quick] [--json results/sharding.json]

On a 2-core machine, 8 simulated devices share the same 2 cores: this shows
the overhead of the sharded programs (partitioning, per-device dispatch,
collectives), not a speed-up. On a machine with real devices, run it with
--devices 0 to use them as they are.
"""

import argparse
import json
import os
import pathlib
import sys

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--quick", action="store_true")
parser.add_argument("--devices", type=int, default=8,
                    help="simulated CPU devices (0: use the real devices)")
parser.add_argument("--json", default="results/sharding.json")
args = parser.parse_args()
if args.devices < 0:
  parser.error(f"--devices must be 0 (the real devices) or more, got {args.devices}")
if args.devices:  # must happen before jax is imported
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={args.devices}")
  os.environ["JAX_PLATFORMS"] = "cpu"  # else a machine with a GPU gives that one device

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import expstdp  # noqa: E402
from harness import measure, stateful  # noqa: E402

PARAMS = expstdp.ExpSTDPParams(A_plus=1.0, A_minus=0.5, exp_beta=2.0, pretrace_target=0.1)


def activity(rng, lead, n_pre, n_post, rate=0.05):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return dict(pre_spike=f32(rng.uniform(size=lead + (n_pre,)) < rate),
              pre_trace=f32(rng.uniform(size=lead + (n_pre,))),
              post_spike=f32(rng.uniform(size=lead + (n_post,)) < rate),
              post_trace=f32(rng.uniform(size=lead + (n_post,))))


def step(state, params, act):
  state = expstdp.forward(state, params, act["pre_spike"])
  return expstdp.evolve(state, params, with_d_weights=False, **act)


def run(state, params, acts):
  return jax.lax.scan(lambda s, a: (step(s, params, a), None), state, acts)[0]


def main():
  n_dev, q = jax.device_count(), args.quick
  rng = np.random.default_rng(0)
  T, reps = (10, 2) if q else (50, 5)
  rows = []

  # Population-parallel: P populations of n x n, one scan of T steps.
  pops, n = 4 * n_dev, (128 if q else 256)
  states = jax.vmap(lambda k: expstdp.init(k, (n, n)))(jax.random.split(jax.random.key(0), pops))
  params = jax.tree.map(lambda x: jnp.full(pops, x, jnp.float32), PARAMS)
  acts = activity(rng, (pops, T, 1), n, n)
  mesh = jax.make_mesh((n_dev,), ("pop",), axis_types=(AxisType.Auto,))
  shard = lambda tree: jax.device_put(tree, expstdp.sharding.population(mesh, tree, "pop"))
  simulate = jax.jit(jax.vmap(run))
  sharded_params, sharded_acts = shard(params), shard(acts)
  res = measure({
      "unsharded": stateful(lambda s: simulate(s, params, acts), states),
      f"population-parallel, {n_dev} devices": stateful(
          lambda s: simulate(s, sharded_params, sharded_acts), shard(states)),
  }, rounds=reps, calls=2)
  for name, r in res.items():
    rows.append(dict(layout=name, shape=[pops, n, n], us_per_step=r["median_s"] / T * 1e6,
                     iqr_rel=r["iqr_rel"]))

  # Synapse-parallel: one N x M synapse split by post-synaptic columns.
  N, M = (784, 1024) if q else (784, 8192)
  state = expstdp.init(jax.random.key(1), (N, M))
  acts = activity(rng, (T, 1), N, M)
  mesh = jax.make_mesh((n_dev,), ("post",), axis_types=(AxisType.Auto,))
  sh = expstdp.sharding.synapse(mesh, state, post_axis="post")
  seq_sh = {k: NamedSharding(mesh, P(None, *getattr(sh, k).spec)) for k in acts}
  simulate = jax.jit(run)
  sharded_acts = jax.device_put(acts, seq_sh)
  res = measure({
      "unsharded": stateful(lambda s: simulate(s, PARAMS, acts), state),
      f"synapse-parallel by columns, {n_dev} devices": stateful(
          lambda s: simulate(s, PARAMS, sharded_acts), jax.device_put(state, sh)),
  }, rounds=reps, calls=2)
  for name, r in res.items():
    rows.append(dict(layout=name, shape=[N, M], us_per_step=r["median_s"] / T * 1e6,
                     iqr_rel=r["iqr_rel"]))

  print(f"{'layout':48s} {'shape':>14s} {'us/step':>10s}")
  for r in rows:
    print(f"{r['layout']:48s} {'x'.join(map(str, r['shape'])):>14s} {r['us_per_step']:10.1f}")
  if args.devices:
    print(f"\n{n_dev} simulated devices on {os.cpu_count()} cores: this measures overhead, "
          "not speed-up.")
  pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.json).write_text(json.dumps(dict(
      devices=[str(d) for d in jax.devices()], simulated=bool(args.devices), rows=rows), indent=1))


if __name__ == "__main__":
  main()
