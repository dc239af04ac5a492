"""ONNX export: onnxruntime gives the same codes and actions as PyTorch (within 1e-4)."""

import numpy as np
import pytest
import torch

from amplify_core.checkpoint import load_model, save_checkpoint
from amplify_core.configs import ForwardConfig, InverseConfig, VisionConfig
from amplify_core.export import export_policy
from amplify_core.onnx_policy import OnnxPolicy, providers
from amplify_core.forward_dynamics import ForwardDynamics
from amplify_core.inverse_dynamics import InverseDynamics
from amplify_core.normalization import Normalizer

pytest.importorskip("onnxruntime")
VISION = VisionConfig(image_size=64, width=8)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    fwd = ForwardDynamics(ForwardConfig(hidden=64, layers=2, heads=4, text_dim=16, vision=VISION), 3, 1920, 15)
    inv = InverseDynamics(InverseConfig(hidden=64, layers=2, heads=4, vision=VISION), 3, 1920, 15)
    norm = Normalizer(np.arange(7.0), np.full(7, 2.0)).to_dict()
    meta = {"views": ["front", "side", "corner"], "image_shape": [3, 64, 64]}
    save_checkpoint(d / "forward.pt", fwd, {**meta, "text_encoder": "minilm"})
    save_checkpoint(d / "inverse.pt", inv, {**meta, "proprio_norm": norm, "action_norm": norm, "use_codes": True})
    return d, fwd.eval(), inv.eval()


def test_onnxruntime_matches_pytorch(checkpoints, tmp_path):
    d, fwd, inv = checkpoints
    export_policy(d / "inverse.pt", d / "forward.pt", tmp_path)
    runner = OnnxPolicy(tmp_path)
    assert runner.providers[-1] == "CPUExecutionProvider"
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (1, 3, 3, 64, 64), dtype=torch.uint8, generator=g)
    text = torch.randn(1, 16, generator=g)
    with torch.no_grad():
        codes = fwd.generate(images, text)
        start_logits, _ = fwd.start(fwd.conditioning(images, text))
    ort_start = runner.start.run(None, {"images": images.numpy(), "text": text.numpy()})[0]
    np.testing.assert_allclose(ort_start, start_logits.numpy(), atol=1e-4, rtol=1e-4)
    ort_codes = runner.generate(images.numpy(), text.numpy())
    np.testing.assert_array_equal(ort_codes, codes.numpy())
    proprio = np.linspace(-1, 1, 7).astype(np.float32)
    with torch.no_grad():
        mean, _ = inv(images, torch.from_numpy(runner.proprio_norm.normalize(proprio)[None]), codes)
    chunk = runner.predict_chunk(images.numpy(), proprio, text.numpy())
    np.testing.assert_allclose(chunk, runner.action_norm.unnormalize(mean[0].numpy()), atol=1e-4, rtol=1e-4)


def test_a_node_loads_only_its_own_graphs(checkpoints, tmp_path):
    d, fwd, _ = checkpoints
    export_policy(d / "inverse.pt", d / "forward.pt", tmp_path)
    forward_only = OnnxPolicy(tmp_path, parts=("forward",))
    inverse_only = OnnxPolicy(tmp_path, parts=("inverse",))
    assert forward_only.inverse is None and forward_only.start is not None and forward_only.step_session is not None
    assert inverse_only.inverse is not None and inverse_only.start is None and inverse_only.step_session is None
    images = torch.randint(0, 256, (1, 3, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    text = torch.randn(1, 16)
    with torch.no_grad():
        np.testing.assert_array_equal(forward_only.generate(images.numpy(), text.numpy()), fwd.generate(images, text).numpy())
    with pytest.raises(ValueError, match="forward graphs were not loaded"):
        inverse_only.generate(images.numpy(), text.numpy())
    with pytest.raises(ValueError, match="inverse graph was not loaded"):
        forward_only.predict_chunk(images.numpy(), np.zeros(7, np.float32), text.numpy())
    with pytest.raises(ValueError, match="parts must be"):
        OnnxPolicy(tmp_path, parts=("tokenizer",))


def test_provider_preference_puts_gpu_first():
    assert providers(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == \
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no policy.json"):
        OnnxPolicy(tmp_path)


def test_policy_benchmark_prints_every_runtime_its_ratios_and_the_breakdown():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "training.benchmark_policy", "--configs", "tiny", "--repeats", "1",
                          "--rounds", "1", "--threads", "1"], capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("tiny ") and "ms" in line).split()
    no_cache, cache, onnx = (float(v.rstrip("ms")) for v in row[2:5])
    assert all(v > 0 for v in (no_cache, cache, onnx))
    # the printed ratios are the printed latencies' ratios
    assert float(row[5].rstrip("x")) == pytest.approx(no_cache / cache, rel=0.02)
    assert float(row[6].rstrip("x")) == pytest.approx(cache / onnx, rel=0.02)
    assert "each runtime in its own process" in out
    assert "decoding step" in out and "if the decoding steps cost nothing" in out and "MB of decoder weights once" in out
    assert "tiny step <= 25 ms: onnxruntime" in out and "onnxruntime >= 1.5x over eager (KV cache), tiny" in out


def test_an_export_that_fails_leaves_the_previous_one_and_a_mixed_folder_is_refused(checkpoints, tmp_path):
    import shutil
    import subprocess
    import sys

    d, _, _ = checkpoints
    out = tmp_path / "onnx"
    (tmp_path / "onnx").mkdir()
    (out / "notes.txt").write_text("the user's own file")  # exports share the folder with other files
    export_policy(d / "inverse.pt", d / "forward.pt", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad_forward.pt"
    bad.write_bytes((d / "forward.pt").read_bytes()[:1000])  # truncated
    run = subprocess.run([sys.executable, "-m", "training.export_onnx", "--inverse", str(d / "inverse.pt"),
                          "--forward", str(bad), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert str(bad) in line and "left as it was" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx.")]  # the staging folder is gone
    OnnxPolicy(out)  # still the complete previous export

    # a folder whose graphs come from two exports: refused at load, naming the graph
    other = tmp_path / "other"
    export_policy(d / "inverse.pt", d / "forward.pt", other)
    torch.manual_seed(5)
    inv2 = load_model(d / "inverse.pt", "inverse")
    for p in inv2[0].parameters():
        p.data.add_(0.01)
    save_checkpoint(tmp_path / "inverse2.pt", inv2[0], inv2[1])
    export_policy(tmp_path / "inverse2.pt", d / "forward.pt", other)
    shutil.copy(other / "inverse.onnx", out / "inverse.onnx")
    with pytest.raises(ValueError, match=r"inverse.onnx: not the graph this export wrote .* mixes exports"):
        OnnxPolicy(out)
    OnnxPolicy(out, parts=("forward",))  # the forward graphs are still this export's own
    assert (out / "notes.txt").read_text() == "the user's own file"
