"""The FastAPI app of georax.serve, in process: every endpoint against a direct computation.

One app per module (start-up prices and compiles its pipelines); requests go through
``fastapi.testclient.TestClient`` (the real ASGI app, middlewares and worker pools included).
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from rio_tiler.io import Reader

import georax as gx
from _serve_support import NDVI, SAFE_YAML, SIZE, services, write_data
from georax.errors import ConfigError, ShapeError, UntrustedTargetError
from georax.serve import create_app, load_services
from georax.serve.errors import RequestError
from georax.serve.tiles import TMS, pack_rgba, transparent_png
from georax.serve.work import WorkPool

ALLOWED = gx.registry.public_operators()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    write_data(root)
    return root


@pytest.fixture(scope="module")
def client(root: Path) -> Any:
    app = create_app(services(root, uploads={"max_pipelines": 3}))
    with TestClient(app) as c:
        yield c


def _metric(c: TestClient, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _ndvi_direct(path: Path) -> gx.GeoTensor:
    pipe = gx.loads_yaml(gx.dumps_yaml(gx.from_config(NDVI)), allowed=ALLOWED)
    return pipe(gx.io.read(path, dtype="float32"))


# ---------------------------------------------------------------------- pipelines
def test_pipelines_lists_every_name_with_its_config_hash(client: TestClient) -> None:
    expected = gx.config_hash(gx.from_config(NDVI))
    assert client.get("/pipelines").json() == {"ndvi": expected}


def test_describe_returns_the_config_and_both_hashes(client: TestClient) -> None:
    r = client.get("/pipelines/ndvi")
    body = r.json()
    op = gx.from_config(body["config"])
    assert gx.config_hash(op) == body["config_hash"] == r.headers["x-georax-config-hash"]
    assert body["pipeline_digest"] == gx.pipeline_digest(op)
    assert body["inputs"][0]["shape"] == [7, SIZE, SIZE]


def test_unknown_pipeline_is_404_json(client: TestClient) -> None:
    r = client.post("/process/nope", json={"path": "scenes/s2.tif"})
    assert r.status_code == 404
    assert r.json()["error"] == "UnknownPipeline"


# ---------------------------------------------------------------------- /process
def test_process_upload_returns_the_pipelines_output_as_a_cog(
    client: TestClient, root: Path, tmp_path: Path
) -> None:
    src = root / "data" / "s2.tif"
    r = client.post("/process/ndvi", files={"file": ("s2.tif", src.read_bytes())})
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    assert r.headers["x-georax-config-hash"] == client.get("/pipelines").json()["ndvi"]
    (tmp_path / "o.tif").write_bytes(r.content)
    got = gx.io.read(tmp_path / "o.tif")
    want = _ndvi_direct(src)
    assert got.transform == want.transform and got.crs == want.crs
    np.testing.assert_allclose(np.asarray(got.values), np.asarray(want.values), equal_nan=True)
    written = root / "out" / r.headers["x-georax-output"]
    assert written.read_bytes() == r.content  # the COG is kept under the output root


def test_process_raw_tiff_body_equals_the_multipart_upload(client: TestClient, root: Path) -> None:
    data = (root / "data" / "s2b.tif").read_bytes()
    a = client.post("/process/ndvi", files={"file": ("x.tif", data)})
    b = client.post("/process/ndvi", content=data, headers={"content-type": "image/tiff"})
    assert a.status_code == b.status_code == 200
    assert a.headers["x-georax-output"] == b.headers["x-georax-output"]  # content-addressed


def test_process_path_with_bounds_returns_stats_of_the_window(
    client: TestClient, root: Path
) -> None:
    src = root / "data" / "s2.tif"
    left, bottom, right, top = gx.io.info(src).bounds
    bounds = [left, bottom, (left + right) / 2, (bottom + top) / 2]
    r = client.post("/process/ndvi?stats=true", json={"path": "scenes/s2.tif", "bounds": bounds})
    assert r.status_code == 200, r.text
    body = r.json()
    want = np.asarray(_ndvi_direct(src).values)[0, SIZE // 2 :, : SIZE // 2]
    stats = body["stats"][0]
    assert body["shape"] == [1, SIZE // 2, SIZE // 2]
    assert stats["valid"] == int(np.isfinite(want).sum())
    assert stats["mean"] == pytest.approx(float(np.nanmean(want)), rel=1e-5)
    assert stats["max"] == pytest.approx(float(np.nanmax(want)), rel=1e-6)
    assert body["config_hash"] and body["pipeline_digest"]


def test_declared_shapes_never_compile_and_a_new_one_compiles_once(
    client: TestClient, root: Path
) -> None:
    before = _metric(client, "georax_compilations_total", pipeline="ndvi")
    for name in ("s2.tif", "s2b.tif"):  # declared shape, two grids: no compile
        assert client.post("/process/ndvi", json={"path": f"scenes/{name}"}).status_code == 200
    assert _metric(client, "georax_compilations_total", pipeline="ndvi") == before
    for name in ("s2.tif", "s2b.tif"):  # a new shape (32 x 64) on two grids: one compile
        left, bottom, right, top = gx.io.info(root / "data" / name).bounds
        quarter = [left, bottom, left + (right - left) / 2, bottom + (top - bottom) / 4]
        body = {"path": f"scenes/{name}", "bounds": quarter}
        assert client.post("/process/ndvi", json=body).status_code == 200
    assert _metric(client, "georax_compilations_total", pipeline="ndvi") == before + 1


def test_process_writes_nothing_outside_the_output_root(client: TestClient, root: Path) -> None:
    def files() -> set[Path]:
        return {p for p in root.rglob("*") if p.is_file()}

    before = files()
    data = (root / "data" / "s2.tif").read_bytes()
    assert client.post("/process/ndvi", files={"file": ("a.tif", data)}).status_code == 200
    junk = client.post(
        "/process/ndvi", content=b"II*\0junk", headers={"content-type": "image/tiff"}
    )
    assert junk.status_code == 400
    new = files() - before
    assert all(p.is_relative_to(root / "out") for p in new), new


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"path": "../services.yaml"}, 403, "PathNotAllowed"),
        ({"path": "scenes/../../etc/passwd"}, 403, "PathNotAllowed"),
        ({"path": "/etc/passwd"}, 403, "PathNotAllowed"),
        ({"path": "scenes//vsicurl/http://x/a.tif"}, 403, "PathNotAllowed"),
        ({"path": "scenes/s2.tif\u0000"}, 403, "PathNotAllowed"),
        ({"path": "other/s2.tif"}, 403, "PathNotAllowed"),
        ({"path": "scenes/missing.tif"}, 404, "RasterNotFoundError"),
        ({"path": "scenes/s2.tif", "bounds": [1, 2, 3]}, 400, "InvalidRequest"),
        ({"path": "scenes/s2.tif", "extra": 1}, 400, "InvalidRequest"),
    ],
)
def test_bad_path_requests_are_refused_with_their_type(
    client: TestClient, body: dict, status: int, error: str
) -> None:
    r = client.post("/process/ndvi", json=body)
    assert (r.status_code, r.json()["error"]) == (status, error), r.text


def test_symlink_out_of_the_data_root_is_refused(client: TestClient, root: Path) -> None:
    link = root / "data" / "escape.tif"
    link.symlink_to(root / "services_outside.tif")
    try:
        r = client.post("/process/ndvi", json={"path": "scenes/escape.tif"})
    finally:
        link.unlink()
    assert r.status_code == 403 and r.json()["error"] == "PathNotAllowed"


def test_unsupported_media_type_is_415(client: TestClient) -> None:
    r = client.post("/process/ndvi", content=b"x", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and r.json()["error"] == "UnsupportedMediaType"


def test_a_bug_answers_500_without_a_traceback(client: TestClient, monkeypatch) -> None:
    state = client.app.state.georax

    def broken(*args: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(state, "process", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)  # answer as a server would
    r = quiet.post("/process/ndvi", json={"path": "scenes/s2.tif"})
    assert r.status_code == 500
    assert r.json() == {"error": "InternalError", "message": "internal server error", "status": 500}
    assert "secret" not in r.text and "Traceback" not in r.text


# ---------------------------------------------------------------------- submissions
def test_submitted_pipeline_is_priced_hashed_and_usable(client: TestClient) -> None:
    r = client.post("/pipelines", json={"yaml": SAFE_YAML, "shape": [7, 32, 32], "name": "mine"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["config_hash"] == gx.config_hash(gx.loads_yaml(SAFE_YAML, allowed=ALLOWED))
    assert body["price"]["peak_bytes"] > 0 and r.headers["location"] == "/pipelines/mine"
    again = client.post(
        "/pipelines", json={"yaml": SAFE_YAML, "shape": [7, 32, 32], "name": "mine"}
    )
    assert again.status_code == 200 and again.json()["created"] is False
    assert client.get("/pipelines").json()["mine"] == body["config_hash"]
    r = client.post("/process/mine?stats=true", json={"path": "scenes/s2.tif"})
    assert r.status_code == 200 and r.json()["config_hash"] == body["config_hash"]


def test_yaml_body_with_query_parameters_is_accepted(client: TestClient) -> None:
    r = client.post(
        "/pipelines?shape=7,16,16&name=viayaml",
        content=SAFE_YAML,
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("text", "status", "error"),
    [
        ("{_target_: os.system, command: ls}", 403, "UntrustedTargetError"),
        ('!!python/object/apply:os.system ["ls"]', 422, "UnsafeYAMLError"),
        ("{_target_: georax.array.qc.QCOperator}", 403, "AbstractTargetError"),
        ("{_target_: georax.geo.indices.NDVI, red_band: 2, nri: 3}", 422, "ConfigError"),
        ("[" * 500 + "]" * 500, 422, "SandboxLimitError"),
        ("a: [unclosed", 422, "MalformedYAMLError"),
    ],
)
def test_hostile_submissions_get_typed_4xx(
    client: TestClient, text: str, status: int, error: str
) -> None:
    r = client.post("/pipelines", json={"yaml": text, "shape": [7, 32, 32]})
    assert (r.status_code, r.json()["error"]) == (status, error), r.text
    assert "Traceback" not in r.text


def test_over_budget_submission_names_the_stage(client: TestClient) -> None:
    text = """
_target_: georax.patch.operators.Patchwise
patcher:
  _target_: georax.patch.patcher.Patcher
  geometry: {_target_: georax.patch.geometry.Rectangular, size: [32, 32]}
  sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1, 1]}
operator: {_target_: georax.Identity}
batch_size: 4096
"""
    r = client.post("/pipelines", json={"yaml": text, "shape": [7, 512, 512]})
    body = r.json()
    assert r.status_code == 422 and body["error"] == "BudgetExceededError", r.text
    assert body["required"] > body["budget"] and body["stage"] in ("intermediate", "flops")


def test_submission_limits(client: TestClient) -> None:
    def post(**kw: Any) -> Any:
        return client.post("/pipelines", json={"yaml": SAFE_YAML, "shape": [7, 8, 8], **kw})

    assert post(name="../x").json()["error"] == "InvalidName"
    assert post(shape=[0, 8]).json()["error"] == "InvalidShape"
    assert post(shape=[7, 100000, 100000]).status_code == 413
    assert post(dtype="object").json()["error"] == "InvalidDType"
    taken = post(name="ndvi")  # a services pipeline's name
    assert taken.status_code == 409 and taken.json()["error"] == "NameTaken"


# ---------------------------------------------------------------------- tiles
def _center_tile(client: TestClient) -> Any:
    tj = client.get("/tiles/ndvi/tilejson.json").json()
    lon, lat, _ = tj["center"]
    return TMS.tile(lon, lat, tj["maxzoom"])


def test_tilejson_describes_the_layer(client: TestClient, root: Path) -> None:
    tj = client.get("/tiles/ndvi/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/tiles/ndvi/{z}/{x}/{y}.png")
    with Reader(str(root / "data" / "s2.tif")) as r:
        assert tj["minzoom"] == r.minzoom and tj["maxzoom"] == r.maxzoom
    west, south, east, north = tj["bounds"]
    assert west < east and south < north and tj["config_hash"]


def test_tile_equals_the_pipeline_on_rio_tilers_read(client: TestClient, root: Path) -> None:
    t = _center_tile(client)
    r = client.get(f"/tiles/ndvi/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    with Reader(str(root / "data" / "s2.tif"), tms=TMS) as reader:
        img = reader.tile(t.x, t.y, t.z, tilesize=256, resampling_method="bilinear")
    data = img.array
    valid = np.logical_or.reduce(~np.ma.getmaskarray(data), axis=0)
    values = np.ma.filled(data.astype(np.float32), np.nan)
    op = gx.from_config(client.app.state.georax.services.layers["ndvi"].pipeline.config)
    want = np.asarray(pack_rgba(op(values), valid))
    np.testing.assert_array_equal(got, want)
    assert (got[..., 3] > 0).mean() > 0  # some of it holds data


def test_tiles_outside_the_data_are_transparent_and_coordinates_checked(
    client: TestClient,
) -> None:
    r = client.get("/tiles/ndvi/3/0/0.png")
    assert r.status_code == 200 and r.content == transparent_png()
    assert not np.asarray(Image.open(io.BytesIO(r.content)))[..., 3].any()
    for z, x, y in [(3, 8, 0), (3, 0, -1), (25, 0, 0), (-1, 0, 0)]:
        bad = client.get(f"/tiles/ndvi/{z}/{x}/{y}.png")
        assert bad.status_code in (404, 422) and "error" in bad.json()
    assert client.get("/tiles/nope/1/0/0.png").json()["error"] == "UnknownLayer"


def test_etag_304_and_cache_hits(client: TestClient) -> None:
    t = _center_tile(client)
    url = f"/tiles/ndvi/{t.z}/{t.x - 1}/{t.y}.png"
    first = client.get(url)
    hits = _metric(client, "georax_tile_cache_total", result="hit")
    second = client.get(url)
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert _metric(client, "georax_tile_cache_total", result="hit") == hits + 1
    assert first.headers["cache-control"] == "public, max-age=3600"
    r = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304 and r.content == b""
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_layer_compiles_once_for_every_tile(client: TestClient) -> None:
    tj = client.get("/tiles/ndvi/tilejson.json").json()
    for z in range(tj["minzoom"], tj["maxzoom"] + 1):
        for t in list(TMS.tiles(*tj["bounds"], zooms=[z]))[:3]:
            assert client.get(f"/tiles/ndvi/{t.z}/{t.x}/{t.y}.png").status_code == 200
    assert _metric(client, "georax_compilations_total", pipeline="layer:ndvi") == 1


def test_rewritten_source_changes_the_etag_and_the_tile(tmp_path: Path) -> None:
    paths = write_data(tmp_path, 64)
    app = create_app(services(tmp_path, 64))
    with TestClient(app) as c:
        tj = c.get("/tiles/ndvi/tilejson.json").json()
        t = TMS.tile(*tj["center"][:2], tj["maxzoom"])
        url = f"/tiles/ndvi/{t.z}/{t.x}/{t.y}.png"
        before = c.get(url)
        os.replace(paths["s2b"], paths["s2"])  # the source is replaced by another world
        after = c.get(url)
    assert after.headers["etag"] != before.headers["etag"]
    assert after.content != before.content


def test_map_page_uses_only_the_vendored_leaflet(client: TestClient) -> None:
    r = client.get("/map")
    html = r.text
    assert r.status_code == 200 and "/static/leaflet/leaflet.js" in html
    assert "default-src 'self'" in r.headers["content-security-policy"]
    srcs = [part.split('"')[1] for part in html.split("src=")[1:]]
    hrefs = [part.split('"')[1] for part in html.split("href=")[1:]]
    assert all(u.startswith("/static/") for u in srcs + hrefs), srcs + hrefs
    js = client.get("/static/leaflet/leaflet.js")
    vendored = Path(gx.serve.__file__).parent / "static" / "leaflet" / "leaflet.js"
    assert js.status_code == 200 and js.content == vendored.read_bytes()
    assert client.get("/static/leaflet/LICENSE").status_code == 200
    assert client.get("/static/leaflet/images/layers.png").status_code == 200
    assert client.get("/map?layer=nope").status_code == 404


# ---------------------------------------------------------------------- service
def test_health_and_metrics(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["layers"] == ["ndvi"] and h["pipelines"] >= 1
    names = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {"georax_requests", "georax_request_seconds", "georax_compilations"} <= names
    assert _metric(client, "georax_requests_total", route="/health", status="200") >= 1


def test_full_queue_answers_503_with_retry_after(client: TestClient) -> None:
    pool = client.app.state.georax.process_pool
    release = threading.Event()
    portal_loop = asyncio.new_event_loop()
    blockers = [portal_loop.create_task(pool.run(release.wait)) for _ in range(pool.max_pending)]
    portal_loop.run_until_complete(asyncio.sleep(0.1))
    try:
        assert pool.pending == pool.max_pending
        r = client.post("/process/ndvi", json={"path": "scenes/s2.tif"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "ServerBusy"
    finally:
        release.set()
        portal_loop.run_until_complete(asyncio.gather(*blockers))
        portal_loop.close()
    assert pool.pending == 0
    assert client.post("/process/ndvi", json={"path": "scenes/s2.tif"}).status_code == 200


def test_timeout_is_504_and_the_slot_is_held_until_the_job_ends() -> None:
    pool = WorkPool("t", threads=1, max_pending=2, timeout=0.05)
    release = threading.Event()

    async def scenario() -> None:
        with pytest.raises(RequestError) as e:
            await pool.run(release.wait)
        assert e.value.status == 504
        assert pool.pending == 1  # still running: the bound still counts it
        release.set()
        for _ in range(200):
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.pending == 0

    asyncio.run(scenario())
    pool.shutdown()


# ---------------------------------------------------------------------- lazy, start-up
def test_lazy_store_keeps_at_most_max_loaded(root: Path) -> None:
    spec = services(root, lazy=True, max_loaded=1)
    spec["pipelines"]["other"] = dict(spec["pipelines"]["ndvi"])
    spec["layers"] = {}
    app = create_app(spec)
    store = app.state.georax.store
    assert store.loaded() == 0 and set(store.names()) == {"ndvi", "other"}
    with TestClient(app) as c:
        assert c.post("/process/ndvi", json={"path": "scenes/s2.tif"}).status_code == 200
        assert store.entry("ndvi").compiled is not None
        assert c.post("/process/other", json={"path": "scenes/s2.tif"}).status_code == 200
        assert store.loaded() == 1 and store.entry("ndvi").compiled is None
        assert c.post("/process/ndvi", json={"path": "scenes/s2.tif"}).status_code == 200


def test_services_errors_fail_at_start_up(root: Path) -> None:
    bad = services(root)
    bad["server"]["unknown"] = 1
    with pytest.raises(ConfigError, match=r"server\.unknown"):
        load_services(bad)
    evil = services(root)
    evil["pipelines"]["ndvi"]["config"] = {"_target_": "os.system", "command": "ls"}
    with pytest.raises(UntrustedTargetError):
        create_app(evil)
    not_rgba = services(root)
    not_rgba["layers"]["ndvi"]["pipeline"]["config"] = NDVI  # float32, not uint8 RGBA
    with pytest.raises(ShapeError, match="uint8"):
        create_app(not_rgba)


def test_grid_dependent_layer_is_refused(root: Path) -> None:
    spec = services(root)
    spec["pipelines"] = {}
    spec["layers"]["ndvi"]["pipeline"]["config"] = {
        "_target_": "georax.Sequential",
        "operators": [
            {
                "_target_": "georax.geo.fusion.Resample",
                "target_grid": ["EPSG:3857", [10.0, 0.0, 0.0, 0.0, -10.0, 0.0], [256, 256]],
            },
            *spec["layers"]["ndvi"]["pipeline"]["config"]["operators"],
        ],
    }
    with pytest.raises(ShapeError, match="georeferencing"):
        create_app(spec)


def test_request_key_is_reproducible() -> None:
    from georax.serve.store import input_key_seed

    a, b = input_key_seed("ab" * 16), input_key_seed("ab" * 16)
    assert jax.random.key_data(a).tolist() == jax.random.key_data(b).tolist()


def test_problem_body_survives_partial_error_attributes() -> None:
    from georax.io.errors import ReadBudgetExceededError
    from georax.serve.errors import problem_body, status_for

    e = ReadBudgetExceededError.__new__(ReadBudgetExceededError)
    Exception.__init__(e, "too big")  # no attributes set at all
    body = problem_body(e)
    assert body == {"error": "ReadBudgetExceededError", "message": "too big", "status": 413}
    assert status_for(e) == 413
