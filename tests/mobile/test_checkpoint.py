import os
import pickle

import pytest
import torch

from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from resflex.mobile.models import create_model

CLASSES = ["a", "b", "c"]


@pytest.fixture
def model():
    return create_model("tiny_cnn", "san", (32, 16), num_classes=3, meta_hidden=8)


def test_round_trip_restores_config_weights_and_outputs(model, tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", model, CLASSES, train_state={"epoch": 3})
    loaded, payload = load_checkpoint(path)
    assert loaded.config == model.config and payload["class_names"] == CLASSES
    assert payload["train_state"]["epoch"] == 3
    model.eval()
    x = model.example_input(16, batch_size=2)
    with model.at_resolution(16), loaded.at_resolution(16):
        assert torch.equal(model(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_truncated_and_corrupt_files_get_clear_errors(model, tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", model, CLASSES)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "resflex-checkpoint", "payload": Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="nothing in it was executed"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "raw.pkl")
    assert not marker.exists()


def test_foreign_or_mismatched_payloads_are_named(model, tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a resflex checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    path = save_checkpoint(tmp_path / "ck.pt", model, CLASSES)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        read_checkpoint(tmp_path / "v99.pt")
    payload["model_config"]["width"] = 2.0
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="class_names"):
        save_checkpoint(tmp_path / "x.pt", model, ["only-one"])


def test_failed_write_keeps_the_previous_checkpoint(model, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.pt", model, CLASSES, train_state={"epoch": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, CLASSES, train_state={"epoch": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["train_state"]["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
