"""cv.lib.evaluate.run over cv.data.pipeline.EvalBatches: each process loads only its share of
the evaluation records, every process runs the same number of steps (padding when its share is
exhausted, or borrowing an example when its share has none), and the gathered metrics are those
of one process (float sums bit for bit when no clip is skipped)."""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest

from cv.data import pipeline, sources, video
from cv.lib import evaluate, metrics
from tests import helpers

GLOBAL_BATCH = 4
VIEWS = pipeline.view_positions(temporal=2)
# name -> (number of records, unusable record ids). "plain": one view per record (the others 2),
# every record usable; "skips": the second process's share runs out a step early; "borrow": the
# second process has no usable record at all; "dead": no process has.
SCENARIOS = {"plain": (7, ()), "skips": (7, (3, 5)), "borrow": (6, (1, 3, 5)),
             "dead": (3, (0, 1, 2))}


def _views(name: str) -> list | None:
  return None if name == "plain" else VIEWS


class _Load:
  """Records every record it is asked for; ids in `bad` are unusable (skipped and logged)."""

  def __init__(self, bad):
    self.bad, self.loaded, self.skipped = set(bad), [], pipeline.SkipLog()
    self._lock = threading.Lock()

  def __call__(self, record):
    with self._lock:
      self.loaded.append(record["i"])
    if record["i"] in self.bad:
      self.skipped.add(video.VideoError(record["path"], "not a readable video; re-download it"))
      return None
    x = record["i"] + 0.37 * record.get("_view", (0.0,))[0]
    return {"x": np.float64(x), "index": np.int32(record.get("_index", record["i"])),
            "label": np.int32(record["i"] % 3)}


def _predict(batch):
  """A per-example model (numpy, so exactly reproducible): a score and class probabilities."""
  x = np.asarray(batch["x"], np.float64)
  logits = np.stack([np.sin(x * 1.7), np.cos(x * 0.3), x / 7.0], axis=-1)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  return {"score": np.sin(x * 1.7) * 3.1 + 0.01 * x, "probs": probs}


def evaluate_scenario(name: str) -> dict:
  """Runs one scenario in this process (one of several processes, or alone)."""
  n, bad = SCENARIOS[name]
  records = [{"i": i, "path": f"/data/r{i}.mp4"} for i in range(n)]
  load = _Load(bad)
  means = metrics.MaskedMean()
  sums = np.zeros((n, 3), np.float64)
  counts = np.zeros(n, np.int64)
  steps = []

  def accumulate(out, meta):
    real = meta["mask"] > 0
    means.add({"score": out["score"]}, meta["mask"])
    np.add.at(sums, meta["index"][real], out["probs"][real])
    np.add.at(counts, meta["index"][real], 1)
    steps.append(meta["position"][real].tolist())

  batches = pipeline.eval_batches(records, load, global_batch=GLOBAL_BATCH, num_threads=2,
                                  views=_views(name))
  try:
    num = evaluate.run(batches, _predict, accumulate, keys=("index", "label"))
  except sources.DeadInputError as e:
    return {"error": str(e), "loaded": sorted(load.loaded)}
  return {"num": num, "score": means.result()["score"], "count": means.count,
          "sums": sums.tolist(), "counts": counts.tolist(), "steps": steps,
          "loaded": sorted(load.loaded)}


def _expected(name: str) -> dict:
  """What the evaluation must find, computed directly (no batching, no processes)."""
  n, bad = SCENARIOS[name]
  good = [i for i in range(n) if i not in bad]
  xs = np.array([i + 0.37 * v[0] for i in good for v in (_views(name) or [(0.0,)])])
  return {"num": len(xs), "score": float(np.mean(_predict({"x": xs})["score"]))}


@pytest.mark.parametrize("name", ["plain", "skips", "borrow"])
def test_one_process_scores_every_usable_example_once(name):
  got = evaluate_scenario(name)
  want = _expected(name)
  assert got["num"] == got["count"] == want["num"]
  assert got["score"] == pytest.approx(want["score"], rel=1e-12)
  n, bad = SCENARIOS[name]
  v = len(_views(name) or [0])
  assert got["counts"] == [0 if i in bad else v for i in range(n)]
  assert got["loaded"] == sorted(list(range(n)) * v)  # each view loaded once
  positions = [p for s in got["steps"] for p in s]
  assert positions == sorted(positions) and len(positions) == want["num"]


def test_dead_split_names_the_reason():
  got = evaluate_scenario("dead")
  assert "evaluation split: no usable clip in its 3 entries" in got["error"]
  assert "not a readable video" in got["error"]


def test_two_processes_load_their_share_and_match_one_process(tmp_path):
  port = helpers.free_port()
  rs = helpers.wait_all(helpers.start_commands([
      [sys.executable, "-m", "tests.test_evaluate", str(port), str(i), str(tmp_path / f"p{i}.json")]
      for i in range(2)]), timeout=240)
  for r in rs:
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  got = [json.load(open(tmp_path / f"p{i}.json")) for i in range(2)]
  for name, (n, bad) in SCENARIOS.items():
    one = evaluate_scenario(name)
    if name == "dead":
      for g in got:
        assert "no usable clip" in g[name]["error"]
      continue
    for g in got:
      r = g[name]
      assert (r["num"], r["count"], r["counts"]) == (one["num"], one["count"], one["counts"])
      if name == "plain":  # no unusable clip: the very same global batches, sums bit for bit
        assert (r["steps"], r["score"], r["sums"]) == (one["steps"], one["score"], one["sums"])
      else:  # skipped clips regroup the batches: the same examples, float sums may round apart
        assert sorted(sum(r["steps"], [])) == sum(one["steps"], [])
        assert r["score"] == pytest.approx(one["score"], rel=1e-12)
        np.testing.assert_allclose(r["sums"], one["sums"], rtol=1e-12)
    # Each process loaded only its share (records i with i % 2 == process), every view once;
    # a process without any usable record borrows the first usable one for its padding.
    for p, g in enumerate(got):
      share = [i for i in range(n) if i % 2 == p]
      borrowed = [min(set(range(n)) - set(bad))] if all(i in bad for i in share) else []
      assert g[name]["loaded"] == sorted(share * len(_views(name) or [0]) + borrowed), (name, p)


def _worker(port: int, process_id: int, out: str) -> None:
  from cv.lib import distributed
  distributed.initialize(distributed.Settings(
      enabled=True, coordinator_address=f"127.0.0.1:{port}", num_processes=2,
      process_id=process_id, initialization_timeout_s=120, heartbeat_timeout_s=10,
      shutdown_timeout_s=15))
  result = {name: evaluate_scenario(name) for name in SCENARIOS}
  with open(out, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
