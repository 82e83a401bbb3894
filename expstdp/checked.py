"""A checked mode: run any expstdp function with run-time checks that work
under `jit`, `vmap` and `scan` (via `jax.experimental.checkify`)."""

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from expstdp import events, synapse, traces
from expstdp.eager import traced
from expstdp.types import ExpSTDPParams, SynapseState
from expstdp.validation import is_int, max_exponent


# What can hold a NaN. Other leaves are static options (a dtype, a string, an
# initializer function).
_VALUES = (jax.Array, np.ndarray, np.generic, int, float, complex)


def _check_finite(name: str, tree) -> None:
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not isinstance(leaf, _VALUES):
      continue
    if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
      suffix = jax.tree_util.keystr(path, simple=True, separator=".")
      field = f"{name}.{suffix}" if suffix else name
      checkify.check(jnp.all(jnp.isfinite(leaf)), f"{field} has non-finite values (NaN or inf)")


def _check_param_values(name: str, params: ExpSTDPParams, dtype) -> None:
  # As arrays: checkify formats only arrays, and under jax.disable_jit the
  # fields may still be Python floats.
  p, limit = jax.tree.map(jnp.asarray, params), max_exponent(dtype)
  checkify.check(jnp.all(p.A_minus >= 0), f"{name}.A_minus must be >= 0, got {{}}", p.A_minus)
  checkify.check(jnp.all(p.w_eps >= 0), f"{name}.w_eps must be >= 0, got {{}}", p.w_eps)
  checkify.check(jnp.all(p.tau_w >= 0), f"{name}.tau_w must be >= 0, got {{}}", p.tau_w)
  checkify.check(jnp.all(p.w_bound > 2 * p.w_eps),
                 f"{name}.w_bound must be > 2 * {name}.w_eps, got w_bound={{}}, w_eps={{}}",
                 p.w_bound, p.w_eps)
  checkify.check(jnp.all(jnp.abs(p.exp_beta * p.w_bound) <= limit),
                 f"|{name}.exp_beta * {name}.w_bound| must be <= {limit:g}, got {{}}",
                 p.exp_beta * p.w_bound)


def _check_weights_in_range(state: SynapseState, params: ExpSTDPParams) -> None:
  checkify.check(events._weights_in_range(state, params),
                 "state.weights must lie in [w_eps, w_bound - w_eps], or be 0 where masked, "
                 "for evolve_events; call expstdp.clip_weights(state, params) once")


def _check_trace_values(arguments) -> None:
  # What traces.update checks where the values are concrete.
  tau_tr, dt = jnp.asarray(arguments["tau_tr"]), jnp.asarray(arguments["dt"])
  checkify.check(jnp.all(tau_tr > 0), "tau_tr must be > 0, got {}", tau_tr)
  checkify.check(jnp.all(dt >= 0), "dt must be >= 0, got {}", dt)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_DATA = (jax.Array, np.ndarray, float, complex, np.floating, np.complexfloating)


def _is_data(x, annotation, own: bool) -> bool:
  """Whether a compiled checked call takes `x` as traced values: arrays and
  floating numbers, also in pytrees, and ints in params (`A_plus=1`) or given
  to an expstdp function for a value (`tau_tr=20`), which as options would
  compile again for every new int. An int is an option where its parameter
  is annotated `int` (a capacity such as `max_pre`) and wherever the
  function is the user's (a size, a number of steps); so are ints in other
  containers (a shape)."""
  if is_int(x):
    return own and annotation not in (int, "int")
  leaves = jax.tree.leaves(x)
  in_synapse = isinstance(x, (ExpSTDPParams, SynapseState))
  return bool(leaves) and all(
      isinstance(leaf, _DATA) or (in_synapse and is_int(leaf)) for leaf in leaves)


def checked(fn: Callable[_P, _R]) -> Callable[_P, tuple[checkify.Error, _R]]:
  """Wraps an expstdp function so that every call checks, at run time, that
  all its floating inputs and outputs are finite and that the hyperparameter
  values are valid (see `validate_params`), naming the offending field
  (e.g. `state.pre_trace`); for `evolve_events` (also as a
  `functools.partial` or `expstdp.jitted.evolve_events`), also its
  precondition on the weights; for `traces.update`, tau_tr > 0 and dt >= 0.

  The wrapped function returns `(error, result)`; call `error.throw()` (or
  `error.get()` for the message or None). Called eagerly it runs compiled,
  once per shape and set of static options: arguments that are not numbers
  or arrays, ints for a parameter annotated `int` (a capacity), and init's
  `p_conn`; wrapping a function of your own, every int. It composes with
  `jax.jit`:

    evolve = jax.jit(expstdp.checked(expstdp.evolve))
    err, state = evolve(state, params)
    err.throw()
  """
  if not callable(fn):  # inspect's message would not say what checked takes
    raise TypeError(f"checked takes a function (expstdp.evolve, say), got {fn!r}.")
  signature = inspect.signature(fn)
  base = fn
  while True:  # evolve_events with its capacities, or its jitted entry point, say
    if isinstance(base, functools.partial):
      base = base.func
    elif hasattr(base, "__wrapped__"):
      base = base.__wrapped__
    else:
      break
  fn_name = getattr(base, "__name__", type(base).__name__)

  @functools.wraps(fn)
  def with_checks(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()  # what a functools.partial holds is checked too
    arguments = bound.arguments
    weights = arguments["state"].weights if "state" in arguments else arguments.get("weights")
    dtype = jnp.result_type(weights) if weights is not None else jnp.float32
    for name, value in arguments.items():
      if isinstance(value, ExpSTDPParams):
        _check_param_values(name, value, dtype)
      _check_finite(name, value)
    if base is events.evolve_events:
      _check_weights_in_range(arguments["state"], arguments["params"])
    result = fn(*args, **kwargs)  # first: it names an argument of the wrong type
    if base is traces.update:
      _check_trace_values(arguments)
    _check_finite(f"{fn_name} output", result)
    return result

  checkified = checkify.checkify(with_checks, errors=checkify.user_checks)
  compiled = {}  # one jit per set of static options
  own = getattr(base, "__module__", "").startswith("expstdp.")  # annotated with care
  named = {name: p.annotation for name, p in signature.parameters.items()}
  positional = list(named.values())
  # A number that decides the shape of what init returns (whether it has a
  # weight_mask), so init refuses it traced.
  shaping = ("p_conn",) if base is synapse.init else ()

  @functools.wraps(fn)
  def call(*args: _P.args, **kwargs: _P.kwargs) -> tuple[checkify.Error, _R]:
    if traced(args, kwargs):
      return checkified(*args, **kwargs)
    # Eagerly, checkify would run its program op by op (a 784x400 evolve took
    # 0.24 s a call, evolve_events 1.2 s): compiled instead, with every
    # argument that is not data (a capacity, a shape, a dtype, a function)
    # static.
    options = (tuple(i for i, x in enumerate(args)
                     if not _is_data(x, positional[i] if i < len(positional) else None, own)),
               tuple(sorted(name for name, x in kwargs.items()
                            if name in shaping or not _is_data(x, named.get(name), own))))
    try:
      hash(tuple(args[i] for i in options[0]) + tuple(kwargs[name] for name in options[1]))
    except TypeError:  # an option jit cannot hold (a list, say): op by op
      return checkified(*args, **kwargs)
    if options not in compiled:
      compiled[options] = jax.jit(checkified, static_argnums=options[0],
                                  static_argnames=options[1])
    return compiled[options](*args, **kwargs)

  return call
