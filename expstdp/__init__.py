"""expstdp: exponential weight-dependent, trace-based STDP as pure JAX functions.

The rule of ngclearn's `ExpSTDPSynapse` (Diehl & Cook 2015, eq. 4). States and
params are immutable NamedTuples; every function is pure and composes with
`jax.jit`, `jax.vmap`, `jax.lax.scan`, `jax.grad`, `jax.shard_map` and
`jax.export`.
"""

from expstdp import initializers, jitted, sharding, traces
from expstdp.checked import checked
from expstdp.describe import describe
from expstdp.events import clip_weights, evolve_events, forward_events
from expstdp.io import load, save
from expstdp.synapse import compute_dW, evolve, forward, init, reset
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import max_exponent, validate_params

__version__ = "0.1.0"

__all__ = [
    "ExpSTDPParams",
    "SynapseState",
    "checked",
    "clip_weights",
    "compute_dW",
    "describe",
    "evolve",
    "evolve_events",
    "forward",
    "forward_events",
    "init",
    "initializers",
    "jitted",
    "load",
    "max_exponent",
    "reset",
    "save",
    "sharding",
    "traces",
    "validate_params",
]
