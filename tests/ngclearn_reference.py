"""Drives ngclearn 3.1.1's ExpSTDPSynapse itself, for parity tests."""

import itertools

import jax
import numpy as np
import pytest

ngclearn = pytest.importorskip("ngclearn")  # installed by the `test` extra
from ngclearn import Context, MethodProcess  # noqa: E402
from ngclearn.components.synapses.hebbian.expSTDPSynapse import ExpSTDPSynapse  # noqa: E402

_names = itertools.count()


class Reference:
  """One ngclearn ExpSTDPSynapse with a compiled step (advance_state >> evolve)
  and a compiled reset, as ngclearn's own tests run it."""

  def __init__(self, key, shape, **kwargs):
    with Context(f"ref{next(_names)}"):
      self.syn = ExpSTDPSynapse("W", shape, key=key, **kwargs)
      self.step_process = MethodProcess("step") >> self.syn.advance_state >> self.syn.evolve
      self.reset_process = MethodProcess("reset") >> self.syn.reset

  def step(self, inputs, pre_spike, pre_trace, post_spike, post_trace):
    s = self.syn
    s.inputs.set(inputs)
    s.preSpike.set(pre_spike)
    s.preTrace.set(pre_trace)
    s.postSpike.set(post_spike)
    s.postTrace.set(post_trace)
    # ngclearn multiplies at XLA's default precision, which on an NVIDIA GPU
    # is TF32 (2.5e-4 relative error on an H200); expstdp multiplies in float32.
    with jax.default_matmul_precision("highest"):
      self.step_process.run()
    return self.read()

  def reset(self):
    self.reset_process.run()
    return self.read()

  def read(self):
    s = self.syn
    return {name: np.asarray(c.get()) for name, c in (
        ("weights", s.weights), ("d_weights", s.dWeights), ("outputs", s.outputs),
        ("inputs", s.inputs), ("pre_spike", s.preSpike), ("post_spike", s.postSpike),
        ("pre_trace", s.preTrace), ("post_trace", s.postTrace))}
