"""Runs tests/multidevice on 8 simulated CPU devices. XLA_FLAGS must be set
before jax is imported, so they run in a subprocess of their own."""

import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_sharded_equals_unsharded_on_8_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", EXPSTDP_MULTIDEVICE="1")  # CPU even where a GPU is
  run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(HERE / "multidevice")], capture_output=True, text=True, env=env,
                       cwd=HERE.parent, timeout=900)
  print(run.stdout[-3000:], run.stderr[-3000:])
  assert run.returncode == 0
  summary = run.stdout.strip().splitlines()[-1]
  assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary
