"""Property-based tests (hypothesis) of the annotation server's input codecs and API bodies: whatever comes
in, the answer is a value or a 400 naming the problem, never a crash, a 5xx or native code fed
something unbounded. Each test names the failure it guards against; the example counts are bounded so
the file runs in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
mask_utils = pytest.importorskip("pycocotools.mask")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from promptseg.annotate import AnnotationService, ApiError, create_app  # noqa: E402
from promptseg.annotate.coco_masks import checked_rle, decode_mask, polygon_rle  # noqa: E402
from promptseg.annotate.jsonbody import MAX_DEPTH, parse_json  # noqa: E402
from promptseg.annotate.polygon_input import checked_polygon, clip_ring  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
H, W = 24, 32

# ------------------------------------------------------------------ strategies
numbers = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-100, 100), st.integers(-5, 40), st.sampled_from([0, 1, 4e8, 3e6, -1e308, 1e-320, 2**63]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                           max_leaves=30)
finite_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**19), 10**19), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20,
)
rings_inside = st.lists(
    st.lists(st.tuples(st.floats(0, W), st.floats(0, H)), min_size=3, max_size=8).map(lambda pts: [v for p in pts for v in p]),
    min_size=1, max_size=4,
)


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# ------------------------------------------------------------------ JSON
@FAST
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_body_parses_or_is_a_400(raw):
    """Guards: bodies Python's json turns into RecursionError or ValueError (nesting, huge integers)
    gave 500; any bytes are now a value or a 400."""
    try:
        parse_json(raw)
    except ApiError as error:
        assert error.status == 400


@FAST
@given(finite_json)
def test_json_within_the_bounds_round_trips(value):
    """Guards: the bounds refusing ordinary bodies (the parse hooks changing numbers or strings)."""
    if depth(value) <= MAX_DEPTH:
        assert parse_json(json.dumps(value).encode()) == value


# ------------------------------------------------------------------ RLE
@FAST
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_every_mask_rle_is_accepted_as_string_and_as_counts(mask):
    """Guards: the checks refusing a real mask's RLE (a first run of 0, a full or empty mask)."""
    height, width = mask.shape
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    string = {"size": [height, width], "counts": encoded["counts"].decode()}
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0]:
        counts = [0] + counts
    for value in (string, {"size": [height, width], "counts": counts}):
        assert (decode_mask(checked_rle(value, height, width)) == mask).all()


@FAST
@given(st.lists(st.integers(-3, 2 * H * W) | st.sampled_from([0, 2**64, -(2**64), True, 1.5, "1"]), max_size=12))
def test_any_counts_list_is_a_mask_of_the_image_or_a_400(counts):
    """Guards: counts lists that pycocotools would read past the image or loop on (zero and negative runs,
    runs not adding up to H x W) reaching it."""
    try:
        rle = checked_rle({"size": [H, W], "counts": counts}, H, W)
    except ApiError as error:
        assert error.status == 400
        return
    assert all(isinstance(c, int) and c > 0 for c in counts[1:]) and sum(counts) == H * W
    assert decode_mask(rle).sum() == sum(counts[1::2])


@FAST
@given(st.text(max_size=40) | st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=40))
def test_any_counts_string_is_a_mask_of_the_image_or_a_400(counts):
    """Guards: COCO strings outside the alphabet, cut in a number, or with runs that do not add up."""
    try:
        rle = checked_rle({"size": [H, W], "counts": counts}, H, W)
    except ApiError as error:
        assert error.status == 400
        return
    assert decode_mask(rle).shape == (H, W)


# ------------------------------------------------------------------ polygons
@FAST
@given(st.lists(st.lists(numbers, max_size=14), max_size=4) | json_values)
def test_any_polygon_is_clipped_into_the_image_or_a_400(value):
    """Guards: polygons with huge, infinite or odd coordinates reaching pycocotools' rasteriser (a
    vertex at 4e8 made it allocate 24 GB and die with SIGSEGV)."""
    try:
        rings = checked_polygon(value, H, W)
    except ApiError as error:
        assert error.status == 400
        return
    for ring in rings:
        assert ring.shape[1] == 2 and len(ring) >= 3
        assert ring.min() >= 0 and (ring[:, 0] <= W).all() and (ring[:, 1] <= H).all()
    for fill_rule in ("union", "evenodd"):
        assert decode_mask(polygon_rle(rings, H, W, fill_rule)).shape == (H, W)


@FAST
@given(rings_inside)
def test_rings_inside_the_image_rasterise_as_pycocotools_does(rings):
    """Guards: the bounds changing a polygon that is inside the image (union: COCO's own reading;
    even-odd: the XOR of the rings, computed on their runs)."""
    checked = checked_polygon(rings, H, W)
    assert [list(r.reshape(-1)) for r in checked] == rings
    union = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(rings, H, W))).astype(bool)
    assert (decode_mask(polygon_rle(checked, H, W, "union")) == union).all()
    odd = np.zeros((H, W), bool)
    for ring in rings:
        odd ^= mask_utils.decode(mask_utils.frPyObjects([ring], H, W))[:, :, 0].astype(bool)
    assert (decode_mask(polygon_rle(checked, H, W, "evenodd")) == odd).all()


@FAST
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=3, max_size=10))
def test_clipping_keeps_only_what_is_inside_and_is_idempotent(points):
    """Guards: the clipping leaving vertices outside the image (the allocation comes back) or moving
    a ring that is already inside."""
    ring = np.asarray(points, dtype=np.float64)
    clipped = clip_ring(ring, W, H)
    if len(clipped):
        assert clipped.min() >= 0 and (clipped[:, 0] <= W).all() and (clipped[:, 1] <= H).all()
        again = clip_ring(clipped, W, H)
        assert again.shape == clipped.shape and np.allclose(again, clipped)


# ------------------------------------------------------------------ API bodies
FIELDS = ["points", "labels", "box", "mask_input", "multimask", "rle", "polygon", "fill_rule", "proposal", "category",
          "prompt", "score", "ids", "seq", "state", "points_per_side", "pred_iou_thresh", "stability_score_thresh",
          "size", "counts"]
near_valid = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)
ENDPOINTS = [
    ("post", "/api/images/1/predict"), ("post", "/api/images/1/annotations"), ("post", "/api/images/1/relabel"),
    ("post", "/api/images/1/delete"), ("post", "/api/images/1/undo"), ("post", "/api/images/1/redo"),
    ("put", "/api/images/1/state"), ("patch", "/api/annotations/1"), ("put", "/api/annotations/1"),
    ("post", "/api/images/1/prefill"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from promptseg.automatic import SamAutomaticMaskGenerator

    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(generate_scene(3).image[:H, :W].copy()).save(folder / "a.png")
    service = AnnotationService(folder, folder.parent / "out.json", build_bundled_sam(), prefetch=False)
    http = TestClient(create_app(service), raise_server_exceptions=False)
    http.post("/api/images/1/annotations", json={"polygon": [[1, 1, 10, 1, 10, 10]], "category": "seed"})
    # Pre-fill's generator (seconds per grid on a CPU) is not what these bodies test: its input is.
    original = SamAutomaticMaskGenerator.generate
    SamAutomaticMaskGenerator.generate = lambda self, image: []
    yield http
    SamAutomaticMaskGenerator.generate = original
    service.close()


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(ENDPOINTS), near_valid | json_values)
def test_any_json_body_to_any_endpoint_is_answered_without_a_5xx(client, endpoint, body):
    """Guards: bodies of the right shape with values of the wrong kind (a dict for a number, a huge
    integer for an id, a string for a list) reaching code that raised instead of answering 400."""
    method, path = endpoint
    response = getattr(client, method)(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert response.status_code < 500, (method, path, body, response.text[:300])
    assert "error" in response.json() or response.status_code == 200
