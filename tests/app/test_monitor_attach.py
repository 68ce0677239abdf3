"""The Monitor follows a real headless `workbench train` running in another process: the curves grow
while it trains, its status goes from running to finished (a tiny pretrain, ~5 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.app.test_monitor_pane import ROOT, app_on, header_text, pane, points


async def test_attach_to_a_real_headless_workbench_train(tmp_path, small_tok):
    out = tmp_path / "pretrain"
    cmd = [sys.executable, "-c", "from app.cli import main; main()", "train", "pretrain",
           "--config", "configs/pretrain/tiny.yaml", "--out", str(out), f"tokenizer={small_tok}",
           "model={n_layers: 2}", "max_steps=60", "seq_len=64", "batch_size=4", "eval_every=20", "save_every=0",
           "tensorboard=false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        app = app_on(out)
        async with app.run_test(size=(100, 30)) as pilot:
            seen, running_seen = [], False
            end = time.monotonic() + 60
            while time.monotonic() < end and not (seen and seen[-1] == 60 and "finished" in header_text(app)):
                await pilot.pause(0.2)
                seen.append(points(app) if "loss" in pane(app)._charts else 0)
                if "running" in header_text(app):
                    running_seen = True
            assert proc.wait(30) == 0, proc.stderr.read().decode()
            assert seen[-1] == 60 and "finished" in header_text(app)
            assert any(0 < n < 60 for n in seen), seen  # steps arrived while it trained
            assert running_seen
            assert {"loss", "lr", "grad_norm", "tokens_per_s", "moe_balance"} <= set(pane(app)._charts)
    finally:
        if proc.poll() is None:
            proc.kill()
