import os

import numpy as np

# tests/multidevice needs 8 simulated devices, set up before jax is imported:
# tests/test_sharding.py runs it in a subprocess of its own.
collect_ignore = [] if os.environ.get("EXPSTDP_MULTIDEVICE") else ["multidevice"]


def random_activity(rng: np.random.Generator, batch: int, n_pre: int, n_post: int,
                    rate: float = 0.3, dtype=np.float32):
  """Binary spikes and non-negative traces, as a trace-based STDP sees them."""
  return dict(
      inputs=rng.uniform(0, 1, (batch, n_pre)).astype(dtype),
      pre_spike=(rng.uniform(size=(batch, n_pre)) < rate).astype(dtype),
      pre_trace=rng.uniform(0, 1.5, (batch, n_pre)).astype(dtype),
      post_spike=(rng.uniform(size=(batch, n_post)) < rate).astype(dtype),
      post_trace=rng.uniform(0, 1.5, (batch, n_post)).astype(dtype),
  )
