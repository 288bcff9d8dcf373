"""The GPU benchmark runs (smoke mode, on the CPU): what a session with a GPU will run, it can run."""

import json
import math
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def test_gpu_benchmark_smoke_mode(tmp_path):
    out = tmp_path / "gpu.json"
    process = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "gpu.py"), "--smoke", "--models", "resnet18", "nin",
                              "--json", str(out)],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"]
    rows = report["rows"]
    assert [(r["model"], r["measure"]) for r in rows] == [
        ("resnet18", "train"), ("resnet18", "predict"), ("nin", "train"), ("nin", "predict")]
    for row in rows:
        assert row["float32"] > 0 and row["mixed_float16"] > 0
        assert math.isclose(row["ratio"], row["mixed_float16"] / row["float32"])
    assert "| resnet18 | 32 | 2 | train |" in process.stdout


def test_onednn_benchmark_smoke_mode():
    """Each setting runs in its own process, and each process really runs with the setting it was given."""
    process = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "onednn.py"), "--smoke", "--repeats", "1"],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.splitlines()
    assert lines[0] == "| measure | oneDNN off | oneDNN on | on / off speed |"
    assert any(line.startswith("| resnet18 training at 32x32, img/s |") for line in lines)


def test_segmentation_benchmark_smoke_mode():
    """The TFLite rows of the phone-sized heads (sizes that shrink with int8, latencies, pixel agreement) and a mean
    IoU row."""
    process = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "segmentation.py"), "--smoke"],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in process.stdout.splitlines()
            if line.startswith("| unet") or line.startswith("| deeplab_v3")]
    assert [row[0].strip() for row in rows[:2]] == ["unet on mobilenet_v1_025", "deeplab_v3 on mobilenet_v1_025"]
    for row in rows[:2]:
        keras_ms, f32_mb, i8_mb, size_ratio, f32_ms, i8_ms, _, agreement = map(float, row[1:])
        assert 0 < i8_mb < f32_mb and abs(size_ratio - i8_mb / f32_mb) < 0.01
        assert keras_ms > 0 and f32_ms > 0 and i8_ms > 0 and 0 <= agreement <= 1
    # the mIoU part: one training run with the defaults, scored as metrics.json scores it
    trained = [row for row in rows if row[1].strip() == "mobilenet_v1_025"]
    assert len(trained) == 1 and trained[0][0].strip() == "unet", process.stdout[-2000:]
    mean_iou, photo, strokes, seconds = map(float, trained[0][2:])
    assert mean_iou == pytest.approx((photo + strokes) / 2, abs=1e-3) and 0 <= strokes <= 1 and seconds > 0
