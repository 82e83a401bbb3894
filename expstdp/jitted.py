"""Jitted entry points that update the weights in place: the fast path for
calls from Python, one step at a time.

Each donates `state.weights` and `state.d_weights` to XLA, which then writes
the new W (and dW) into the same buffers instead of allocating fresh (N, M)
arrays every call; at large sizes that allocation costs more than the
arithmetic. Those two arrays of the state passed in are consumed: use the
returned state (its other fields are the arrays passed in, unless the call
replaced them). Params given as Python numbers become arrays once per set
of values, not on every call. Inside your own `jit` or `scan`, call the
plain `expstdp` functions: there XLA already updates the carry in place (and
pass `compiler_options()` to your `jit`). Given traced values (under `jit`,
`vmap`, `scan` or `grad`), or inside a `jit` or `scan` being traced, these
entry points run the plain functions. On CPU, a loop that waits for each
call's result can gain from two process-wide threading settings (README,
Performance).
"""

import functools
import struct
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from expstdp import backend, events, synapse
from expstdp.eager import tracing
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import check_not_donated, check_state, validate_params


def compiler_options() -> dict | None:
  """Options for `jax.jit(..., compiler_options=...)` that make this rule's
  programs faster on CPU; None on other backends, where they do not apply.

  XLA:CPU's default, concurrency-optimised scheduler hands the many small
  kernels of a scanned step or an event-driven update back and forth between
  threads; the memory-optimised one keeps them on one. XLA:CPU prefers
  256-bit vectors even where the CPU has 512-bit ones; the exponential of
  every weight, the cost of a dense evolve, runs ~1.5x faster on the wider
  ones. And with two or more batch elements and rows of 4096 weights or
  more, XLA:CPU hands a dense evolve to YNNPACK, which takes twice as long
  as XLA's own loop; the options keep it in XLA (benchmarks/LOG.md).
  Results are bit for bit the same (tested), except where YNNPACK would
  have run: its exponential rounds differently in the last bit, and its
  matmul (forward's, on some CPUs) sums in another order. An option
  that the installed XLA does not know is left out (the scheduler option is
  not in jax 0.9.0, the YNNPACK one not in 0.8.0). Process-wide XLA
  settings cannot be passed here; README, "Fast scans on CPU", says which
  ones matter.
  """
  options = _cpu_options() if jax.default_backend() == "cpu" else None
  return dict(options) if options else None  # a copy: the cached one stays as it is


@functools.cache
def _cpu_options():
  # Not xla_cpu_copy_insertion_use_region_analysis: it makes scanned
  # event-driven steps 6-9% faster, but a loop that XLA hoists into a call
  # can then read a scan's carry after the step wrote the next one into its
  # buffer (jax 0.8.0 to 0.12.0.1; reproducer in benchmarks/README.md).
  wanted = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
            "xla_cpu_prefer_vector_width": 512,
            "xla_cpu_experimental_ynn_fusion_type": ""}  # none
  return {name: value for name, value in wanted.items() if backend.accepts_option(name, value)}


_DOUBLES = struct.Struct(f"{len(ExpSTDPParams._fields)}d")


class _Packed(NamedTuple):
  """Number params as one array, so that jit handles one argument instead of
  eight (~6 us less a call at 128x128 on a CPU, benchmarks/LOG.md)."""

  values: jax.Array  # (8,), float32 (float64 with jax_enable_x64): the fields in order

  def unpack(self) -> ExpSTDPParams:
    return ExpSTDPParams(*(self.values[i] for i in range(len(ExpSTDPParams._fields))))


def _as_arrays(params, dtype):
  """Params given as Python (or numpy) numbers, as the values `jit` would
  make of them, converted once per set of values and packed.

  `jit` turns every number argument into a device array on every call: for
  the eight fields, ~13 us a call on a CPU (a 128x128 evolve took 60 instead
  of 47 us) and ~0.3 ms on an H200 GPU (430 instead of 84 us at 4096x4096,
  benchmarks/LOG.md). The values are checked first, as the plain functions
  check concrete values when traced: they cannot once they are arrays.
  """
  if type(params) is not ExpSTDPParams or dtype is None:
    return params  # wrong: the function names the problem
  # A loop passes the same params object every call. Python and numpy
  # numbers are immutable, so the same object (held here, so its id is not
  # reused) has the same values: ~0.3 us a call instead of ~2.5 for the
  # lookup below.
  global _last
  x64 = jax.config.jax_enable_x64
  last = _last  # one tuple, read once: another thread may replace it
  if last[0] is params and last[1] == dtype and last[2] == x64:
    return last[3]
  result = _lookup(params, dtype, x64)
  if result is not params:  # only numbers: never hold on to arrays or tracers
    _last = (params, dtype, x64, result)
  return result


_last = (None, None, None, None)  # params, dtype, x64, what _lookup made of them


def _lookup(params, dtype, x64):
  types = tuple(map(type, params))
  if not all(issubclass(t, (int, float, np.integer, np.floating)) for t in types):
    if any(issubclass(t, (str, bytes, type(None))) for t in types):
      validate_params(params, dtype)  # jit would refuse these before the function can
    return params  # arrays already, or not real: the function names the problem
  # The exact values and types, unlike params' own hash and ==: 1 is not 1.0
  # and -0.0 is not 0.0 here; and what jit makes of them depends on x64.
  # ~2 us for each new params object.
  try:
    doubles = _DOUBLES.pack(*params)
  except struct.error:  # an int too large for a double, which jit would refuse unnamed
    validate_params(params, dtype)
    return params
  return _converted(params, jnp.dtype(dtype), (types, doubles, x64))


@functools.lru_cache(maxsize=256)
def _converted(params, dtype, key):
  validate_params(params, dtype)
  arrays = [jnp.asarray(x) for x in params]  # what jit makes of each number
  packed = jnp.stack([x.astype(jnp.result_type(float)) for x in arrays])
  # Every function casts each value to the weights' dtype first, so a value
  # the packing holds exactly gives the same bits; one it would round (an
  # int over 2**24 in float32, a NaN's payload) stays as jit makes it.
  if all(np.array_equal(np.asarray(p.astype(x.dtype)), np.asarray(x))
         for p, x in zip(packed, arrays)):
    return _Packed(packed)
  return ExpSTDPParams(*arrays)


def _in_place(fn, static_argnames=()):
  def split(weights, d_weights, rest, params, *args, **kwargs):
    if isinstance(params, _Packed):
      params = params.unpack()
    new = fn(rest._replace(weights=weights, d_weights=d_weights), params, *args, **kwargs)
    # Only the fields that fn replaced come back: XLA copies every input
    # returned unchanged into a fresh buffer (~30 us a call at 784 x 100).
    # W and dW come first, in the order of the donated buffers they reuse.
    changed = {name: x for name, x in new._asdict().items()
               if name not in ("weights", "d_weights") and x is not getattr(rest, name)}
    return new.weights, new.d_weights, changed

  @functools.cache
  def compiled():  # on first call: the backend is not known at import
    # keep_unused: d_weights is not read when it is overwritten, and jit would
    # otherwise prune it and silently drop its donation.
    return jax.jit(split, donate_argnums=(0, 1), keep_unused=True,
                   static_argnames=static_argnames, compiler_options=compiler_options())

  @functools.wraps(fn)
  def call(state, params, *args, **kwargs):
    if not isinstance(state, SynapseState):
      check_state(state)  # raises the error that names what state should be
    if not isinstance(params, ExpSTDPParams):
      validate_params(params)  # the same for params
    # Under someone's jit, vmap, scan or grad there is no buffer to donate, and
    # a nested jit may not carry compiler options: the plain function is what
    # runs there anyway. Of the state only W is looked at: with W concrete and
    # other fields traced, the call below still gives the right result.
    if isinstance(state.weights, _Tracer) or _any_traced(args, kwargs):
      return fn(state, params, *args, **kwargs)
    if static_argnames and not _hashable(kwargs, static_argnames):
      return fn(state, params, *args, **kwargs)  # names the option, where jit's hash would not
    # XLA would refuse these donations, but log its own error to stderr first.
    weights, d_weights = state.weights, state.d_weights
    if (weights is d_weights or _deleted(weights) or _deleted(d_weights)) and not tracing():
      check_not_donated(state)  # names a state that an earlier call consumed
      raise ValueError(
          "state.weights and state.d_weights are the same array, and the jitted entry "
          "points donate both: give d_weights a buffer of its own "
          "(state._replace(d_weights=jnp.zeros_like(state.weights)))")
    try:
      packed = _as_arrays(params, getattr(weights, "dtype", None))
      if isinstance(packed, _Packed) or not _any_traced(packed):  # numbers never are traced
        rest = state._replace(weights=None, d_weights=None)
        weights, d_weights, changed = compiled()(weights, d_weights, rest, packed, *args,
                                                 **kwargs)
        return state._replace(weights=weights, d_weights=d_weights, **changed)
    except Exception:
      if not tracing():
        raise
    # Traced params; or, inside someone's jit or scan, only constants (a state
    # captured from outside): nothing is traced, but neither packing params
    # nor a nested jit with compiler options works while tracing. Outside the
    # except clause, so that the plain function's own errors come alone.
    return fn(state, params, *args, **kwargs)

  return call


_Tracer = jax.core.Tracer  # bound once: jax.core's attribute lookup costs ~0.05 us


def _hashable(kwargs, names) -> bool:
  for name in names:
    try:
      hash(kwargs.get(name))
    except TypeError:
      return False
  return True


def _deleted(x) -> bool:
  # ~0.1 us; isinstance(x, jax.Array) alone takes 0.35.
  return hasattr(x, "is_deleted") and x.is_deleted()


def _any_traced(args, kwargs=None) -> bool:
  for x in args:  # a loop, not any(): this runs on every call
    if isinstance(x, _Tracer):
      return True
  if kwargs:
    for x in kwargs.values():
      if isinstance(x, _Tracer):
        return True
  return False


forward = _in_place(synapse.forward)
evolve = _in_place(synapse.evolve, ("with_d_weights",))
forward_events = _in_place(events.forward_events, ("max_active",))
evolve_events = _in_place(events.evolve_events, ("max_pre", "max_post", "with_d_weights"))
