"""Timing that survives a shared, noisy machine: variants run interleaved in
rounds, each reported as the median of many calls after warm-up, with the
spread (interquartile range / median) so a reader can tell noise from signal."""

import time

import jax
import numpy as np

NOISY = 0.25  # relative IQR above which a number is flagged as untrustworthy


def measure(variants: dict, *, rounds: int, calls: int, warmup: int = 2) -> dict:
  """`variants` maps a name to a zero-argument step function that runs one
  call and returns what to block on. Returns name -> {median_s, iqr_rel, n}.

  On CPU each call is timed on its own. On a GPU or TPU the `calls` of a
  round are dispatched back to back and waited for once, as a Python loop
  of jitted calls runs there: waiting after each call would add a round
  trip to the device to every one (~75 us on an H200, twice an in-place
  copy of 4096x4096)."""
  for step in variants.values():
    for _ in range(warmup):
      jax.block_until_ready(step())
  per_sample = 1 if jax.default_backend() == "cpu" else calls
  times = {name: [] for name in variants}
  for _ in range(rounds):
    for name, step in variants.items():
      for _ in range(calls // per_sample):
        start = time.perf_counter()
        for _ in range(per_sample):
          result = step()
        jax.block_until_ready(result)
        times[name].append((time.perf_counter() - start) / per_sample)
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
