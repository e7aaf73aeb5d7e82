"""`torchrun --nproc_per_node 2 -m edgeconv.cli train`: gloo DDP on CPU, ranks stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def test_torchrun_two_cpu_processes_stay_in_sync(tmp_path):
    from edgeconv.train.checkpoint import load_checkpoint, model_from_checkpoint
    from edgeconv.train.loop import CHECKSUM_ENV, state_checksum

    out, sums = tmp_path / "run", tmp_path / "sums"
    env = dict(os.environ, OMP_NUM_THREADS="1", **{CHECKSUM_ENV: str(sums)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edgeconv.cli", "train", "--input-size", "32", "--tvconv-inter-channels", "8",
           "--tvconv-inter-layers", "1", "--identities", "8", "--images-per-identity", "4",
           "--epochs", "2", "--batch-size", "16", "--val-pairs", "40", "--threads", "1",
           "--no-progress", "-o", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((sums / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["epoch"] for r in ranks] == [2, 2]
    # parameters (backbone, TVConv affinity maps + generators, AM-Softmax head) and BN buffers
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    # rank 0 alone wrote the run; its checkpoint holds exactly the weights both ranks have
    ckpt = load_checkpoint(out / "last.ckpt")
    assert ckpt["training"]["world_size"] == 2 and ckpt["training"]["epoch"] == 2
    assert state_checksum(model_from_checkpoint(ckpt)) == ranks[0]["model_checksum"]
    # one log, not two: only rank 0 prints epoch lines
    assert res.stderr.count("epoch 2/2") == 1
    assert res.stdout.count("done: 2 epoch(s)") == 1
    # the weights moved: training happened
    from edgeconv.models import create_model

    torch.manual_seed(0)
    init = create_model("mbv2_x0_1", op="tvconv", input_size=32,
                        op_kwargs={"inter_channels": 8, "inter_layers": 1})
    assert state_checksum(init) != ranks[0]["model_checksum"]
