"""Schemathesis against the annotation server's own OpenAPI description (``/api/openapi.json``), over HTTP
on loopback: a uvicorn server on a free port serving a folder with a good image, a truncated one and a
corrupt one, as ``promptseg annotate`` serves it (Host allow-list on). Cases that fit the schema and
cases that break it, bounded in count (:data:`EXAMPLES`) and time (:data:`BUDGET_S`).

Guards: any request the schema allows (or almost allows) making the server answer 5xx, or stop.
"""

from __future__ import annotations

import time

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("pycocotools")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from promptseg.annotate import AnnotationService, create_app  # noqa: E402
from promptseg.annotate.coco_masks import checked_rle  # noqa: E402
from promptseg.annotate.guard import allowed_hosts_for  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402
from tests.annotate import _bad_files as bad  # noqa: E402
from tests.annotate._serve import serve_in_thread  # noqa: E402

EXAMPLES = 400
BUDGET_S = 90.0  # past it, the remaining examples are skipped (a slow machine must not stretch the suite)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from promptseg.automatic import SamAutomaticMaskGenerator

    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(generate_scene(4).image[:24, :32].copy()).save(folder / "a.png")
    bad.truncated_png(folder, "b_truncated.png")
    bad.corrupt_png(folder)
    service = AnnotationService(folder, folder.parent / "out.json", build_bundled_sam())
    proposal = checked_rle({"size": [24, 32], "counts": [30, 40, 24 * 32 - 70]}, 24, 32)
    service.store.set_proposals(1, [{"rle": proposal, "score": 0.9}, {"rle": proposal, "score": 0.8}])
    service.store.add(1, proposal, "seed")
    # Pre-fill's generator takes seconds per grid on a CPU; what is fuzzed is the request, not the generator.
    original = SamAutomaticMaskGenerator.generate
    SamAutomaticMaskGenerator.generate = lambda self, image: []
    base, server, thread = serve_in_thread(create_app(service, allowed_hosts=allowed_hosts_for("127.0.0.1")))
    yield base, thread
    server.should_exit = True
    thread.join(timeout=10)
    SamAutomaticMaskGenerator.generate = original
    service.close()


def test_no_generated_request_gets_a_5xx_and_the_server_stays_up(server):
    import requests

    base, thread = server
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    # Generated ids, and the ids that exist (image 1 readable, image 2 truncated, object and proposal 1).
    known = ({}, {"image_id": "1", "annotation_id": "1", "proposal_id": "1"}, {"image_id": "2"})
    strategy = st.one_of([schema.as_strategy(mode, path_parameters=ids)
                          for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) for ids in known])
    stop_at = time.monotonic() + BUDGET_S
    seen = {"calls": 0, "statuses": set()}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def call(case):
        if time.monotonic() > stop_at:
            return
        try:
            response = case.call(base_url=base, timeout=60)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
            return  # the client library refused to send it
        seen["calls"] += 1
        seen["statuses"].add(response.status_code)
        assert response.status_code < 500, f"{response.status_code} for {case.as_curl_command()}: {response.text[:300]}"

    call()
    print(f"schemathesis: {seen['calls']} requests, statuses {sorted(seen['statuses'])}")
    assert seen["statuses"] >= {200, 400, 404}
    assert seen["calls"] >= 50
    assert thread.is_alive() and requests.get(f"{base}/api/images", timeout=30).status_code == 200
