"""Two-process (gloo, CPU) runs of UpdateRecorder for tests/test_capture.py.

Usage: python _capture_dist_worker.py {ddp,fsdp,all} PORT OUTDIR. Each rank writes
its results to OUTDIR; the test compares them in the parent process, so the
parent never initialises torch.distributed itself.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from adamdist.capture import UpdateRecorder
from adamdist.results import StatsAccumulator

WORLD = 2
STEPS = 4


def _model():
    torch.manual_seed(0)
    # odd leading dims: FSDP2 splits 5 rows as 3 + 2 and 3 rows as 2 + 1
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _batch(step, rank):
    gen = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(16, 7, generator=gen), torch.randn(16, 3, generator=gen)


def _train(model, opt, steps=STEPS):
    for step in range(steps):
        x, y = _batch(step, dist.get_rank())
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def ddp(rank, out):
    from torch.nn.parallel import DistributedDataParallel

    model = _model()
    ddp_model = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.999))
    rec0 = UpdateRecorder(opt, model, steps=STEPS, sample_size=10, bins=16)
    rec_all = UpdateRecorder(opt, model, steps=STEPS, sample_size=10, bins=16, all_ranks=True)
    with rec0, rec_all:
        # while attached: rank 0 carries both recorders' hooks, rank 1 only those of rec_all
        info = {"hooks_while_attached": len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks),
                "rec0_buffers": len(rec0._acc)}
        _train(ddp_model, opt)
    info.update({"plain_is_none": rec0.result() is None, "n_hooks": len(opt._optimizer_step_pre_hooks)})
    rec0.result(broadcast=True).save(os.path.join(out, f"ddp_broadcast_{rank}.npz"))
    rec_all.result().save(os.path.join(out, f"ddp_all_{rank}.npz"))
    with open(os.path.join(out, f"ddp_info_{rank}.json"), "w") as fh:
        json.dump(info, fh)


def fsdp(rank, out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = _model()
    mesh = init_device_mesh("cpu", (WORLD,))
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.999))
    names = [n for n, _ in model.named_parameters()]
    edges = np.linspace(-2, 2, 17)
    # Reference: gather the whole parameters around each step (collectives inside the hooks are fine:
    # every rank steps) and compute the statistics of the full update directly.
    ref = StatsAccumulator(names, [p.numel() for p in model.parameters()], STEPS, edges, sample_size=0)
    full = {}
    count = [0]

    @torch.no_grad()
    def pre(o, args, kwargs):
        full.update({n: p.full_tensor().clone() for n, p in model.named_parameters()})

    @torch.no_grad()
    def post(o, args, kwargs):
        lr = o.param_groups[0]["lr"]
        for j, (n, p) in enumerate(model.named_parameters()):
            u = (p.full_tensor() - full[n]) / lr
            ref.record(count[0], j, u)
            full[n] = u
        ref.set_step(count[0], count[0] + 1)
        full_updates.append({n: full[n].reshape(-1).double().numpy().copy() for n in names})
        count[0] += 1

    full_updates = []
    h = [opt.register_step_pre_hook(pre), opt.register_step_post_hook(post)]
    rec = UpdateRecorder(opt, model, steps=STEPS, sample_size=10, bins=edges, record_grad=True)
    with rec:
        _train(model, opt)
    for handle in h:
        handle.remove()
    stats = rec.result()
    stats.save(os.path.join(out, f"fsdp_{rank}.npz"))
    rec.result("grad").save(os.path.join(out, f"fsdp_grad_{rank}.npz"))
    ref.result().save(os.path.join(out, f"fsdp_ref_{rank}.npz"))
    # the full updates at the recorder's sampled (global) coordinates
    idx = rec.sample_indices
    np.savez(os.path.join(out, f"fsdp_refsample_{rank}.npz"),
             **{n: np.stack([u[n][idx[n]] for u in full_updates]) for n in names})


def main(rank, mode, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        # one spawn for both checks: starting two Python processes with torch costs more than the runs
        for run in {"ddp": [ddp], "fsdp": [fsdp], "all": [ddp, fsdp]}[mode]:
            run(rank, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.multiprocessing.spawn(main, args=(mode, port, out), nprocs=WORLD, join=True)
