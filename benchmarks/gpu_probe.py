"""What sets the time of a call on a GPU, one question per section:

  XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu_probe.py [--json results/gpu_probe.json]

- waiting for the device after each call against calls dispatched back to
  back, and params as Python floats against arrays, for the in-place copy,
  the in-place exp (the floor), the seed's transcription and expstdp.jitted's
  evolve, at 4096^2 and at 16384^2 (a GiB, far past the L2 cache);
- forward's float32 (HIGHEST) product against TF32, at batch 1024;
- expstdp.jitted's evolve with number params (packed into one argument)
  against arrays (eight arguments);
- the scanned synapse step at 784x100, 5% spikes, unrolled 1, 4 and 16
  times, ours (forward in float32, and in TF32) and the transcription's,
  also under two process-wide XLA:GPU flags (each in a child process).

It runs on a CPU too (`--sizes 256 --batch 8` for a short run) but answers
GPU questions; benchmarks/README.md has its H200 numbers. Times are medians
of per-call times over rounds of calls.
"""

import argparse
import contextlib
import functools
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import expstdp  # noqa: E402
import reference_transcription as ref  # noqa: E402
from harness import stateful  # noqa: E402
from run import PARAMS, REF_HP, activity, new_state  # noqa: E402

ARRAYS = jax.tree.map(jnp.asarray, PARAMS)
FLAGS = ("--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
         "--xla_gpu_graph_min_graph_size=1")
results = []


def timed(name, step, *, wait_each, calls=20, rounds=15, per_call=1):
  for _ in range(3):
    jax.block_until_ready(step())
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(calls):
      out = step()
      if wait_each:
        jax.block_until_ready(out)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / calls / per_call)
  median = float(np.median(times))
  results.append(dict(name=name, us=median * 1e6, iqr_rel=float(np.subtract(
      *np.percentile(times, [75, 25])) / median)))
  print(f"{name:78s} {median * 1e6:10.1f} us", flush=True)


def calls(sizes, rng):
  for n in sizes:
    state = new_state((n, n), 1, rng, 0.05)
    add = jax.jit(lambda W: W + 1e-7, donate_argnums=0)
    exp = jax.jit(lambda W: jnp.exp(-1e-9 * W), donate_argnums=0)
    transcription = functools.partial(jax.jit(functools.partial(ref.evolve, **REF_HP)),
                                      state.weights, state.eta, state.weight_mask, state.pre_spike,
                                      state.pre_trace, state.post_spike, state.post_trace)
    for wait_each in (True, False):
      tag = f"{n}^2, {'waiting after each call' if wait_each else 'back to back'}:"
      timed(f"{tag} in-place copy", stateful(add, jnp.copy(state.weights)), wait_each=wait_each)
      timed(f"{tag} in-place exp [floor]", stateful(exp, jnp.copy(state.weights)), wait_each=wait_each)
      timed(f"{tag} transcription", transcription, wait_each=wait_each)
      for kind, params in (("Python-float params", PARAMS), ("array params", ARRAYS)):
        for keep in (False, True):
          # Bypasses jitted's own conversion, to see what it saves.
          evolve = jax.jit(functools.partial(expstdp.evolve, with_d_weights=keep),
                           donate_argnums=0, keep_unused=True)
          timed(f"{tag} evolve{', keeping dW' if keep else ''}, {kind}",
                stateful(lambda s, p=params, f=evolve: f(s, p), jax.tree.map(jnp.copy, state)),
                wait_each=wait_each)
      # jitted packs number params into one argument; arrays stay eight.
      for kind, params in (("Python floats (packed)", PARAMS), ("arrays (8 arguments)", ARRAYS)):
        timed(f"{tag} jitted.evolve, {kind}",
              stateful(lambda s, p=params: expstdp.jitted.evolve(s, p, with_d_weights=False),
                       jax.tree.map(jnp.copy, state)), wait_each=wait_each)


def precision(batch, rng):
  W = jnp.asarray(rng.uniform(size=(4096, 4096)), jnp.float32)
  x = jnp.asarray(rng.uniform(size=(batch, 4096)) < 0.05, jnp.float32)
  exact = np.asarray(x, np.float64) @ np.asarray(W, np.float64)
  for name in ("highest", "tensorfloat32"):
    with jax.default_matmul_precision(name):
      forward = jax.jit(lambda s, x: expstdp.forward(s, ARRAYS, x))
      state = new_state((4096, 4096), batch, rng, 0.05)._replace(weights=W)
      error = np.max(np.abs(np.asarray(forward(state, x).outputs) - exact)) / np.abs(exact).max()
      timed(f"forward, batch {batch} x 4096^2, default_matmul_precision {name} "
            f"(error {error:.1e})", functools.partial(forward, state, x), wait_each=False)


def scans(rng, T=200):
  seq = [activity(rng, 1, 784, 100, 0.05) for _ in range(T)]
  seq = jax.tree.map(lambda *x: jnp.stack(x), *seq)
  state = new_state((784, 100), 1, rng, 0.05)

  def ours(s, a):
    s = expstdp.forward(s, PARAMS, a["pre_spike"])._replace(**a)
    return expstdp.evolve(s, PARAMS, with_d_weights=False), None

  def transcription(c, a):
    W, _ = c
    out = ref.advance_state(W, a["pre_spike"])
    return ref.evolve(W, 1.0, jnp.ones((1, 1)), a["pre_spike"], a["pre_trace"], a["post_spike"],
                      a["post_trace"], **REF_HP), out

  # forward's product in TF32, as the transcription's is on a GPU: does the
  # float32 product keep our step out of CUDA graphs?
  tf32 = functools.partial(jax.default_matmul_precision, "tensorfloat32")
  variants = (("expstdp", ours, state, contextlib.nullcontext),
              ("expstdp, TF32 forward", ours, state, tf32),
              ("transcription", transcription, (state.weights, state.d_weights),
               contextlib.nullcontext))
  for unroll in (1, 4, 16):
    for name, body, carry, context in variants:
      run = jax.jit(lambda c, body=body, unroll=unroll: jax.lax.scan(body, c, seq, unroll=unroll)[0])
      with context():  # traced inside: the precision is read when forward is traced
        timed(f"scan step 784x100, {name}, unroll {unroll}, per step", stateful(run, carry),
              wait_each=False, calls=2, rounds=9, per_call=T)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="4096,16384")
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--scans-only", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--json", default="results/gpu_probe.json")
  args = parser.parse_args()
  try:
    sizes = [int(n) for n in args.sizes.split(",")]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) < 1:
    parser.error(f"--sizes must be positive ints separated by commas, got {args.sizes!r}")
  if args.batch < 1:
    parser.error(f"--batch must be at least 1, got {args.batch}")
  rng = np.random.default_rng(0)
  if args.scans_only:  # a child process with XLA_FLAGS
    return scans(rng)
  print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
  calls(sizes, rng)
  precision(args.batch, rng)
  scans(rng)
  children = {}
  for flags in FLAGS:
    print(f"XLA_FLAGS={flags}", flush=True)
    child = subprocess.run([sys.executable, __file__, "--scans-only"], capture_output=True,
                           text=True, env=dict(os.environ, XLA_FLAGS=flags), timeout=300)
    print(child.stdout if child.returncode == 0 else child.stderr[-1000:], flush=True)
    children[flags] = child.stdout
  pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.json).write_text(json.dumps(dict(
      device=jax.devices()[0].device_kind, jax=jax.__version__, rows=results,
      under_flags=children), indent=1))


if __name__ == "__main__":
  main()
