"""What a call from Python costs on CPU under XLA's threading, each
process-wide setting in its own child process:

  python benchmarks/dispatch.py [--quick] [--json results/dispatch.json]

XLA:CPU runs a program on the calling thread only when it estimates it at
under 1000 flops (an 8x8 evolve); a larger one goes to a worker thread and its
result comes back to the caller. From ~2,500 weights up XLA:CPU also splits
each loop over W between threads. Where waking another core is slow (a small
VM), these handoffs cost more than the arithmetic of a 784x100 call. The
settings, both process-wide:

- `jax.config.update("jax_cpu_enable_async_dispatch", False)` before the
  first computation (a flag, not read from the environment): every program
  runs on the calling thread;
- one core (`taskset -c 0`; here `os.sched_setaffinity` in the child): XLA
  then uses one thread.

Each function runs in two loops: one that waits for every call's result (as
a loop that reads spikes back into numpy does), and one that chains calls
without waiting, which lets the worker thread run while Python dispatches the
next call. The settings take turns for `--rounds` rounds; a row gives each
setting's median over rounds of its child's median per call. Every function
donates its state and runs without d_weights, at 2% spikes.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np  # jax is imported by the child, after it has set its affinity

SETTINGS = {  # name: (synchronous dispatch, one core)
    "default": (False, False),
    "synchronous": (True, False),
    "one core": (False, True),
    "one core, synchronous": (True, True),
}
FUNCTIONS = ("evolve", "evolve_events", "forward_events")
CHAIN = 20  # calls between waits in the chained loop


def child(shapes, calls, synchronous, one_core):
  """Runs in a child process: medians per call of each function and shape."""
  if one_core:  # before jax starts its threads
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  import jax
  jax.config.update("jax_cpu_enable_async_dispatch", not synchronous)

  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import expstdp
  from harness import NOISY, measure, stateful
  from run import PARAMS, capacity, new_state

  rng = np.random.default_rng(0)
  rate = 0.02
  out = []
  for shape in shapes:
    max_pre, max_post = capacity(shape[0], rate), capacity(shape[1], rate)
    calls_of = {
        "evolve": lambda s: expstdp.jitted.evolve(s, PARAMS, with_d_weights=False),
        "evolve_events": lambda s: expstdp.jitted.evolve_events(
            s, PARAMS, max_pre=max_pre, max_post=max_post, with_d_weights=False),
        "forward_events": lambda s: expstdp.jitted.forward_events(s, PARAMS, max_active=max_pre),
    }
    for name in FUNCTIONS:
      one = calls_of[name]

      def chain(state, one=one):  # calls that do not wait for each other
        for _ in range(CHAIN):
          state = one(state)
        return state

      variants = {"waited": stateful(one, new_state(shape, 1, rng, rate)),
                  "chained": stateful(chain, new_state(shape, 1, rng, rate))}
      res = measure(variants, rounds=5, calls=calls if shape[0] * shape[1] < 10**6 else 6)
      out.append(dict(function=name, shape=list(shape),
                      waited_us=res["waited"]["median_s"] * 1e6,
                      chained_us=res["chained"]["median_s"] * 1e6 / CHAIN,
                      waited_noisy=res["waited"]["iqr_rel"] > NOISY,
                      chained_noisy=res["chained"]["iqr_rel"] > NOISY))
  # What the child ran under, for the JSON (and the test) to confirm.
  return dict(jax=jax.__version__, rows=out,
              async_dispatch=jax.config.values["jax_cpu_enable_async_dispatch"],
              cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)


def run_child(setting, args):
  synchronous, one_core = SETTINGS[setting]
  command = [sys.executable, __file__, "--child",
             json.dumps([args.shapes, args.calls, synchronous, one_core])]
  done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))  # the settings are XLA:CPU's
  if done.returncode:
    raise RuntimeError(f"{setting}: the child failed:\n{done.stderr[-2000:]}")
  return json.loads(done.stdout.splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="one size, one round (~25 s)")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--json", default="results/dispatch.json")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.rounds < 1:
    parser.error(f"--rounds must be at least 1, got {args.rounds}")
  if args.child:
    shapes, calls, synchronous, one_core = json.loads(args.child)
    print(json.dumps(child([tuple(s) for s in shapes], calls, synchronous, one_core)))
    return
  # Quick: the shape whose calls the settings change most, compiled once per child.
  args.shapes = [[784, 100]] if args.quick else [[8, 8], [128, 128], [784, 100], [784, 6400]]
  args.calls = 10 if args.quick else 60
  rounds = 1 if args.quick else args.rounds
  settings = list(SETTINGS)
  if not hasattr(os, "sched_setaffinity"):
    print("no os.sched_setaffinity on this platform: the one-core settings are skipped")
    settings = [s for s in settings if not SETTINGS[s][1]]
  results = {s: [] for s in settings}
  for r in range(rounds):
    for setting in settings:
      print(f"round {r + 1}/{rounds}: {setting} ...", flush=True)
      results[setting].append(run_child(setting, args))

  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  from harness import NOISY

  rows = []
  for fn in FUNCTIONS:
    for shape in args.shapes:
      for loop in ("waited", "chained"):
        row = dict(function=fn, shape=shape, loop=loop, noisy=False)
        for setting in settings:
          mine = [x for res in results[setting] for x in res["rows"]
                  if x["function"] == fn and x["shape"] == shape]
          runs = [x[f"{loop}_us"] for x in mine]
          row[setting] = dict(median_us=float(np.median(runs)), runs_us=runs)
          row["noisy"] |= any(x[f"{loop}_noisy"] for x in mine)
        rows.append(row)
  print(f"\njitted calls, us per call (median over {rounds} round(s) of per-call medians); "
        f"waited: each call's result waited for; chained: {CHAIN} calls, then one wait")
  print(f"{'function':15s} {'shape':9s} {'loop':8s}" + "".join(f"{s:>22s}" for s in settings)
        + "  default / fastest")
  for row in rows:
    times = [row[s]["median_us"] for s in settings]
    print(f"{row['function']:15s} {'x'.join(map(str, row['shape'])):9s} {row['loop']:8s}"
          + "".join(f"{t:22.1f}" for t in times) + f"  {times[0] / min(times):5.2f}"
          + ("  NOISY" if row["noisy"] else ""))
  if any(row["noisy"] for row in rows):
    print(f"NOISY: some child's interquartile range exceeded {NOISY:.0%} of its median; rerun.")
  result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                             cpus=os.cpu_count(), jax=results["default"][0]["jax"],
                             xla_flags=os.environ.get("XLA_FLAGS", "")),
                quick=args.quick, rounds=rounds, settings=settings, rows=rows,
                ran_under={s: dict(async_dispatch=results[s][0]["async_dispatch"],
                                   cpus=results[s][0]["cpus"]) for s in settings})
  pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
