"""Exports of the annotations file: COCO with RLE masks or polygons, YOLO-seg, PNG masks.

``promptseg annotate export ANNOTATIONS.json --format F --out PATH`` and the page's export menu
(``GET /api/export/{format}``) both call :func:`export_annotations` (a zip for the folder formats).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from promptseg.annotate.formats.coco import coco_dataset
from promptseg.annotate.formats.dataset import class_names, exported_images, load_dataset
from promptseg.annotate.formats.png import write_png_masks
from promptseg.annotate.formats.polygons import DEFAULT_TOLERANCE, mask_rings, object_polygons, rings_mask
from promptseg.annotate.formats.yolo import write_yolo_seg
from promptseg.io import write_json_atomically

FORMATS = ("coco-rle", "coco-polygon", "yolo-seg", "png-masks")
FOLDER_FORMATS = ("yolo-seg", "png-masks")


def export_annotations(data: dict[str, Any], fmt: str, out: Path, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Write ``data`` (an annotations file's content) as ``fmt`` to ``out`` (a file for the COCO
    formats, a folder for the others); returns ``{"images", "objects", "classes", "path"}``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if fmt in FOLDER_FORMATS:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out for {fmt} is a folder, but {out} is a file")
        summary = write_yolo_seg(data, out, tolerance) if fmt == "yolo-seg" else write_png_masks(data, out)
    else:
        if out.is_dir():
            raise ValueError(f"--out for {fmt} is a JSON file, but {out} is a folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        coco = coco_dataset(data, polygons=fmt == "coco-polygon", tolerance=tolerance)
        write_json_atomically(out, coco)
        summary = {"images": len(coco["images"]), "objects": len(coco["annotations"]), "classes": class_names(data)}
    return {**summary, "path": str(out)}


def export_bytes(data: dict[str, Any], fmt: str, tolerance: float = DEFAULT_TOLERANCE) -> tuple[bytes, str, str]:
    """(content, media type, file name) of an export for a download: JSON for the COCO formats, a zip
    of the folder for the others."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="promptseg-export-") as folder:
        target = Path(folder) / ("export" if fmt in FOLDER_FORMATS else "export.json")
        export_annotations(data, fmt, target, tolerance)
        if fmt not in FOLDER_FORMATS:
            return target.read_bytes(), "application/json", f"annotations-{fmt}.json"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(target).as_posix())
        return buffer.getvalue(), "application/zip", f"annotations-{fmt}.zip"


__all__ = [
    "DEFAULT_TOLERANCE", "FORMATS", "FOLDER_FORMATS", "coco_dataset", "export_annotations", "export_bytes",
    "exported_images", "load_dataset", "mask_rings", "object_polygons", "rings_mask", "write_png_masks",
    "write_yolo_seg",
]
