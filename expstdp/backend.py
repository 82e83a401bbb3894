"""What the installed XLA does, probed once on tiny programs, so that the rule
is compiled the way that is fastest there and runs on every jax the project
supports."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np


def accepts_option(name: str, value) -> bool:
  """Whether `jax.jit(..., compiler_options={name: value})` compiles."""
  try:
    jax.jit(lambda x: x + 1).lower(np.float32(0)).compile(compiler_options={name: value})
  except Exception as e:  # XLA's error type differs between jax versions
    if "No such compile option" in str(e):
      return False
    raise
  return True


@functools.cache
def fuses_siblings() -> bool:
  """Whether XLA:CPU fuses two loops over the same array into one loop with
  two outputs. It does only when started with
  XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion=true,
  a process-wide setting that no `jit` option can carry. False off CPU."""
  if jax.default_backend() != "cpu":
    return False

  def siblings(x):
    return jnp.exp(x) * 2, jnp.exp(jax.lax.optimization_barrier(x)) + 1

  text = jax.jit(siblings).lower(np.zeros((64, 64), np.float32)).compile().as_text()
  return re.search(r"fusion[.\d]* = \(f32\[64,64\]", text) is not None


@functools.cache
def hoists_every_loop() -> bool:
  """Whether XLA:CPU compiles every while loop into a single call, whatever
  it touches per trip (jax 0.12 does), rather than only loops that touch
  under xla_cpu_small_while_loop_byte_threshold (1 KiB) a trip. False off
  CPU."""
  if jax.default_backend() != "cpu":
    return False
  loop = jax.jit(lambda x, n: jax.lax.fori_loop(0, n, lambda i, x: 2 * x + 1, x))
  text = loop.lower(np.zeros(1 << 18, np.float32), 3).compile().as_text()
  return 'xla_cpu_small_call="true"' in text
