import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_shows_the_example_file():
  example = (ROOT / "examples" / "quickstart.py").read_text()
  block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
  code = [line for line in example.splitlines() if line.strip() and not line.startswith('"""')]
  for line in filter(None, block.splitlines()):
    assert line in code, f"README line not in examples/quickstart.py: {line}"


def test_example_runs():
  out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                       capture_output=True, text=True, timeout=300, check=True).stdout
  rates = [float(x) for x in re.findall(r"post rate=([0-9.]+)", out)]
  means = [float(x) for x in re.findall(r"mean W=([0-9.]+)", out)]
  assert len(rates) == 8 and 0 < min(rates) and max(rates) < 1
  assert means[0] < means[-1]  # more LTP, larger weights


@pytest.mark.skipif(importlib.util.find_spec("ngclearn") is None,
                    reason="ngclearn is not installed (pip install -e '.[test]')")
def test_port_from_ngclearn_gives_ngclearns_weights():
  out = subprocess.run([sys.executable, str(ROOT / "examples" / "port_from_ngclearn.py")],
                       capture_output=True, text=True, timeout=300, check=True).stdout
  diff = float(re.search(r"over all steps = (\S+)", out).group(1))
  initial, ngclearn = map(float, re.search(
      r"initial ([0-9.]+), final ngclearn ([0-9.]+)", out).groups())
  assert diff <= 1e-6
  assert abs(ngclearn - initial) > 0.01  # the weights learnt: the comparison is not vacuous


def test_fit_hyperparameters_recovers_the_true_values():
  out = subprocess.run([sys.executable, str(ROOT / "examples" / "fit_hyperparameters.py")],
                       capture_output=True, text=True, timeout=300, check=True).stdout
  first = re.search(r"iteration 0: A_plus=(\S+) A_minus=(\S+)", out).groups()
  fitted = re.search(r"fitted: A_plus=(\S+) A_minus=(\S+)", out).groups()
  assert [float(x) for x in first] == [0.3, 1.2]  # it starts far from the truth
  np.testing.assert_allclose([float(x) for x in fitted], [1.0, 0.4], atol=1e-4)
