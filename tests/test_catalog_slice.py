"""GeoSlice: validation, canonical JSON round-trips, and a hash equal across processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

from georax.catalog import GeoSlice, SliceError, canonical_crs, canonical_time

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "bounds": [400000.0, 4590000.0, 400640.0, 4590320.0],
    "crs": "EPSG:32630",
    "shape": [32, 64],
    "time": ["2024-06-01T10:30:00Z", "2024-06-01T10:30:00Z"],
    "bands": ["B04", "B08"],
    "uri": "/data/scene_000.tif",
    "id": "scene_000",
}


def test_normalised_fields_and_derived_grid() -> None:
    wkt = CRS.from_epsg(32630).to_wkt()
    s = GeoSlice(
        (400000, 4590000, 400640, 4590320), wkt, (32, 64), time="2024-06-01T12:30:00+02:00"
    )
    assert s.crs == "EPSG:32630"  # WKT of an EPSG CRS -> its code
    assert s.bounds == (400000.0, 4590000.0, 400640.0, 4590320.0)
    assert all(isinstance(v, float) for v in s.bounds)
    assert s.time == ("2024-06-01T10:30:00Z", "2024-06-01T10:30:00Z")  # UTC, one instant
    assert s.resolution == (10.0, 10.0)
    assert tuple(s.transform)[:6] == (10.0, 0.0, 400000.0, 0.0, -10.0, 4590320.0)
    assert s.grid.shape == (32, 64) and s.grid.crs == "EPSG:32630"
    assert canonical_crs(4326) == canonical_crs("epsg:4326") == "EPSG:4326"
    assert canonical_time(("2024-06-01", "2024-06-02")) == (
        "2024-06-01T00:00:00Z",
        "2024-06-02T00:00:00Z",
    )


def test_dict_round_trip_is_canonical() -> None:
    s = GeoSlice.from_dict(BASE)
    assert s.to_dict() == BASE
    assert GeoSlice.from_dict(json.loads(s.to_json())) == s
    # key order and equivalent spellings do not change the JSON nor the hash
    shuffled = dict(reversed(list(BASE.items())))
    shuffled["crs"] = "epsg:32630"
    shuffled["shape"] = [32.0, 64.0]
    other = GeoSlice.from_dict(shuffled)
    assert other.to_json() == s.to_json() and other.hash == s.hash
    assert s.to_json() == json.dumps(BASE, sort_keys=True, separators=(",", ":"))


def test_hash_equal_in_a_fresh_process() -> None:
    s = GeoSlice.from_dict(BASE)
    code = (
        "import json, sys; from georax.catalog import GeoSlice; "
        "print(GeoSlice.from_dict(json.loads(sys.argv[1])).hash)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(BASE)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == s.hash and len(s.hash) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"bounds": [400000.0, 4590000.0, 400640.0, 4590330.0]},
        {"crs": "EPSG:32631"},
        {"shape": [32, 32]},
        {"time": ["2024-06-01T10:30:00Z", "2024-06-01T10:30:01Z"]},
        {"bands": ["B08", "B04"]},
        {"uri": "/data/scene_001.tif"},
        {"id": "scene_001"},
        {"time": None},
    ],
)
def test_every_field_changes_the_hash(change: dict) -> None:
    assert GeoSlice.from_dict({**BASE, **change}).hash != GeoSlice.from_dict(BASE).hash


def test_resolution_instead_of_shape() -> None:
    s = GeoSlice.from_bounds(BASE["bounds"], "EPSG:32630", resolution=10.0)
    assert s.shape == (32, 64)
    assert GeoSlice.from_dict({**BASE, "shape": None, "resolution": [10, 10]}).shape == (32, 64)
    with pytest.raises(SliceError) as e:
        GeoSlice.from_bounds(BASE["bounds"], "EPSG:32630", resolution=10.0, shape=(32, 32))
    assert e.value.field == "shape" and "disagrees" in str(e.value)
    with pytest.raises(SliceError) as e:
        GeoSlice.from_bounds(BASE["bounds"], "EPSG:32630", resolution=3.0)
    assert e.value.field == "resolution" and "whole pixels" in str(e.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bounds": [1.0, 2.0, 0.0, 3.0]}, "bounds"),
        ({"bounds": [0.0, 0.0, float("nan"), 1.0]}, "bounds"),
        ({"bounds": [0.0, 0.0, 1.0]}, "bounds"),
        ({"bounds": "0,0,1,1"}, "bounds"),
        ({"crs": "EPSG:999999"}, "crs"),
        ({"crs": None}, "crs"),
        ({"shape": [0, 10]}, "shape"),
        ({"shape": [10.5, 10]}, "shape"),
        ({"shape": [2**21, 10]}, "shape"),
        ({"shape": [True, 10]}, "shape"),
        ({"time": ["2024-06-02", "2024-06-01"]}, "time"),
        ({"time": "yesterday"}, "time"),
        ({"time": ["2024-06-01"]}, "time"),
        ({"bands": ["B04", "B04"]}, "bands"),
        ({"bands": "B04"}, "bands"),
        ({"uri": ""}, "uri"),
        ({"id": 7}, "id"),
    ],
)
def test_inconsistent_slices_are_refused(change: dict, field: str) -> None:
    with pytest.raises(SliceError) as e:
        GeoSlice.from_dict({**BASE, **change})
    assert e.value.field == field
    assert f"GeoSlice.{field}" in str(e.value)


def test_from_dict_refuses_unknown_keys_and_non_mappings() -> None:
    with pytest.raises(SliceError, match="unknown keys"):
        GeoSlice.from_dict({**BASE, "payload": [1, 2]})
    with pytest.raises(SliceError, match="needs a mapping"):
        GeoSlice.from_dict([("bounds", BASE["bounds"])])  # type: ignore[arg-type]
    with pytest.raises(SliceError, match=r"GeoSlice\.crs: is missing"):
        GeoSlice.from_dict({"bounds": BASE["bounds"], "shape": [1, 1]})


def test_frozen_and_replace_validates() -> None:
    s = GeoSlice.from_dict(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.id = "other"  # type: ignore[misc]
    assert s.replace(id="other").id == "other"
    with pytest.raises(SliceError):
        s.replace(shape=(0, 1))


coord = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    left=coord,
    bottom=coord,
    width=st.floats(1e-3, 1e5),
    height=st.floats(1e-3, 1e5),
    h=st.integers(1, 5000),
    w=st.integers(1, 5000),
    day=st.integers(0, 3650),
)
def test_round_trip_property(
    left: float, bottom: float, width: float, height: float, h: int, w: int, day: int
) -> None:
    bounds = (left, bottom, left + width, bottom + height)
    if not (bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        return  # the sum rounded back to the start: not a box
    t = dt.datetime(2000, 1, 1) + dt.timedelta(days=day, seconds=day * 7)
    s = GeoSlice(bounds, "EPSG:3857", (h, w), time=t)
    again = GeoSlice.from_dict(json.loads(s.to_json()))
    assert again == s and again.hash == s.hash
    assert again.bounds == bounds  # floats survive JSON exactly
