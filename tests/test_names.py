"""NAMES.md (seed name -> georax name) must only point at names that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import georax as gx

NAMES = Path(__file__).resolve().parents[1] / "NAMES.md"
_BUILT = NAMES.read_text().split("## Not built yet")[0]
# `gx.a.b.C` possibly followed by (...) or .method(); stop at anything that is not a dotted name
_REFS = sorted(set(re.findall(r"\bgx\.[A-Za-z_][\w.]*[A-Za-z_0-9]", _BUILT)))


@pytest.mark.parametrize("ref", _REFS)
def test_every_georax_name_in_names_md_exists(ref: str) -> None:
    obj = gx
    for part in ref.split(".")[1:]:
        assert hasattr(obj, part), f"NAMES.md mentions {ref}, but {part!r} is missing"
        obj = getattr(obj, part)


def test_names_md_covers_the_seed_stand_ins() -> None:
    seeds = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip("shared/seeds is not next to this checkout")
    stand_ins = set()
    for f in seeds.glob("*.txt"):
        stand_ins |= set(re.findall(r"class (_Fake\w+|_RandomFlip)\b", f.read_text()))
    assert stand_ins, "no stand-ins found: the seed format changed"
    missing = {s for s in stand_ins if s not in NAMES.read_text()}
    # stand-ins of things that are not operators of ours (fake models) are mapped by ModelOp
    missing -= {"_FakeUNet", "_FakeUQModel", "_FakeCropClassifier"}
    assert not missing, f"stand-ins without a georax name in NAMES.md: {sorted(missing)}"


def test_every_public_error_is_a_georax_error() -> None:
    """``except gx.errors.GeoraxError`` catches every error type georax exports."""
    names = [n for n in gx.errors.__all__ if n != "GeoraxError"]
    assert len(names) > 20
    for name in names:
        assert issubclass(getattr(gx.errors, name), gx.errors.GeoraxError), name
