"""The type stubs of the Rust extension (minillm/_minillm.pyi) say what the module really has:
mypy's stubtest compares them with the built module, name by name and argument by argument."""

import subprocess
import sys

import pytest


def test_the_stubs_match_the_extension():
    pytest.importorskip("mypy.stubtest")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases", "minillm._minillm"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_package_type_checks():
    pytest.importorskip("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy", "-p", "minillm"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
