"""A Lightning fit under strategy="ddp" on two CPU processes, with the callback (run by test_integrations_lightning).

Lightning's launcher starts the second rank by running this script again. Each rank writes what it saw
to OUT/rank{r}.json; rank 0 checks the recorded updates against its own snapshot-and-difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import lightning.pytorch as L
from test_integrations_lightning import LR, ManualDifference, Tiny, _data

from adamdist.integrations.lightning import UpdateDistributionCallback


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    manual = ManualDifference()
    callback = UpdateDistributionCallback(steps=6, bins=40, sample_size=50)
    trainer = L.Trainer(default_root_dir=str(out), accelerator="cpu", devices=2, strategy="ddp", max_steps=6,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[callback, manual])
    trainer.fit(model, _data())
    rank = trainer.global_rank
    stats = callback.result()
    report = {"rank": rank, "world_size": trainer.world_size, "result_is_none": stats is None,
              "optimizer_steps": len(manual.updates)}
    if stats is not None:
        errors = []
        indices = callback._set.recorders[0].sample_indices
        for i, update in enumerate(manual.updates):
            for j, name in enumerate(stats.names):
                u = update[name].reshape(-1).numpy()
                errors.append(abs(stats.var[i, j] - u.var()) / u.var())
                errors.append(float(np.max(np.abs(stats.samples[name][i] - u[indices[name]]))))
        report.update(steps=stats.steps.tolist(), names=list(stats.names), max_error=max(errors),
                      world_size_recorded=stats.metadata.get("world_size"), lr=LR)
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    report["weights_sum"] = float(weights.double().sum())
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
