"""Check that the built book reads offline: no remote scripts, and formulas typeset.

Run it after ``make docs``::

    .venv/bin/python docs/check_offline.py                 # convolution.html
    .venv/bin/python docs/check_offline.py --page sliding.html --out /tmp/sliding.png

It does three things:

1. reads every page of ``docs/_build/html`` and fails on a ``<script src>`` or a
   stylesheet ``<link href>`` that points off the machine (``http:``, ``https:`` or
   ``//``);
2. checks that MathJax is in the build (``_static/mathjax/tex-chtml.js``);
3. opens one page in headless Chromium with every host name unresolvable, so that
   nothing can come from the network, lets MathJax run, counts the typeset formulas
   in the resulting page (``mjx-container`` elements) and saves a screenshot.

Step 3 needs Chromium (Debian: ``apt-get install chromium``); without it the script
says so and stops after steps 1 and 2 with exit status 2. Exit status 0 means every
check passed, 1 that one failed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build" / "html"
MATHJAX = Path("_static") / "mathjax" / "tex-chtml.js"

# <script ... src="..."> and <link ... href="..."> (the link only when it loads a
# stylesheet or a script: a plain hyperlink to a web page is not a load).
SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
HREF = re.compile(r"\bhref=[\"']([^\"']+)[\"']", re.IGNORECASE)
LOADING_REL = re.compile(r"\brel=[\"'][^\"']*(stylesheet|preload|modulepreload)", re.IGNORECASE)
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)


def remote_loads(html: str) -> list[str]:
    """The scripts and stylesheets that ``html`` would fetch from another machine."""
    found = [src for src in SCRIPT_SRC.findall(html) if REMOTE.match(src)]
    for tag in LINK_TAG.findall(html):
        href = HREF.search(tag)
        if href and LOADING_REL.search(tag) and REMOTE.match(href.group(1)):
            found.append(href.group(1))
    return found


def check_pages(build: Path) -> list[str]:
    """Every remote load of every page of ``build``, as ``page: url`` lines."""
    problems = []
    for page in sorted(build.rglob("*.html")):
        for url in remote_loads(page.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{page.relative_to(build)}: {url}")
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_args(chromium: str, profile: str) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # No host name resolves: a page that needs the network cannot get it.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        # Give MathJax (deferred, then asynchronous) time to typeset before the capture.
        "--virtual-time-budget=15000",
    ]


def render(chromium: str, url: str, out: Path, size: str) -> tuple[int, str]:
    """Typeset formulas in ``url`` once its scripts ran, and a screenshot in ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [*chromium_args(chromium, profile), "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        ).stdout
    with tempfile.TemporaryDirectory() as profile:
        shot = subprocess.run(
            [
                *chromium_args(chromium, profile),
                f"--screenshot={out}",
                f"--window-size={size}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    return dom.count("<mjx-container"), shot.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", type=Path, default=BUILD, help="the built HTML folder")
    parser.add_argument("--page", default="convolution.html", help="the page to render")
    parser.add_argument("--out", type=Path, default=BUILD.parent / "offline-check.png")
    parser.add_argument("--window-size", default="1200,1600", help="WIDTH,HEIGHT in pixels")
    args = parser.parse_args(argv)

    build = args.build.resolve()
    if not (build / "index.html").is_file():
        print(f"{build} holds no built book: run `make docs` first")
        return 1
    failed = False

    problems = check_pages(build)
    pages = len(list(build.rglob("*.html")))
    if problems:
        failed = True
        print(f"{len(problems)} remote scripts or stylesheets:")
        for line in problems:
            print("  " + line)
    else:
        print(f"{pages} pages: no remote script or stylesheet")

    if (build / MATHJAX).is_file():
        print(f"MathJax is in the build: {MATHJAX}")
    else:
        failed = True
        print(f"MathJax is missing from the build: no {MATHJAX}")

    chromium = find_chromium()
    if chromium is None:
        print("Chromium not found (apt-get install chromium): formulas not rendered")
        return 1 if failed else 2
    page = build / args.page
    if not page.is_file():
        print(f"no page {args.page} in {build}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    typeset, log = render(chromium, page.as_uri(), args.out.resolve(), args.window_size)
    if typeset:
        print(f"{args.page}, offline: MathJax typeset {typeset} formulas")
    else:
        failed = True
        print(f"{args.page}, offline: no formula typeset (is MathJax loading?)")
    if args.out.is_file():
        print(f"screenshot: {args.out}")
    else:
        failed = True
        print("Chromium wrote no screenshot:\n" + log[-2000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
