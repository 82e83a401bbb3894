import contextlib
import os
import subprocess
import sys

import jax
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


def run_with_xla_flags(script: str, flags: str, path) -> dict:
  """Runs `script` (which saves an .npz to sys.argv[1]) in a fresh Python
  whose XLA_FLAGS are `flags`, as a process-wide XLA setting must be set
  before JAX starts; returns what it saved."""
  subprocess.run([sys.executable, "-c", script, str(path)],
                 env=dict(os.environ, XLA_FLAGS=flags), check=True, timeout=300)
  return dict(np.load(path))


@contextlib.contextmanager
def counting_compiles():
  """Yields a list that gets one entry per XLA compilation in the block."""
  compiles = []

  def listen(event, _, **kwargs):
    if event.endswith("backend_compile_duration"):
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield compiles
  finally:
    unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
    if unregister is None:  # jax < 0.9 has only the private one
      from jax._src.monitoring import _unregister_event_duration_listener_by_callback as unregister
    unregister(listen)
