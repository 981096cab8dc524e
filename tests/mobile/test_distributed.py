"""Distributed training on CPU (gloo, two processes on this machine).

One job of two ranks, started with the 'spawn' start method, runs both workloads below in turn (a
process start plus DDP's first-use import of torch._dynamo cost ~10 s per rank set on two cores, so
they are paid once). A rank writes what it holds to files in the job's folder, `<workload>.rank{r}.err`
with the traceback if the workload raised, and `<workload>.rank{r}.done` when it finished; the tests
make every assertion in the parent. A rank that fails or hangs fails the test of its workload: the
parent polls both ranks, kills the survivor as soon as one exits badly, and kills both after TIMEOUT_S.

SyncBatchNorm needs a GPU, so the gradient-parity workload uses fixed BN statistics (eval mode): each
sample's loss then depends on that sample alone, and DDP's averaged gradient over two equal shards is
exactly the gradient of the mean loss over the global batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch

from resflex.mobile.losses import create_loss
from resflex.mobile.models import create_model
from resflex.mobile.train import MultiResolutionStep, TrainConfig

WORLD = 2
TIMEOUT_S = 150.0
RESOLUTIONS = (32, 24, 16)


# --------------------------------------------------------------------------- harness


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, ports: dict[str, int], workdir: str) -> None:
    """Child entry point: run every workload in order on its own port; record success or the traceback."""
    torch.set_num_threads(1)
    workdir = Path(workdir)
    if os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for name, fn in WORKLOADS.items():
        # What torchrun would set for a 2-process job on this host.
        os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[name]))
        try:
            fn(rank, workdir)
        except BaseException:
            (workdir / f"{name}.rank{rank}.err").write_text(traceback.format_exc())
            raise  # the peer may be blocked in a collective: this job is over
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        (workdir / f"{name}.rank{rank}.done").touch()


def _run_job(workdir: Path) -> str:
    """Run all workloads on WORLD spawned ranks; never hangs. Returns how the ranks ended, for messages."""
    ctx = mp.get_context("spawn")
    ports = {name: _free_port() for name in WORKLOADS}
    procs = [ctx.Process(target=_rank_main, args=(r, ports, str(workdir)), daemon=True) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT_S
    timed_out = False
    try:
        while any(p.is_alive() for p in procs):
            if any(p.exitcode not in (None, 0) for p in procs):
                break  # a failed rank leaves its peer blocked in a collective: stop waiting for it
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
    return f"rank exit codes {[p.exitcode for p in procs]}" + (f", killed after {TIMEOUT_S:.0f} s" if timed_out else "")


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ddp")
    return workdir, _run_job(workdir)


def _finished(job, name: str) -> Path:
    """The job's folder if workload `name` finished on every rank; otherwise fail with the ranks' tracebacks."""
    workdir, ending = job
    errors = {r: (workdir / f"{name}.rank{r}.err") for r in range(WORLD)}
    errors = {r: f.read_text() for r, f in errors.items() if f.exists()}
    if errors:
        pytest.fail(f"workload {name!r} failed ({ending}):\n"
                    + "\n".join(f"--- rank {r} ---\n{tb}" for r, tb in errors.items()), pytrace=False)
    if not all((workdir / f"{name}.rank{r}.done").exists() for r in range(WORLD)):
        others = sorted(f.name for f in workdir.glob("*.err"))
        pytest.fail(f"workload {name!r} did not finish on every rank ({ending}; "
                    f"{'failed earlier: ' + ', '.join(others) if others else 'a rank hung or crashed'})",
                    pytrace=False)
    return workdir


# --------------------------------------------------------------------------- 1. train() under DDP


def _train_config(workdir: Path) -> TrainConfig:
    return TrainConfig(data="synthetic", arch="tiny_cnn", method="rsnet", resolutions=RESOLUTIONS, width=0.5,
                       epochs=1, batch_size=8, train_samples=64, val_samples=32, max_steps_per_epoch=3, workers=0,
                       out=str(workdir / "run"), progress=False, device="cpu")


def _train_rank(rank: int, workdir: Path) -> None:
    from resflex.mobile.data import TrainTransform, build_dataset, make_loader
    from resflex.mobile.train import train

    config = _train_config(workdir)
    model = train(config)
    assert torch.distributed.is_initialized() and torch.distributed.get_world_size() == WORLD
    # The shard this rank trained on: the same loader `train` built for epoch 0, under the same group.
    train_set = build_dataset(config.data, "train", TrainTransform(max(config.resolutions), seed=config.seed),
                              num_classes=config.num_classes, seed=config.seed, length=config.train_samples)
    loader = make_loader(train_set, config.batch_size, shuffle=True, workers=0, seed=config.seed, epoch=0,
                         drop_last=True)
    torch.save({"state_dict": model.state_dict(), "indices": list(loader.sampler),
                "sampler": type(loader.sampler).__name__}, workdir / f"train.rank{rank}.pt")


def test_two_ranks_hold_identical_weights(ddp_job):
    workdir = _finished(ddp_job, "train")
    config = _train_config(workdir)
    results = [torch.load(workdir / f"train.rank{r}.pt", weights_only=True) for r in range(WORLD)]
    sd0, sd1 = results[0]["state_dict"], results[1]["state_dict"]

    # Every parameter (shared convs, every private BN's γ/β, classifier) is bit-identical across ranks.
    model = create_model(config.arch, config.method, config.resolutions, config.width, config.num_classes)
    params = [name for name, _ in model.named_parameters()]
    assert sd0.keys() == sd1.keys() == model.state_dict().keys()
    differ = [name for name in params if not torch.equal(sd0[name], sd1[name])]
    assert not differ, f"parameters differ between ranks: {differ}"
    # Buffers: the BN step counters agree. Running mean/var are NOT compared: DDP broadcasts rank 0's buffers
    # at the start of each forward, so after the last step each rank holds stats updated on its own shard;
    # only rank 0's (the checkpoint's) matter.
    counters = [name for name in sd0 if name.endswith("num_batches_tracked")]
    assert counters and all(torch.equal(sd0[n], sd1[n]) and int(sd0[n]) == 3 for n in counters)

    # Training moved the weights away from the seeded initialisation `train` starts from.
    torch.manual_seed(config.seed)
    init = create_model(config.arch, config.method, config.resolutions, config.width, config.num_classes).state_dict()
    conv_weights = [n for n in params if sd0[n].ndim == 4]
    assert conv_weights
    assert all(not torch.allclose(sd0[n], init[n]) for n in conv_weights), "a conv weight did not change"

    # Rank 0 alone wrote the checkpoint (its weights = the returned model) and one metrics line.
    ckpt = torch.load(config.checkpoint_path, weights_only=True)
    assert all(torch.equal(ckpt["state_dict"][n], sd0[n]) for n in sd0)
    assert len(config.metrics_path.read_text().splitlines()) == config.epochs

    # The ranks trained on different shards: DistributedSampler gave them disjoint halves of the data set.
    assert [r["sampler"] for r in results] == ["DistributedSampler"] * WORLD
    i0, i1 = results[0]["indices"], results[1]["indices"]
    assert len(i0) == len(i1) == config.train_samples // WORLD
    assert not set(i0) & set(i1)
    assert sorted(i0 + i1) == list(range(config.train_samples))


# --------------------------------------------------------------------------- 2. DDP step == one big batch

GLOBAL_BATCH, STEPS = 8, 2


def _parity_setup() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=10)
    loss = create_loss("rsnet", len(RESOLUTIONS))
    model.eval()  # fixed BN statistics: per-sample losses, γ/β and convs still get gradients
    return model, loss


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (GLOBAL_BATCH,), generator=g)


def _train_steps(runner: torch.nn.Module, params: list, images: torch.Tensor, target: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for _ in range(STEPS):
        loss, _, _ = runner(images, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _state(model: torch.nn.Module, loss: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {f"model.{n}": p.detach().clone() for n, p in model.named_parameters()}
    out.update({f"loss.{n}": p.detach().clone() for n, p in loss.named_parameters()})
    return out


def _parity_rank(rank: int, workdir: Path) -> None:
    torch.distributed.init_process_group("gloo")  # env:// from the variables torchrun would set
    model, loss = _parity_setup()
    runner = torch.nn.parallel.DistributedDataParallel(MultiResolutionStep(model, loss))
    images, target = _global_batch()
    shard = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    _train_steps(runner, [*model.parameters(), *loss.parameters()], images[shard], target[shard])
    assert not model.training
    torch.save(_state(model, loss), workdir / f"parity.rank{rank}.pt")


def _single_process(images: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    model, loss = _parity_setup()
    _train_steps(MultiResolutionStep(model, loss), [*model.parameters(), *loss.parameters()], images, target)
    return _state(model, loss)


def test_ddp_step_matches_single_process_on_global_batch(ddp_job):
    workdir = _finished(ddp_job, "parity")
    ranks = [torch.load(workdir / f"parity.rank{r}.pt", weights_only=True) for r in range(WORLD)]
    images, target = _global_batch()
    expected = _single_process(images, target)
    only_rank0_shard = _single_process(images[: GLOBAL_BATCH // WORLD], target[: GLOBAL_BATCH // WORLD])
    initial = _state(*_parity_setup())
    assert "loss.alpha" in expected and len(expected) > 10

    for r, got in enumerate(ranks):
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4,
                                       msg=lambda m, name=name, r=r: f"rank {r}, {name}: {m}")
    assert all(torch.equal(ranks[0][n], ranks[1][n]) for n in expected), "ranks disagree"

    # The comparison can fail: the update is far above the tolerance, and training on one rank's shard
    # without averaging gradients lands measurably elsewhere.
    def moved(a, b):
        return max((a[n] - b[n]).abs().max().item() for n in a)

    assert moved(expected, initial) > 1e-2
    assert moved(expected, only_rank0_shard) > 1e-3

    # α barely moves in two steps (the resolutions' logits start nearly equal, so its gradient is tiny; the
    # step is ~1e-4 on α = 1, below the tolerance above): compare its displacement, to ~10 float32 ulps at 1.0.
    def alpha_step(state):
        return state["loss.alpha"] - initial["loss.alpha"]

    for r, got in enumerate(ranks):
        torch.testing.assert_close(alpha_step(got), alpha_step(expected), atol=1e-6, rtol=1e-3,
                                   msg=lambda m, r=r: f"rank {r}, step of α: {m}")
    assert alpha_step(expected).abs().max() > 2e-5
    assert (alpha_step(expected) - alpha_step(only_rank0_shard)).abs().max() > 2e-5


WORKLOADS = {"parity": _parity_rank, "train": _train_rank}  # run in this order, each on its own port
