"""The Diehl & Cook benchmark: its IDX reader, save/load, and a quick run in
which learning happens (the full run is a benchmark, not a test)."""

import gzip
import json
import pathlib
import struct
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
import diehl_cook_digits as dc  # noqa: E402


def _idx(array, dtype_code):
  header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
  return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _as_mnist(directory, n_train, n_test):
  """The digits, enlarged to 28x28, as the four MNIST IDX files in `directory`."""
  directory.mkdir()
  Xtr, Xte, ytr, yte = dc.load_digits_split()
  enlarge = lambda X: np.pad(np.kron(X.reshape(-1, 8, 8), np.ones((3, 3))),  # 24x24,
                             [(0, 0), (2, 2), (2, 2)])                          # framed
  for name, array in (("train-images", enlarge(Xtr[:n_train])),
                      ("t10k-images", enlarge(Xte[:n_test])),
                      ("train-labels", ytr[:n_train]), ("t10k-labels", yte[:n_test])):
    data = np.rint(array * 255) if name.endswith("images") else array
    (directory / f"{name}-idx{data.ndim}-ubyte").write_bytes(_idx(data.astype(np.uint8), 0x08))
  return directory


def test_idx_reader_raw_and_gzipped(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
  labels = np.array([7, 0, 4], np.uint8)
  (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(images, 0x08))
  (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels, 0x08)))
  (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images[:2], 0x08)))
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:2], 0x08))
  np.testing.assert_array_equal(dc.read_idx(tmp_path / "train-images-idx3-ubyte"), images)
  Xtr, Xte, ytr, yte = dc.load_mnist(tmp_path)
  assert Xtr.shape == (3, 784) and Xte.shape == (2, 784)
  np.testing.assert_allclose(Xtr[1], images[1].reshape(-1) / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(ytr, labels)
  np.testing.assert_array_equal(yte, labels[:2])
  floats = np.arange(6, dtype=">f4").reshape(2, 3)
  (tmp_path / "f.idx").write_bytes(_idx(floats, 0x0D))
  np.testing.assert_array_equal(dc.read_idx(tmp_path / "f.idx"), floats)


def test_idx_reader_rejects_bad_files(tmp_path):
  (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x03abc")
  with pytest.raises(ValueError, match="bad magic"):
    dc.read_idx(tmp_path / "bad")
  (tmp_path / "short").write_bytes(_idx(np.zeros(10, np.uint8), 0x08)[:-4])
  with pytest.raises(ValueError, match="truncated"):
    dc.read_idx(tmp_path / "short")
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    dc.load_mnist(tmp_path)


def test_quick_run_learns_and_a_saved_network_evaluates_the_same(tmp_path, capsys):
  # --json PATH.json beside --save PATH: the two must not overwrite each other.
  # --save makes its folder, as --json does.
  folder = tmp_path / "new"
  out = dc.main(["--quick", "--json", str(folder / "net.json"), "--pictures", str(tmp_path),
                 "--save", str(folder / "net")])
  result = json.loads((folder / "net.json").read_text())
  assert result["test_accuracy"] == out["test_accuracy"]
  assert result["test_accuracy"] > 0.5, "chance is 0.1: the network should have learned"
  assert "validation split" in result["chosen_by"]
  assert set(result["baselines"]) == {"logistic regression on raw pixels",
                                      "k-means (100 clusters) + majority label",
                                      "100 training images, no learning"}
  assert all(pathlib.Path(p).stat().st_size > 0 for p in result["pictures"])
  # The file's own name, net.npz, names the saved network too.
  loaded = dc.main(["--quick", "--load", str(folder / "net.npz"), "--json",
                    str(folder / "l.json")])
  # Same network, same test images, same Poisson draw of the input spikes.
  assert loaded["test_accuracy"] == result["test_accuracy"]
  # Loaded for other images than it learned (MNIST's 784 pixels), it is refused by name.
  with pytest.raises(SystemExit):
    dc.main(["--load", str(folder / "net"), "--mnist", str(_as_mnist(tmp_path / "m", 40, 20))])
  assert "the saved network has 64 inputs, these images 784 pixels" in capsys.readouterr().err
  # Half a saved network is named, not a traceback.
  (folder / "net.network.json").unlink()
  with pytest.raises(SystemExit):
    dc.main(["--load", str(folder / "net")])
  assert f"no {folder / 'net.network.json'}, which --save" in capsys.readouterr().err


def test_several_seeds_are_the_runs_of_each_seed_and_their_mean(tmp_path, capsys):
  small = ["--quick", "--train-images", "120", "--test-images", "40",
           "--pictures", str(tmp_path), "--json", str(tmp_path / "r.json")]
  both = dc.main(small + ["--seed", "1", "--seeds", "2"])
  alone = [dc.main(small + ["--seed", str(seed)]) for seed in (1, 2)]
  assert [r["seed"] for r in both["per_seed"]] == [1, 2]
  for key in ("test_accuracy", "test_accuracy_exp_beta_0"):
    assert [r[key] for r in both["per_seed"]] == [r[key] for r in alone]
    assert both[key + "_mean"] == pytest.approx(np.mean([r[key] for r in alone]))
  # The top-level fields are --seed's run, the one --save keeps.
  assert both["test_accuracy"] == alone[0]["test_accuracy"]
  assert both["hyperparameters"] == alone[0]["hyperparameters"]
  with pytest.raises(SystemExit):
    dc.main(["--load", str(tmp_path / "net"), "--seeds", "2"])
  assert "--seeds does not apply" in capsys.readouterr().err


def test_readout_assigns_each_neuron_its_class_and_leaves_silent_ones_out():
  # Neuron 0 fires for class 1, neuron 1 for class 2, neuron 2 never fires.
  counts = np.array([[0, 3, 0], [4, 0, 0], [0, 5, 0], [2, 1, 0]], float)
  labels = np.array([0, 1, 2, 1])
  assignments = dc.assign(counts, labels, n_classes=3)
  np.testing.assert_array_equal(assignments, [1, 2, -1])
  # A class without images (in the first chunks a progress bar scores) takes
  # no neuron and leaves the others assigned; its mean was NaN for all.
  np.testing.assert_array_equal(dc.assign(counts, labels, n_classes=4), [1, 2, -1])
  # Each image goes to the class whose neurons fired most; class 0 has none.
  np.testing.assert_array_equal(dc.predict(np.array([[3, 2, 0], [0, 1, 0]], float),
                                           assignments, n_classes=3), [1, 2])


def test_exemplar_baseline_is_nearest_neighbour_by_cosine_with_all_images():
  rng = np.random.default_rng(0)
  Xtr, Xte = rng.uniform(size=(60, 5)), rng.uniform(size=(20, 5))
  ytr, yte = rng.integers(0, 3, 60), rng.integers(0, 3, 20)
  unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)
  nearest = np.argmax(unit(Xte) @ unit(Xtr).T, axis=1)
  # With every training image a prototype, each is its own best match.
  assert dc.exemplars(Xtr, ytr, Xte, yte, 60, draws=1) == np.mean(ytr[nearest] == yte)


def test_counts_too_small_are_refused_by_name(capsys):
  least = {"--neurons": 1, "--epochs": 1, "--selection-draws": 1, "--seeds": 1,
           "--train-images": 100, "--test-images": 1}
  for flag, minimum in least.items():
    with pytest.raises(SystemExit):
      dc.main([flag, "0"])
    assert f"{flag} must be at least {minimum}, got 0" in capsys.readouterr().err
  # A negative seed failed in k-means after the whole training.
  for flag, minimum in {"--seed": 0, "--eta-decay": 0.0}.items():
    with pytest.raises(SystemExit):
      dc.main([flag, "-1"])
    assert f"{flag} must be at least {minimum}, got -1" in capsys.readouterr().err


def test_a_folder_without_mnist_is_a_usage_error(tmp_path, capsys):
  with pytest.raises(SystemExit):
    dc.main(["--mnist", str(tmp_path)])
  assert f"--mnist {tmp_path}: {tmp_path} has no train-images-idx3-ubyte (or " in (
      capsys.readouterr().err)
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02")
  with pytest.raises(SystemExit):
    dc.main(["--mnist", str(tmp_path)])
  assert "is not an IDX file (bad magic number)" in capsys.readouterr().err


def test_mnist_path_learns_28x28_images(tmp_path):
  # The --mnist path end to end, with the hyperparameters it scales to 784
  # inputs (before they were scaled, it scored ~0.2 here), on part of the
  # files as a user with all of MNIST would start.
  mnist = _as_mnist(tmp_path / "mnist", 400, 200)
  result = dc.main(["--quick", "--mnist", str(mnist), "--neurons", "50", "--train-images", "300",
                    "--test-images", "150", "--json", str(tmp_path / "m.json"),
                    "--pictures", str(tmp_path)])
  assert (result["train_images"], result["test_images"]) == (300, 150)
  assert result["test_accuracy"] > 0.5, "chance is 0.1: the network should have learned"
  assert result["hyperparameters"]["norm"] == pytest.approx(0.1 * 784)
