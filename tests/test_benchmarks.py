"""The benchmark suite runs end to end (speed itself is measured there, not here)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_target(tmp_path):
  out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                        "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")],
                       capture_output=True, text=True, timeout=600, check=True).stdout
  result = json.loads((tmp_path / "b.json").read_text())
  assert (tmp_path / "b.png").stat().st_size > 0
  assert len(result["targets"]) >= 9 and "targets (issue 5)" in out
  # The table's columns, as issue 5 lists them.
  header = next(line for line in out.splitlines() if line.startswith("section"))
  assert header.split() == ["section", "variant", "shape", "batch", "median", "ms", "ns/weight",
                            "x", "ref", "x", "floor"]
  for row in result["rows"]:
    assert row["median_ms"] > 0 and row["calls"] > 0
  variants = {row["variant"] for row in result["rows"]}
  if importlib.util.find_spec("ngclearn"):  # installed with the test extras
    assert "ngclearn 3.1.1 MethodProcess, .set() per step" in variants
  else:  # the row is skipped, and says so
    assert "ngclearn 3.1.1 not installed" in out


def test_quick_sharding_benchmark_runs_on_8_simulated_devices(tmp_path):
  out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sharding.py"), "--quick",
                        "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True, timeout=600, check=True).stdout
  result = json.loads((tmp_path / "s.json").read_text())
  assert len(result["devices"]) == 8 and result["simulated"]
  layouts = [row["layout"] for row in result["rows"]]
  assert "population-parallel, 8 devices" in layouts and "overhead" in out
  assert all(row["us_per_step"] > 0 for row in result["rows"])


def test_quick_dispatch_benchmark_runs_every_setting(tmp_path):
  out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dispatch.py"), "--quick",
                        "--json", str(tmp_path / "d.json")],
                       capture_output=True, text=True, timeout=600, check=True).stdout
  result = json.loads((tmp_path / "d.json").read_text())
  assert "default / fastest" in out
  assert {(r["function"], r["loop"]) for r in result["rows"]} == {
      (f, loop) for f in ("evolve", "evolve_events", "forward_events")
      for loop in ("waited", "chained")}
  for row in result["rows"]:
    assert all(row[s]["median_us"] > 0 for s in result["settings"])
  ran_under = result["ran_under"]
  assert ran_under["default"]["async_dispatch"] and not ran_under["synchronous"]["async_dispatch"]
  if "one core" in ran_under:  # Linux
    assert ran_under["one core"]["cpus"] == 1 and ran_under["one core, synchronous"]["cpus"] == 1


def test_bad_options_are_usage_errors():
  for script, options, message in (
      ("gpu_probe.py", ["--sizes", "4096,x"], "--sizes must be positive ints separated by commas"),
      ("gpu_probe.py", ["--batch", "0"], "--batch must be at least 1, got 0"),
      ("sharding.py", ["--devices", "-2"], "--devices must be 0 (the real devices) or more"),
      ("dispatch.py", ["--rounds", "0"], "--rounds must be at least 1, got 0")):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *options],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr, (script, run.stderr[-500:])
