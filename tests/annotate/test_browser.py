"""The annotation page in a real browser: Debian's Chromium, headless, driven by Playwright.

On synthetic scenes (with the bundled model): zoom in and click an object (the mask lands on it), pick
class 2 by its key and accept, undo and redo the accept, brush a region onto the object (the saved mask
grows), mark the image done and press n, export YOLO-seg and COCO polygons from the page and read them
back; select several objects, relabel and delete them at once and undo that, edit a polygon vertex,
refine with a click; pre-fill proposals that survive a reload; the toolbar on one line at 1400 px.
On a 4000 x 3000 image at 4x zoom, the main-thread time of a click's redraw (Performance API).
On a photo, the screenshots of docs/ (with PROMPTSEG_ANNOTATE_SCREENSHOTS=docs they are written there).

Skipped (with the reason) where Playwright or Chromium is missing; ``.ci/run`` installs Chromium.
Playwright's own browser download is never used: it drives /usr/bin/chromium.
"""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
mask_utils = pytest.importorskip("pycocotools.mask")
sync_api = pytest.importorskip("playwright.sync_api")

from promptseg.annotate import AnnotationService, create_app  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402
from promptseg.masks import deepest_points  # noqa: E402
from tests._support import read_yolo_seg  # noqa: E402
from tests.annotate._serve import serve_in_thread  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 900}
LABELS = ["blob", "shape", "ring"]
SCENE_SEED = 1  # its largest object without parts is found with one click (IoU 0.90 with the bundled model)
SELECT_SEED = 5  # three objects without parts
SCREENSHOTS_ENV = "PROMPTSEG_ANNOTATE_SCREENSHOTS"  # a folder (docs/) to write the screenshots into
PHOTO_OBJECTS = Path(__file__).parents[1] / "data" / "annotate" / "groceries_objects.json"
REDRAW_BUDGET_MS = 16.0
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"the browser test drives Debian's chromium ({CHROMIUM}); `.ci/run` installs it with apt-get as root",
)


# ------------------------------------------------------------------ helpers
def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of ``mask`` farthest from its boundary."""
    x, y = deepest_points(torch.from_numpy(mask)[None])[0].tolist()
    return int(x), int(y)


def plain_objects(scene) -> list[int]:
    """Objects with no parent and no parts, largest first."""
    found = [k for k in range(len(scene.masks)) if scene.parents[k] < 0 and not (scene.parents == k).any()]
    return sorted(found, key=lambda k: -int(scene.masks[k].sum()))


def decode(rle: dict) -> np.ndarray:
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    else:
        rle = {"size": rle["size"], "counts": counts.encode()}
    return mask_utils.decode(rle).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def start_server(service: AnnotationService):
    url, server, thread = serve_in_thread(create_app(service))
    return f"{url}/", server, thread


def stop_server(server, thread, service) -> None:
    server.should_exit = True
    thread.join(timeout=10)
    service.close()


def wait(page, script: str, timeout: float = TIMEOUT_MS):
    try:
        return page.wait_for_function(script, timeout=timeout)
    except sync_api.TimeoutError:
        message = page.evaluate("document.getElementById('message').textContent")
        raise AssertionError(f"timed out waiting for: {script} (page says: {message!r})") from None


def view(page) -> dict:
    return page.evaluate("({scale: annotator.view.scale, tx: annotator.view.tx, ty: annotator.view.ty})")


def screen(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the centre of image pixel (x, y)."""
    box = page.locator("#canvas").bounding_box()
    v = view(page)
    return box["x"] + v["tx"] + (x + 0.5) * v["scale"], box["y"] + v["ty"] + (y + 0.5) * v["scale"]


def click_image(page, x: float, y: float, modifiers: tuple[str, ...] = (), **options) -> None:
    """A real mouse click at image pixel (x, y), holding ``modifiers`` (e.g. "Shift", "Control")."""
    for key in modifiers:
        page.keyboard.down(key)
    page.mouse.click(*screen(page, x, y), **options)
    for key in reversed(modifiers):
        page.keyboard.up(key)


def drawn_count(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.maskDrawn || 0)"))


def click_and_wait(page, x: float, y: float, **options) -> None:
    before = drawn_count(page)
    click_image(page, x, y, **options)
    wait(page, f"Number(document.body.dataset.maskDrawn || 0) > {before}")


def current_mask(page) -> np.ndarray:
    rle = page.evaluate("annotator.current.result.masks[annotator.current.selected]")
    return decode(rle)


def version(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.version || 0)"))


def canvas_pixels(page) -> np.ndarray:
    """(H, W, 3) uint8 of the canvas, once the frames the page has asked for are drawn."""
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    url = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def tinted_fraction(page, image: np.ndarray, region: np.ndarray, samples: int = 400) -> float:
    """Share of ``region``'s pixels whose colour on the canvas differs clearly from the image's."""
    pixels = canvas_pixels(page)
    v = view(page)
    ys, xs = np.nonzero(region)
    pick = np.linspace(0, len(xs) - 1, min(samples, len(xs))).astype(int)
    sx = (v["tx"] + (xs[pick] + 0.5) * v["scale"]).astype(int)
    sy = (v["ty"] + (ys[pick] + 0.5) * v["scale"]).astype(int)
    inside = (sx >= 0) & (sy >= 0) & (sx < pixels.shape[1]) & (sy < pixels.shape[0])
    difference = np.abs(pixels[sy[inside], sx[inside]].astype(int) - image[ys[pick][inside], xs[pick][inside]].astype(int)).sum(-1)
    return float((difference > 40).mean())


def saved(out: Path) -> dict:
    return json.loads(out.read_text())


def saved_objects(out: Path, image_id: int) -> list[dict]:
    data = saved(out)
    names = {c["id"]: c["name"] for c in data["categories"]}
    return [{**a, "category": names[a["category_id"]]} for a in data["annotations"] if a["image_id"] == image_id]


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page; also written to $PROMPTSEG_ANNOTATE_SCREENSHOTS/<name> when set."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_bytes(path.read_bytes())
    assert Image.open(path).size == (VIEWPORT["width"], VIEWPORT["height"])
    return path


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def scenes():
    return {seed: generate_scene(seed) for seed in (SCENE_SEED, 2, SELECT_SEED)}


@pytest.fixture(scope="module")
def served(tmp_path_factory, model, scenes):
    folder = tmp_path_factory.mktemp("images")
    for name, seed in (("a_scene.png", SCENE_SEED), ("b_scene.png", 2), ("c_scene.png", SELECT_SEED)):
        Image.fromarray(scenes[seed].image).save(folder / name)
    out = tmp_path_factory.mktemp("out") / "annotations.json"
    # A small pre-fill grid and low thresholds keep the pre-fill to seconds with the bundled model.
    prefill = {"points_per_side": 8, "pred_iou_thresh": 0.3, "stability_score_thresh": 0.6}
    service = AnnotationService(folder, out, model, prefill_defaults=prefill, labels=LABELS)
    url, server, thread = start_server(service)
    yield url, out
    stop_server(server, thread, service)


@pytest.fixture(scope="module")
def playwright():
    """One Playwright driver for the module: its sync API cannot run two at once in a process."""
    driver = sync_api.sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory):
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
        args=CHROMIUM_ARGS, viewport=VIEWPORT, accept_downloads=True,
        bypass_csp=True,  # wait_for_function evaluates strings, which the page's CSP forbids (see test_the_page_runs_under_its_csp)
    )
    yield context
    context.close()


@pytest.fixture()
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    page.close()
    assert not dialogs, f"the page asked: {dialogs}"
    assert not [e for e in errors if "favicon" not in e], f"errors in the page: {errors}"


def open_page(page, url: str, image_id: int) -> None:
    page.goto(f"{url}#image={image_id}")
    wait(page, f"document.body.dataset.ready && document.body.dataset.imageId === '{image_id}'")


# ------------------------------------------------------------------ tests
def test_zoom_click_class_undo_redo_brush_done_next_and_export(served, page, scenes, tmp_path):
    url, out = served
    scene = scenes[SCENE_SEED]
    target = plain_objects(scene)[0]
    truth = scene.masks[target]
    x, y = deepest_point(truth)
    open_page(page, url, 1)

    # Zoom in with the wheel over the object; it stays under the cursor.
    fitted = view(page)["scale"]
    page.mouse.move(*screen(page, x, y))
    for _ in range(3):
        page.mouse.wheel(0, -300)
    wait(page, f"annotator.view.scale > {2 * fitted}")
    print(f"zoom: {fitted:.2f} -> {view(page)['scale']:.2f} screen px per image px")

    # A click at that zoom: the mask lands on the object.
    click_and_wait(page, x, y)
    mask = current_mask(page)
    print(f"click at {view(page)['scale']:.1f}x: IoU {iou(mask, truth):.3f} with the ground truth")
    assert iou(mask, truth) >= 0.5
    wait(page, "document.querySelectorAll('#candidates .candidate').length === 3")

    # Class 2 by its key, then Enter.
    page.keyboard.press("2")
    assert page.input_value("#label") == LABELS[1]
    page.keyboard.press("Enter")
    wait(page, "document.body.dataset.annotations === '1'")
    (accepted,) = saved_objects(out, 1)
    assert accepted["category"] == LABELS[1] and iou(decode(accepted["segmentation"]), truth) >= 0.5
    assert page.input_value("#label") == ""  # the label does not stick to the next object

    # Undo the accept (the mask comes back as the current mask), then redo it.
    page.keyboard.press("z")
    wait(page, "document.body.dataset.annotations === '0' && annotator.current.result !== null")
    assert saved_objects(out, 1) == []
    page.keyboard.press("Shift+Z")
    wait(page, "document.body.dataset.annotations === '1'")
    (redone,) = saved_objects(out, 1)
    assert redone["id"] == accepted["id"] and redone["category"] == LABELS[1]

    # The accepted object is drawn where it is, at this zoom and after a reload at the fitted view.
    away = ~np.any(scene.masks, axis=0)
    for when in ("zoomed in", "after a reload, fitted"):
        drawn, stray = tinted_fraction(page, scene.image, truth), tinted_fraction(page, scene.image, away)
        print(f"{when}: {drawn:.2f} of the object tinted, {stray:.2f} of the empty background")
        assert drawn >= 0.5 and stray <= 0.05
        if when == "zoomed in":
            page.reload()
            wait(page, "document.body.dataset.ready && document.body.dataset.annotations === '1'")

    # Select the object by clicking it, then brush a stroke from inside it to outside: the saved mask grows.
    click_image(page, x, y)
    wait(page, f"annotator.selected.has({accepted['id']})")
    page.keyboard.press("b")
    wait(page, "annotator.tool === 'brush'")
    saved_mask = decode(redone["segmentation"])
    exit_x = next(c for c in range(x, truth.shape[1]) if not saved_mask[y, c])  # the first pixel right of the object
    end_x = min(exit_x + 8, truth.shape[1] - 2)
    before, area = version(page), redone["area"]
    page.mouse.move(*screen(page, x, y))
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(*screen(page, x + (end_x - x) * step / 10, y))
    page.mouse.up()
    wait(page, f"Number(document.body.dataset.version) > {before} && annotator.stroke === null")
    (brushed,) = saved_objects(out, 1)
    grown = decode(brushed["segmentation"])
    print(f"brush: area {area} -> {brushed['area']} px")
    assert brushed["area"] > area and grown[y, exit_x:end_x + 1].all()
    page.keyboard.press("Escape")

    # Mark the image done, then n opens the next image that is not done.
    page.keyboard.press("d")
    wait(page, "document.querySelector('#image-list li[data-id=\"1\"]').dataset.state === 'done'")
    assert next(i for i in saved(out)["images"] if i["id"] == 1)["state"] == "done"
    assert "1 of 3 done" in page.text_content("#progress-text")
    page.keyboard.press("n")
    wait(page, "document.body.dataset.imageId === '2' && document.body.dataset.ready")
    page.select_option("#image-filter", "done")  # the list filtered by state (the open image stays listed)
    assert page.eval_on_selector_all("#image-list li", "items => items.map((i) => i.dataset.id)") == ["1", "2"]
    page.select_option("#image-filter", "all")

    # Export from the page: YOLO-seg (a zip) and COCO polygons (JSON), read back.
    page.select_option("#export-format", "yolo-seg")
    with page.expect_download() as download:
        page.click("#export")
    archive = tmp_path / "yolo.zip"
    download.value.save_as(archive)
    zipfile.ZipFile(archive).extractall(tmp_path / "yolo")
    names, labels = read_yolo_seg(tmp_path / "yolo")
    assert names == dict(enumerate(LABELS)) and list(labels) == ["a_scene"]
    ((cls, points),) = labels["a_scene"]
    height, width = grown.shape
    polygon = mask_utils.decode(mask_utils.frPyObjects([(points * (width, height)).reshape(-1).tolist()], height, width))[:, :, 0]
    print(f"YOLO-seg from the page: class {cls}, IoU {iou(polygon.astype(bool), grown):.3f} with the saved mask")
    assert cls == 1 and iou(polygon.astype(bool), grown) >= 0.9

    from pycocotools.coco import COCO

    page.select_option("#export-format", "coco-polygon")
    with page.expect_download() as download:
        page.click("#export")
    download.value.save_as(tmp_path / "coco.json")
    coco = COCO(str(tmp_path / "coco.json"))
    (annotation,) = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert isinstance(annotation["segmentation"], list) and coco.loadCats(annotation["category_id"])[0]["name"] == LABELS[1]
    print(f"COCO polygons from the page: IoU {iou(coco.annToMask(annotation).astype(bool), grown):.3f} with the saved mask")
    assert iou(coco.annToMask(annotation).astype(bool), grown) >= 0.95


def test_select_several_relabel_delete_undo_polygon_and_refine(served, page, scenes):
    url, out = served
    scene = scenes[SELECT_SEED]
    first, second = plain_objects(scene)[:2]
    open_page(page, url, 3)
    points = [deepest_point(scene.masks[first]), deepest_point(scene.masks[second])]

    # Two objects accepted without a class: they are stored unlabelled.
    for x, y in points:
        click_and_wait(page, x, y)
        before = int(page.evaluate("document.body.dataset.annotations"))
        page.keyboard.press("Enter")
        wait(page, f"document.body.dataset.annotations === '{before + 1}'")
    ids = [a["id"] for a in saved_objects(out, 3)]
    assert [a["category"] for a in saved_objects(out, 3)] == ["unlabelled", "unlabelled"]

    # Click one, Ctrl+click the other, press 1: both relabelled in one action.
    click_image(page, *points[0])
    click_image(page, *points[1], modifiers=("Control",))
    wait(page, "annotator.selected.size === 2")
    page.keyboard.press("1")
    wait(page, f"document.querySelector('#object-list').textContent.split('{LABELS[0]}').length === 3")
    assert [a["category"] for a in saved_objects(out, 3)] == [LABELS[0], LABELS[0]]
    history = page.evaluate("fetch('/api/images/3/annotations').then(r => r.json()).then(s => s.history.undo.map(o => o.op))")
    assert history == ["add", "add", "relabel"]

    # Delete deletes both without asking (the page fixture fails on any dialog); z brings them back.
    page.keyboard.press("Delete")
    wait(page, "document.body.dataset.annotations === '0'")
    page.keyboard.press("z")
    wait(page, "document.body.dataset.annotations === '2'")
    assert [a["id"] for a in saved_objects(out, 3)] == ids

    # The polygon of the first object: drag a vertex outwards by 12 image pixels; saved as an edit.
    click_image(page, 2, 2)  # empty background: drops the selection (a click there only starts a prompt)
    page.keyboard.press("Escape")
    click_image(page, *points[0])
    wait(page, "annotator.selected.size === 1")
    page.keyboard.press("v")
    wait(page, "annotator.vertex !== null")
    vx, vy = page.evaluate("annotator.vertex.rings[0].points[0]")
    area = saved_objects(out, 3)[0]["area"]
    before = version(page)
    cx, cy = screen(page, vx - 0.5, vy - 0.5)
    page.mouse.move(cx, cy)
    page.mouse.down()
    direction = np.subtract((vx, vy), points[0])
    direction = direction / max(1e-6, np.hypot(*direction))
    page.mouse.move(*screen(page, vx - 0.5 + 12 * direction[0], vy - 0.5 + 12 * direction[1]))
    page.mouse.up()
    wait(page, f"Number(document.body.dataset.version) > {before}")
    edited = saved_objects(out, 3)[0]
    print(f"vertex dragged 12 px out: area {area} -> {edited['area']}")
    assert edited["area"] > area
    page.keyboard.press("Escape")

    # The eraser across the same object: the saved mask shrinks.
    page.keyboard.press("x")
    wait(page, "annotator.tool === 'eraser'")
    before, area = version(page), edited["area"]
    x, y = points[0]
    page.mouse.move(*screen(page, x - 6, y))
    page.mouse.down()
    page.mouse.move(*screen(page, x + 6, y), steps=5)
    page.mouse.up()
    wait(page, f"Number(document.body.dataset.version) > {before} && annotator.stroke === null")
    erased = saved_objects(out, 3)[0]
    print(f"eraser: area {area} -> {erased['area']}")
    assert erased["area"] < area and not decode(erased["segmentation"])[y, x]
    page.keyboard.press("Escape")

    # Refine the second object with a background click inside it; Enter saves the edit.
    click_image(page, *points[1])
    wait(page, "annotator.selected.size === 1")
    page.keyboard.press("e")
    wait(page, "annotator.current.editing !== null")
    x, y = points[1]
    click_and_wait(page, x, y, modifiers=("Shift",))
    page.keyboard.press("Enter")
    wait(page, "annotator.current.editing === null")
    ops = page.evaluate("fetch('/api/images/3/annotations').then(r => r.json()).then(s => s.history.undo.map(o => o.op))")
    assert ops[-2:] == ["edit", "edit"]


def test_prefill_proposals_persist_and_labels_do_not_stick(served, page):
    url, out = served
    open_page(page, url, 2)
    page.click("#prefill-one")
    wait(page, "/proposal\\(s\\) in/.test(document.getElementById('prefill-status').textContent)")
    count = page.evaluate("annotator.proposals.length")
    print(f"pre-fill: {page.text_content('#prefill-status')}")
    assert count >= 3, "the test needs three proposals: two to accept, one to reject"
    assert page.is_checked("#show-uncovered")

    # A reload keeps the proposals (they are in the annotations file) ...
    page.reload()
    wait(page, "document.body.dataset.ready && document.body.dataset.imageId === '2'")
    assert page.evaluate("annotator.proposals.length") == count
    # ... and the uncovered shading belongs to the image it was turned on for.
    page.keyboard.press("ArrowLeft")
    wait(page, "document.body.dataset.imageId === '1'")
    assert not page.is_checked("#show-uncovered")
    page.keyboard.press("ArrowRight")
    wait(page, "document.body.dataset.imageId === '2'")

    page.keyboard.press("3")
    page.keyboard.press("a")
    wait(page, "document.body.dataset.annotations === '1'")
    page.keyboard.press("a")
    wait(page, "document.body.dataset.annotations === '2'")
    page.keyboard.press("r")
    wait(page, f"annotator.proposals.length === {count - 3}")
    categories = [a["category"] for a in saved_objects(out, 2)]
    assert categories == [LABELS[2], "unlabelled"]  # the class picked for the first did not stick
    page.keyboard.press("z")  # the rejection undone: the proposal is back
    wait(page, f"annotator.proposals.length === {count - 2}")


def test_toolbar_fits_view_keys_and_help_lists_delete(served, page):
    url, _ = served
    open_page(page, url, 1)
    fitted = view(page)
    page.keyboard.press("Shift+0")
    assert view(page)["scale"] == 1
    page.keyboard.press("0")
    assert view(page) == fitted
    page.keyboard.press("+")
    zoomed = view(page)
    assert zoomed["scale"] > fitted["scale"]
    centre = page.locator("#canvas").bounding_box()
    cx, cy = centre["x"] + centre["width"] / 2, centre["y"] + centre["height"] / 2
    page.keyboard.down(" ")  # space+drag pans ...
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy + 30, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    panned = view(page)
    assert (round(panned["tx"] - zoomed["tx"]), round(panned["ty"] - zoomed["ty"])) == (40, 30)
    page.mouse.move(cx, cy)  # ... and so does a middle-button drag, without adding a click
    page.mouse.down(button="middle")
    page.mouse.move(cx - 20, cy, steps=4)
    page.mouse.up(button="middle")
    assert round(view(page)["tx"] - panned["tx"]) == -20 and page.evaluate("annotator.current.points.length") == 0
    toolbar = page.evaluate("""(() => { const t = document.getElementById('toolbar');
        const boxes = [...t.querySelectorAll('button, input, label, span')].map((c) => c.getBoundingClientRect());
        return {scroll: t.scrollWidth, client: t.clientWidth, lowestTop: Math.max(...boxes.map((b) => b.top)),
                highestBottom: Math.min(...boxes.map((b) => b.bottom)), right: Math.max(...boxes.map((b) => b.right)),
                edge: t.getBoundingClientRect().right}; })()""")
    print(f"toolbar at 1400 px: {toolbar}")
    # one line (every control overlaps every other vertically), nothing cut off on the right
    assert toolbar["scroll"] <= toolbar["client"] and toolbar["lowestTop"] < toolbar["highestBottom"], toolbar
    assert toolbar["right"] <= toolbar["edge"], toolbar
    page.keyboard.press("?")
    help_text = page.text_content("#help")
    assert not page.locator("#help").is_hidden()
    for words in ("Delete", "Backspace", "undo", "Shift+0", "space+drag", "next image not done"):
        assert words in help_text, words
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()


def test_the_page_runs_under_its_csp(served, playwright, tmp_path_factory):
    """Guards: the server's Content-Security-Policy (no framing, scripts and images from this server only)
    blocking something the page itself needs; the other tests bypass it to evaluate their checks."""
    url, _ = served
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-csp")), executable_path=str(CHROMIUM), headless=True,
        args=CHROMIUM_ARGS, viewport=VIEWPORT,
    )
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        response = page.goto(f"{url}#image=1")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_selector("body[data-ready='1'][data-image-id='1']", state="attached", timeout=TIMEOUT_MS)
        page.wait_for_selector("#image-list li.current", timeout=TIMEOUT_MS)
        assert not [e for e in errors if "favicon" not in e], f"errors in the page under its CSP: {errors}"
    finally:
        context.close()


def test_unreadable_files_are_shown_with_their_reason(tmp_path_factory, model, browser, scenes):
    """Guards: a folder with an unreadable file stopped the server; now the page lists it, struck out, with
    the reason, and an image found truncated when opened is marked and its reason shown (not a blank page)."""
    from tests.annotate import _bad_files as bad

    folder = tmp_path_factory.mktemp("broken")
    Image.fromarray(scenes[SCENE_SEED].image).save(folder / "a_scene.png")
    bad.truncated_png(folder, "b_truncated.png")
    bad.corrupt_png(folder, "c_corrupt.png")
    service = AnnotationService(folder, folder.parent / "broken.json", model, prefetch=False)
    url, server, thread = start_server(service)
    page = browser.new_page()  # its own page: the refused image logs a failed load, which the page fixture forbids
    page.set_default_timeout(TIMEOUT_MS)
    try:
        open_page(page, url, 1)
        unavailable = page.locator("#image-list li.unavailable-file")
        assert unavailable.count() == 1
        assert "c_corrupt.png" in unavailable.text_content() and "not an image" in unavailable.text_content()
        page.click("#image-list li[data-id='2']")
        wait(page, "/cannot be read/.test(document.getElementById('message').textContent)")
        assert "truncated" in page.text_content("#message")
        wait(page, "document.querySelector(\"#image-list li[data-id='2']\").classList.contains('unavailable')")
        page.click("#image-list li[data-id='1']")  # the readable image still opens
        wait(page, "document.body.dataset.imageId === '1' && annotator.bitmap !== null")
    finally:
        page.close()
        stop_server(server, thread, service)


@pytest.fixture(scope="module")
def large(tmp_path_factory, model):
    """A 4000 x 3000 image (a synthetic scene, stretched) with three accepted objects."""
    folder = tmp_path_factory.mktemp("large")
    scene = generate_scene(SCENE_SEED)
    Image.fromarray(scene.image).resize((4000, 3000), Image.BILINEAR).save(folder / "large.jpg", quality=90)
    service = AnnotationService(folder, folder.parent / "large.json", model, prefetch=False)
    masks = [np.asarray(Image.fromarray(scene.masks[k]).resize((4000, 3000), Image.NEAREST)) for k in plain_objects(scene)]
    for k, mask in enumerate(masks[1:4]):
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        service.store.add(1, {"size": [3000, 4000], "counts": encoded["counts"].decode()}, LABELS[k % 3])
    url, server, thread = start_server(service)
    yield url, masks[0]
    stop_server(server, thread, service)


def test_click_redraw_at_4x_on_a_4000x3000_image(large, page):
    url, target = large
    open_page(page, url, 1)
    x, y = deepest_point(target)
    page.evaluate(f"""(() => {{ const r = document.getElementById('canvas').getBoundingClientRect();
        annotator.view.zoomTo(4, r.width / 2, r.height / 2);
        const [sx, sy] = annotator.view.toScreen({x + 0.5}, {y + 0.5});
        annotator.view.pan(r.width / 2 - sx, r.height / 2 - sy); annotator.measureRaster = true; }})()""")
    assert view(page)["scale"] == 4
    offsets = [(0, 0), (6, 0), (0, 6), (-6, 0), (0, -6), (4, 4), (-4, -4), (4, -4), (-4, 4)]
    for dx, dy in offsets:
        click_and_wait(page, x + dx, y + dy)
        page.keyboard.press("Escape")
    redraws = page.evaluate("performance.getEntriesByName('mask-redraw').map((e) => e.duration)")
    clicks = page.evaluate("performance.getEntriesByName('click-redraw').map((e) => e.duration)")
    assert len(redraws) == len(offsets)
    warm = redraws[1:]  # the first also compiles the drawing code
    median = statistics.median(warm)
    print(f"4000x3000 at 4x: response -> frame with the mask: median {median:.1f} ms, all {[round(v, 1) for v in redraws]}; "
          f"click -> frame with the point: median {statistics.median(clicks):.1f} ms (main thread, rasterisation included)")
    assert median <= REDRAW_BUDGET_MS


def test_photo_screenshots_with_outlines_and_classes(tmp_path_factory, model, page, tmp_path):
    """The screenshots of docs/: a photo at 1400 x 900 with its objects outlined by class, then zoomed."""
    fixture = json.loads(PHOTO_OBJECTS.read_text())
    folder = tmp_path_factory.mktemp("photo")
    photo = Path(__file__).parents[1] / "data" / "images" / "groceries.jpg"
    (folder / photo.name).write_bytes(photo.read_bytes())
    labels = sorted({o["label"] for o in fixture["objects"]}, key=[o["label"] for o in fixture["objects"]].index)
    service = AnnotationService(folder, folder.parent / "photo.json", model, prefetch=False, labels=labels)
    for entry in fixture["objects"]:
        service.store.add(1, entry["rle"], entry["label"])
    url, server, thread = start_server(service)
    try:
        open_page(page, url, 1)
        wait(page, f"document.body.dataset.annotations === '{len(fixture['objects'])}'")
        bag = next(o for o in fixture["objects"] if o["label"] == "bag")
        bx, by = (bag["box"][0] + bag["box"][2]) / 2, (bag["box"][1] + bag["box"][3]) / 2
        click_image(page, bx, by)  # selects the first bag: highlighted
        wait(page, "annotator.selected.size === 1")
        screenshot(page, tmp_path, "annotate.png")
        page.mouse.move(*screen(page, bx + 60, by))
        for _ in range(3):
            page.mouse.wheel(0, -300)
        page.keyboard.press("Shift+O")  # outlines only
        page.wait_for_timeout(400)  # the object layer is redrawn sharp after the zoom settles
        assert page.is_checked("#outlines-only") and view(page)["scale"] > 2
        screenshot(page, tmp_path, "annotate_zoomed.png")
    finally:
        stop_server(server, thread, service)
