"""Box overlays: labelled rectangles drawn on an image, for a person to check what a model localized.

Boxes come as JSON `[{"box": [y0, x0, y1, x1], "label": "..."}]` in original pixel coordinates
(edges), or as the model answers them, `{"box_2d": [...], "label": ...}` on 0..1000 of the padded
square; those are mapped back with the image's padding first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict

from tools.imaging.errors import BoxError
from tools.imaging.geometry import Padding, PixelBox, clip_box, model_box_to_pixels

COLOURS = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255))


class LabelledBox(BaseModel):
    model_config = ConfigDict(frozen=True)

    box: PixelBox
    label: str


def parse_boxes(text: str, padding: Padding) -> list[LabelledBox]:
    """Boxes from JSON, each checked, ordered and clipped to the original image; errors name the entry."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoxError(text[:80], f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise BoxError(entries, 'expected a list of {"box": [y0, x0, y1, x1], "label": "..."}')
    out: list[LabelledBox] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BoxError(entry, f"entry {i}: expected an object with 'box' (or 'box_2d') and 'label'")
        label = str(entry.get("label", ""))
        try:
            if "box" in entry:
                box = clip_box(entry["box"], padding.height, padding.width)
            elif "box_2d" in entry:
                box = model_box_to_pixels(entry["box_2d"], padding)
            else:
                raise BoxError(entry, "needs 'box' (pixels) or 'box_2d' (0..1000 of the padded square)")
        except BoxError as exc:
            raise BoxError(exc.box, f"entry {i} ({label or 'no label'}): {exc.reason}") from exc
        out.append(LabelledBox(box=box, label=label))
    return out


def draw_boxes(image: npt.NDArray[np.uint8], boxes: Sequence[LabelledBox]) -> Image.Image:
    """Rectangles and labels on an H x W x 3 (or H x W) uint8 image; line width grows with the image."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    canvas = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 400))
    font = ImageFont.load_default(size=max(10, round(max(canvas.size) / 60)))
    for k, item in enumerate(boxes):
        colour = COLOURS[k % len(COLOURS)]
        b = item.box
        # PIL rectangles include their last pixel; our boxes are edges, so the far edge is x1 - 1.
        draw.rectangle((b.x0, b.y0, max(b.x0, b.x1 - 1), max(b.y0, b.y1 - 1)), outline=colour, width=width)
        if item.label:
            left, top, right, bottom = draw.textbbox((b.x0, b.y0), item.label, font=font)
            text_y = b.y0 - (bottom - top) - 2 * width
            if text_y < 0:
                text_y = b.y0 + width
            # A dark band behind the label keeps it legible on bright bone or dark lung.
            band = (b.x0, text_y, b.x0 + (right - left) + 2 * width, text_y + (bottom - top) + 2 * width)
            draw.rectangle(band, fill=(0, 0, 0))
            draw.text((b.x0 + width, text_y + width - (top - b.y0)), item.label, fill=colour, font=font)
    return canvas


__all__ = ["COLOURS", "LabelledBox", "draw_boxes", "parse_boxes"]
