"""The trend plots' raster canvas: its PNG is what PIL decodes, shapes cover what they should
(fractional edges, one blend per pixel along a polyline), text comes out as glyphs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tools.writeback.plot_canvas import Canvas, hex_rgb, text_bitmap

RED = hex_rgb("#ff0000")


def decoded(canvas: Canvas) -> np.ndarray:
    image = Image.open(io.BytesIO(canvas.png()))
    assert image.mode == "RGB"
    assert set(image.info) <= {"dpi"}  # no text chunks, no time
    return np.asarray(image)


def test_png_round_trips_the_pixels() -> None:
    canvas = Canvas(7, 5)
    canvas.fill_rect(1, 1, 4, 3, RED)
    assert np.array_equal(decoded(canvas), canvas.pixels)
    assert decoded(canvas).shape == (5, 7, 3)


def test_a_rectangle_edge_covers_its_fraction_of_a_pixel() -> None:
    canvas = Canvas(6, 3)
    canvas.fill_rect(1.0, 0.0, 3.5, 3.0, RED)
    row = canvas.pixels[1]
    assert row[0].tolist() == [255, 255, 255]
    assert row[1].tolist() == [255, 0, 0]
    assert row[2].tolist() == [255, 0, 0]
    assert row[3].tolist() == [255, 128, 128]  # half covered: half way from white to red
    assert row[4].tolist() == [255, 255, 255]


def test_a_polyline_blends_each_pixel_once_at_its_joins() -> None:
    # A path that doubles back over itself is no darker than a single stroke.
    single, doubled = Canvas(40, 20), Canvas(40, 20)
    single.polyline([(5.0, 10.0), (35.0, 10.0)], 2.0, RED)
    doubled.polyline([(5.0, 10.0), (35.0, 10.0), (5.0, 10.0)], 2.0, RED)
    assert np.array_equal(single.pixels, doubled.pixels)
    assert single.pixels[10, 20].tolist() == [255, 0, 0]
    assert single.pixels[2, 20].tolist() == [255, 255, 255]


def test_shapes_outside_the_image_are_clipped() -> None:
    canvas = Canvas(10, 10)
    canvas.disc(-50.0, -50.0, 3.0, RED)
    canvas.fill_rect(8.0, 8.0, 30.0, 30.0, RED)
    canvas.polyline([(-5.0, 5.0), (15.0, 5.0)], 2.0, RED)
    assert canvas.pixels[9, 9].tolist() == [255, 0, 0]
    assert canvas.pixels[5, 0].tolist() == [255, 0, 0]


def test_text_is_drawn_as_antialiased_glyphs_and_cached() -> None:
    glyphs = text_bitmap("Creatinine 1.5", 8)
    assert glyphs is text_bitmap("Creatinine 1.5", 8)
    assert 0 < glyphs.baseline <= glyphs.height
    assert glyphs.width > glyphs.height
    assert 0.0 < float(glyphs.coverage.max()) <= 1.0
    assert ((glyphs.coverage > 0) & (glyphs.coverage < 1)).any()  # antialiased edges
    turned = glyphs.rotated()
    assert (turned.width, turned.height) == (glyphs.height, glyphs.width)
    assert text_bitmap("Creatinine 1.5", 8, bold=True).coverage.sum() > glyphs.coverage.sum()
