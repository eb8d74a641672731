"""Checks that an HTML report shows every figure it declares, in the markup and on screen.

- :func:`check_html` reads the markup: each declared figure (``<meta
  name="serbench-figures">``, or the ``expected`` kinds) is present as
  ``<figure id="fig-<kind>">`` with an ``<svg>`` that has a title, an aria-label and at
  least :data:`MIN_PATHS` paths; a figure that declares ``data-marks="mark=count ..."``
  (the curves figure: ``completed=5 pruned=3 stop=3``; the anytime figure: ``band=2
  mean=2``) holds exactly that many SVG groups ``fig-<kind>-<mark>-<i>`` (what it drew: a
  trial's curve, a pruned trial's ×, a multi-seed row's mean line and min–max band);
  and nothing points outside the file.
- :func:`check_screenshots` renders the figures in headless Chromium (Debian's
  ``chromium``), each in a fixed box of one page, and requires enough non-white pixels in
  every box (:data:`MIN_INK`); a missing or empty figure leaves its box blank.

Both return a list of one-line problems (empty: all good). :func:`screenshot` raises
``RuntimeError`` when Chromium is absent or fails: a check that cannot look must not pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

MIN_PATHS = 5
MIN_INK = 0.005  # share of non-white pixels in a figure's box; axes, lines and labels give several %
BOX = (1000, 800)  # CSS pixels per figure on the proof sheet

_META = re.compile(r'<meta name="serbench-figures" content="([^"]*)">')
# Any URL scheme but data:, or a src/href that is not a fragment or data: URI.
_EXTERNAL = re.compile(r"""\b(?:https?|ftp|file)://|\b(?:src|href)=["'](?!#|data:)""", re.I)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--force-device-scale-factor=1",
]


def declared_figures(html: str) -> list[str]:
    match = _META.search(html)
    return match.group(1).split() if match else []


def declared_marks(figure: str) -> dict[str, int]:
    """The ``data-marks`` of a ``<figure>`` element: mark -> count (none: empty)."""
    opening = figure[: figure.find(">") + 1]
    match = re.search(r'data-marks="([^"]*)"', opening)
    if not match:
        return {}
    pairs = (item.partition("=") for item in match.group(1).split())
    return {mark: int(count) for mark, _, count in pairs if count.isdigit()}


def _figure_pattern(kind: str) -> re.Pattern[str]:
    return re.compile(rf'<figure id="fig-{re.escape(kind)}"[^>]*>.*?</figure>', re.S)


def extract_figure(html: str, kind: str) -> str | None:
    """The ``<figure>`` element of ``kind``, or None."""
    match = _figure_pattern(kind).search(html)
    return match.group(0) if match else None


def drop_figure(html: str, kind: str) -> str:
    """The page without the figure of ``kind`` (its declaration stays): for testing that
    the checks notice."""
    return _figure_pattern(kind).sub("", html)


def check_html(html: str, expected: list[str] | None = None) -> list[str]:
    expected = declared_figures(html) if expected is None else expected
    problems = []
    if not expected:
        problems.append("the report declares no figures")
    for kind in expected:
        figure = extract_figure(html, kind)
        if figure is None:
            problems.append(f"figure {kind}: missing (no <figure id=\"fig-{kind}\">)")
            continue
        svg = re.search(r"<svg\b[^>]*>.*?</svg>", figure, re.S)
        if svg is None:
            problems.append(f"figure {kind}: no <svg>")
            continue
        paths = len(re.findall(r"<path\b", svg.group(0)))
        if paths < MIN_PATHS:
            problems.append(f"figure {kind}: its svg has {paths} path(s), fewer than {MIN_PATHS}")
        if not re.search(r'aria-label="[^"]+"', svg.group(0)) or "<title>" not in svg.group(0):
            problems.append(f"figure {kind}: no alt text (aria-label and <title>)")
        for mark, count in declared_marks(figure).items():
            drawn = len(re.findall(rf'<g id="fig-{re.escape(kind)}-{re.escape(mark)}-\d+"', svg.group(0)))
            if drawn != count:
                problems.append(f"figure {kind}: {drawn} {mark} mark(s) drawn, {count} declared")
    external = _EXTERNAL.search(html)
    if external:
        start = max(external.start() - 30, 0)
        problems.append(f"external reference: ...{html[start:external.end() + 30]!r}...")
    return problems


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("chromium not found on PATH: install Debian's chromium (apt-get install -y chromium)")


def screenshot(html_path: Path, png_path: Path, width: int = 1400, height: int = 4000) -> Path:
    """Render ``html_path`` in headless Chromium and write a ``width`` x ``height`` PNG."""
    chromium = find_chromium()
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="serbench-chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
                   f"--window-size={width},{height}", Path(html_path).resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not png_path.is_file():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"chromium failed (exit {done.returncode}) to screenshot {html_path}: {tail}")
    return png_path


def ink(png_path: Path, box: tuple[int, int, int, int] | None = None) -> float:
    """Share of non-white pixels (any channel below 235) in ``box`` (left, top, right,
    bottom) or the whole image."""
    import numpy as np
    from PIL import Image

    with Image.open(png_path) as image:
        pixels = np.asarray(image.convert("RGB").crop(box) if box else image.convert("RGB"))
    return float((pixels < 235).any(axis=2).mean())


def proof_sheet(html: str, kinds: list[str]) -> str:
    """A page with each figure's ``<svg>`` alone in a fixed box, stacked top to bottom;
    a missing figure leaves its box empty."""
    width, height = BOX
    boxes = []
    for index, kind in enumerate(kinds):
        figure = extract_figure(html, kind) or ""
        svg = re.search(r"<svg\b.*?</svg>", figure, re.S)
        boxes.append(f'<div class="box" style="top:{index * height}px">{svg.group(0) if svg else ""}</div>')
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>"
            "body{margin:0;background:#fff}"
            f".box{{position:absolute;left:0;width:{width}px;height:{height}px;overflow:hidden}}"
            ".box svg{display:block;max-width:100%;max-height:100%;width:auto;height:auto}"
            "</style></head><body>" + "".join(boxes) + "</body></html>")


def check_screenshots(html: str, workdir: Path, expected: list[str] | None = None) -> list[str]:
    """Screenshot the figures (``workdir/figures.png``) and require ink in every box."""
    kinds = declared_figures(html) if expected is None else expected
    if not kinds:
        return ["the report declares no figures"]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sheet = workdir / "figures.html"
    sheet.write_text(proof_sheet(html, kinds), encoding="utf-8")
    png = screenshot(sheet, workdir / "figures.png", width=BOX[0], height=BOX[1] * len(kinds))
    problems = []
    for index, kind in enumerate(kinds):
        share = ink(png, (0, index * BOX[1], BOX[0], (index + 1) * BOX[1]))
        if share < MIN_INK:
            problems.append(f"figure {kind}: blank on screen ({share:.2%} non-white pixels, need {MIN_INK:.1%})")
    return problems
