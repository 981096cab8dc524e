import pytest

from resflex.cli.main import main

TINY = ["--arch", "tiny_cnn", "--resolutions", "32,24,16", "--width", "0.5", "--epochs", "1", "--batch-size", "16",
        "--train-samples", "64", "--val-samples", "32", "--workers", "0", "--no-progress"]


def test_train_then_eval_prints_the_accuracy_matrix(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    ck = str(tmp_path / "run" / "checkpoint.pt")
    code = main(["eval", ck, "--resolutions", "32,28,24,20,16", "--bn", "interpolate", "--val-samples", "32",
                 "--workers", "0", "--json", str(tmp_path / "m.json")])
    assert code == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert header.split("|")[2:-1] == [f"{r:>7} " for r in (32, 28, 24, 20, 16)]
    row = next(line for line in out.splitlines() if "(rsnet)" in line)
    assert row.count("*") == 3  # the three training resolutions are marked
    assert (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--arch", "vgg16"], "expected one of: efficientnet_lite0, mobilenet_v2, "
         "mobilenet_v3_large, mobilenet_v3_small, mobilenet_v4_conv_small, regnet_x_200mf, resnet18, resnet50, "
         "tiny_cnn"),
        (["train", "--method", "slim"], "expected one of: rsnet, san, single"),
        (["train", "--resolutions", "64,64"], "duplicate"),
        (["train", "--resolutions", "64,0"], "positive integers"),
        (["eval", "missing.pt"], "checkpoint not found: missing.pt"),
        (["train", "--data", "/nonexistent/folder", "--arch", "tiny_cnn"], "/nonexistent/folder"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path / "r")] if argv[0] == "train" else [])]) == 2
    assert message in capsys.readouterr().err


def test_unknown_bn_mode_lists_valid_names(tmp_path, capsys):
    assert main(["train", *TINY, "--max-steps-per-epoch", "1", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run" / "checkpoint.pt"), "--bn", "bicubic"]) == 2
    assert "expected one of: nearest, interpolate, recalibrate" in capsys.readouterr().err


def test_malformed_resolution_list_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resolutions", "64,abc"])
    assert exc.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_eval_with_recalibrated_bn(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    code = main(["eval", str(tmp_path / "run" / "checkpoint.pt"), "--resolutions", "28,20", "--bn", "recalibrate",
                 "--calib-samples", "32", "--val-samples", "32", "--workers", "0"])
    assert code == 0
    assert "BN recalibrate" in capsys.readouterr().out


def test_help_shows_every_default():
    """`resflex <command> --help` states the default of every option that has one."""
    import argparse

    from resflex.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if action.option_strings and action.default not in (None, argparse.SUPPRESS) and action.dest != "help":
                shown = f"(default: {action.default})" if not isinstance(action.default, tuple) else "(default:"
                assert shown in text, f"resflex {name} --help: {action.option_strings[0]} does not show its default"
