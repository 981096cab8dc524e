"""What makes a Core ML export cheaper without changing it (`resflex.convert.backends.coreml.common`): program
validation once per pass pipeline, and collections that skip the objects alive before the export."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("coremltools")

from resflex.convert.backends.coreml.common import (  # noqa: E402
    coremltools,
    gc_skips_existing,
    validated_once_per_pipeline,
)


def _program():
    coremltools()
    from coremltools.converters.mil.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))])
    def prog(x):
        return mb.sigmoid(x=mb.relu(x=x))

    return prog


def _pipeline(*passes: str):
    from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipeline

    pipeline = PassPipeline.EMPTY
    for name in passes:
        pipeline.append_pass(name)
    return pipeline


@pytest.fixture(scope="module")
def unlink_pass():
    """A pass that leaves the program inconsistent: sigmoid still reads relu's output, which no longer lists it."""
    coremltools()
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.converters.mil.mil.passes.pass_registry import register_pass

    @register_pass(namespace="resflex_test", override=True)
    class unlink_child(AbstractGraphPass):
        def apply(self, prog):
            sigmoid = prog.functions["main"].find_ops(op_type="sigmoid")[0]
            sigmoid.x.remove_child_op(sigmoid)

    return "resflex_test::unlink_child"


def test_validated_once_per_pipeline_and_restored(monkeypatch):
    from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipelineManager
    from coremltools.converters.mil.mil.program import Program

    raw, validate = PassPipelineManager.__dict__["apply_pipeline"], Program.validate
    calls = []

    def counted(prog, check_essential_scope=False):
        calls.append(check_essential_scope)
        return validate(prog, check_essential_scope=check_essential_scope)

    monkeypatch.setattr(Program, "validate", counted)
    passes = ("common::dead_code_elimination", "common::noop_elimination", "common::const_elimination")
    PassPipelineManager.apply_pipeline(_program(), _pipeline(*passes))
    assert len(calls) == 1 + len(passes)  # coremltools: before the pipeline and after every pass
    calls.clear()
    with validated_once_per_pipeline(), validated_once_per_pipeline():  # nested: one patch
        PassPipelineManager.apply_pipeline(_program(), _pipeline(*passes))
    assert calls == [False]  # once, after the last pass
    assert PassPipelineManager.__dict__["apply_pipeline"] is raw and Program.validate is counted


def test_an_inconsistent_program_still_raises(unlink_pass):
    from coremltools.converters.mil.mil.block import InvalidBlockStateError
    from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipelineManager

    for deferred in (False, True):
        with validated_once_per_pipeline() if deferred else gc_skips_existing():
            with pytest.raises(InvalidBlockStateError):
                PassPipelineManager.apply_pipeline(_program(), _pipeline(unlink_pass, "common::noop_elimination"))


def test_gc_skips_existing():
    assert gc.get_freeze_count() == 0
    with gc_skips_existing():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with gc_skips_existing():  # already frozen: left alone
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0
