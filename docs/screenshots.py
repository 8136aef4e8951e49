"""Redraw the README's screenshots from a store: ``python docs/screenshots.py STORE``.

The TUI is driven headless (Textual's ``run_test``) and saved as SVG; the report is
written with ``engine report``; headless Chromium turns both into PNG files in
docs/images/. Needs ``chromium`` (``apt-get install -y chromium``). The README's
images come from a store of ``../shared/corpus/library`` built with the MusiCNN models.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"
TUI_SIZE = (150, 42)  # terminal cells


def _chromium(page: Path, png: Path, width: int, height: int) -> None:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        sys.exit("chromium is needed: apt-get install -y chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)


async def _tui_svg(store: Path, svg: Path) -> None:
    from tui.app import EngineApp

    app = EngineApp(store)
    async with app.run_test(size=TUI_SIZE) as pilot:
        await pilot.pause(1.0)
        await pilot.press("down", "down", "down", "n")  # a track with its nearest neighbours
        await pilot.pause(1.5)
        app.save_screenshot(filename=svg.name, path=str(svg.parent))


def main(store: Path) -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        asyncio.run(_tui_svg(store, tmp / "tui.svg"))
        page = tmp / "tui.html"  # the SVG scaled to the window, on the terminal's colour
        page.write_text('<html><body style="margin:0;background:#121212">'
                        '<img src="tui.svg" style="width:100%"></body></html>')
        _chromium(page, IMAGES / "tui.png", 1400, 830)
        subprocess.run(["engine", "report", "--store", str(store), "--out", str(tmp / "report")], check=True)
        # The figures, from the tempo section on (the page starts with counts and tables).
        report = tmp / "report" / "report.html"
        shot = report.with_name("shot.html")
        shot.write_text(report.read_text().replace(
            "</head>", "<style>#collection, #styles, nav { display: none }</style></head>", 1))
        _chromium(shot, IMAGES / "report.png", 1000, 1300)
    for png in ("tui.png", "report.png"):
        print(IMAGES / png)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
