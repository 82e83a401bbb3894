"""Eager calls as one compiled program each.

Called with nothing traced, the library's functions run as one XLA program
per function and shape, cached, not op by op: a dense evolve is otherwise
some thirty separate programs and passes over W (5-6 ms at 4x3 and 105-158
ms at 784x6400 on 2 cores, against 0.2-0.35 and 7-19 ms with its checks,
compiled), with bits of its own. Under a trace (your `jit`, `vmap`, `scan`, `grad`,
or `expstdp.checked`) they run inline, and under `jax.disable_jit()` op by
op.
"""

import functools

import jax
import jax.numpy as jnp


def tracing() -> bool:
  """Whether a jit or scan is being traced: there even an op on constants
  gives a tracer. (~70 us: not for every call.)"""
  return isinstance(jnp.zeros(()), jax.core.Tracer)


def traced(*trees) -> bool:
  """Whether any leaf of `trees` is a tracer."""
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def compiled(fn=None, *, static_argnames=()):
  """`fn` through a cached `jax.jit` when no argument is traced, else `fn`
  itself, inlined into the caller's trace. (Given only constants while a
  jit is traced, the cached jit is staged into it: the same program.)"""
  if fn is None:
    return functools.partial(compiled, static_argnames=static_argnames)
  jitted = jax.jit(fn, static_argnames=static_argnames)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    return (fn if traced(args, kwargs) else jitted)(*args, **kwargs)

  return call
