"""Timing that survives a shared, noisy machine: variants run interleaved in
rounds, each reported as the median of many calls after warm-up, with the
spread (interquartile range / median) so a reader can tell noise from signal."""

import time

import jax
import numpy as np

NOISY = 0.25  # relative IQR above which a number is flagged as untrustworthy


def measure(variants: dict, *, rounds: int, calls: int, warmup: int = 2) -> dict:
  """`variants` maps a name to a zero-argument step function that runs one
  call and returns what to block on. Returns name -> {median_s, iqr_rel, n}."""
  for step in variants.values():
    for _ in range(warmup):
      jax.block_until_ready(step())
  times = {name: [] for name in variants}
  for _ in range(rounds):
    for name, step in variants.items():
      for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(step())
        times[name].append(time.perf_counter() - start)
  out = {}
  for name, ts in times.items():
    q1, med, q3 = np.percentile(ts, [25, 50, 75])
    out[name] = dict(median_s=float(med), iqr_rel=float((q3 - q1) / med), n=len(ts))
  return out


def stateful(fn, state):
  """A step function that feeds each call's result to the next (so donated
  buffers are always fresh) and returns it."""
  box = [state]

  def step():
    box[0] = fn(box[0])
    return box[0]

  return step
