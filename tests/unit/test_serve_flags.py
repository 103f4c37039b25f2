"""`tffreeze serve` refuses values that cannot mean anything (trial 10, finding 14: `--workers 0`
started a server with "0 worker(s)", `--drain-seconds -5` was taken)."""
import argparse

import pytest

from tffreeze_server.cli import add_arguments


def _parser():
    p = argparse.ArgumentParser(prog="tffreeze serve")
    add_arguments(p)
    return p


@pytest.mark.parametrize("flag,value,words", [
    ("--workers", "0", "give 1 or more"),
    ("--workers", "two", "is not a whole number"),
    ("--worker-max-tasks", "-1", "give 1 or more"),
    ("--max-graph-nodes", "0", "give 1 or more"),
    ("--max-function-depth", "0", "give 1 or more"),
    ("--drain-seconds", "-5", "0 or more"),
    ("--idle-exit", "0", "above 0"),
    ("--verify-seconds", "nan", "above 0"),
    ("--max-call-seconds", "inf", "above 0"),
    ("--port", "70000", "0 (a free one) to 65535"),
    ("--web-port", "-1", "0 (a free one) to 65535"),
])
def test_a_meaningless_value_is_refused_naming_the_flag(flag, value, words, capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args([flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument %s" % flag in err and words in err, err


def test_sensible_values_are_taken():
    args = _parser().parse_args(["--workers", "3", "--drain-seconds", "0", "--idle-exit", "0.5", "--port", "0"])
    assert (args.workers, args.drain_seconds, args.idle_exit, args.port) == (3, 0.0, 0.5, 0)


def test_serve_takes_no_abbreviated_flags():
    """Trial 13 (F09): `tffreeze serve --por 50443` was taken as --port (argparse abbreviation),
    while every client refuses abbreviations."""
    import pytest

    from tffreeze_server.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--por", "50443"])
    assert build_parser().parse_args(["--port", "50443"]).port == 50443
