"""The rendered site (moralkit.site): API reference, docs pages, links, and a chapter page in a real browser.

The fast tests build a site from a small executed notebook made here (one figure, links to the
docs). The slow test executes chapter 1 in the smoke profile, builds the site, and opens the
chapter page in headless Chromium: the figures must really be drawn (decoded, with a size on the
page) and the screenshot must not be blank. ``make setup`` installs Chromium where it can (root
with apt-get, as in CI); where it cannot, the test fails in CI and skips elsewhere, saying why.
"""

import base64
import html
import importlib
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from moralkit.colab import badge_url
from moralkit.site import DOCS_DIR, api_modules, build_site, executed_notebooks, public_names, summary_line
from moralkit.storage import ForeignFolderError

ROOT = Path(__file__).resolve().parent.parent
STEM = "01_payoff_matrices"


# --------------------------------------------------------------------------- helpers
class Page(HTMLParser):
    """The links, anchors, images and visible text of one HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.ids, self.images, self.text, self._skip = [], set(), [], [], 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) is not None and tag != "script":
                self.links.append(attrs[name])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join("".join(self.text).split())


def png_figure(tmp_path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 3, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def executed_notebook(folder: Path, stem: str = STEM, *, executed: bool = True, png: str = "") -> Path:
    cells = [
        {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# 1 · A chapter\n\nSee [the science](../docs/science.md#2-moral-rewards), "
                                                             "[the glossary](../docs/glossary.md) and [a test](../tests/test_site.py)."},
        {"cell_type": "code", "id": "plot", "metadata": {}, "execution_count": 1 if executed else None, "source": "plot()",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": png, "text/plain": "<Figure>"}}] if executed else []},
    ]
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "papermill": {"parameters": {"profile": "smoke", "output_dir": str(folder)}}}}
    path = folder / "notebooks" / f"{stem}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def unresolved_links(site: Path) -> list[str]:
    """Every relative href/src of the site that points to no file (or to a missing anchor of a page)."""
    pages = {p: Page(p.read_text(encoding="utf-8")) for p in site.rglob("*.html")}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            if not link or re.match(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)", link):
                continue
            target, _, fragment = link.partition("#")
            file = (path.parent / unquote(target)).resolve() if target else path
            if not file.is_file():
                broken.append(f"{path.relative_to(site)}: {link} (no such file)")
            elif fragment and file.suffix == ".html" and not {fragment, unquote(fragment)} & pages[file].ids:
                broken.append(f"{path.relative_to(site)}: {link} (no such anchor)")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workbook")
    executed_notebook(folder, png=png_figure(folder))
    return build_site(folder, folder / "site", progress=False)


# --------------------------------------------------------------------------- the builder
def test_api_reference_lists_every_public_function_with_its_summary(site):
    index = Page((site / "api" / "index.html").read_text()).plain
    seen = 0
    for name in api_modules():
        module = importlib.import_module(name)
        assert name in index, f"the API index leaves out {name}"
        page = Page((site / "api" / f"{name}.html").read_text())
        for public in public_names(module):
            obj = getattr(module, public)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != name:
                continue
            assert f"{name}.{public}" in page.ids, f"{name}.{public} has no entry in api/{name}.html"
            summary = summary_line(inspect.getdoc(obj))
            shown = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), summary)
            shown = " ".join(re.sub(r"[`*]", "", shown).split())
            assert shown in page.plain.replace("*", ""), f"api/{name}.html lacks {public}'s summary: {shown!r}"
            seen += 1
    assert seen > 150  # every module's functions and classes, not a handful


def test_api_reference_links_roles_and_shows_signatures(site):
    page = (site / "api" / "moralkit.workbook.html").read_text()
    assert "def run_workbook(output_dir: str | Path = 'outputs'," in html.unescape(page)  # annotations without quotes
    # ":mod:`moralkit.chapters`" in run_workbook's docstring becomes a link to that module's page
    assert 'href="moralkit.chapters.html"' in page
    # doctests are shown as code
    assert '<code class="language-python">&gt;&gt;&gt; progress_line(' in page


def test_docs_pages_are_rendered(site):
    for doc in sorted(DOCS_DIR.glob("*.md")):
        name = "index.html" if doc.name == "README.md" else f"{doc.stem}.html"
        text = (site / "docs" / name).read_text()
        heading = re.search(r"^# (.+)$", doc.read_text(), flags=re.M).group(1)
        assert f">{html.escape(heading, quote=False)}</h1>" in text, f"docs/{name}: heading not rendered"
        assert "](" not in Page(text).plain, f"docs/{name}: a Markdown link was left unrendered"
    design = (site / "docs" / "design.html").read_text()
    assert "<table>" in design and "| module |" not in design  # a Markdown table became a table
    index = (site / "docs" / "index.html").read_text()
    assert 'href="science.html"' in index and 'href="run-folder.html"' in index  # .md links became pages
    assert '<h2 id="5-fine-tuning">' in (site / "docs" / "science.html").read_text()  # GitHub's anchor for "## 5. Fine-tuning"


def test_every_relative_link_in_the_site_resolves(site):
    assert not unresolved_links(site)
    chapter = Page((site / "chapters" / f"{STEM}.html").read_text())
    # links of the notebook: docs become pages (with their anchor), other repository files go to GitHub
    assert "../docs/science.html#2-moral-rewards" in chapter.links
    assert "../docs/glossary.html" in chapter.links
    assert any(link.endswith("/blob/main/tests/test_site.py") for link in chapter.links)


def test_the_link_check_sees_a_broken_link(site, tmp_path):
    copy = shutil.copytree(site, tmp_path / "copy")
    (copy / "docs" / "glossary.html").unlink()
    assert any("glossary.html (no such file)" in b for b in unresolved_links(copy))


def test_chapter_page_has_its_figure_badge_and_profile(site):
    text = (site / "chapters" / f"{STEM}.html").read_text()
    page = Page(text)
    assert any(src.startswith("data:image/png;base64,") for src in page.images)
    assert badge_url(STEM) in page.links
    assert "smoke" in page.plain and "not results" in page.plain
    front = Page((site / "index.html").read_text())
    assert f"chapters/{STEM}.html" in front.links and badge_url(STEM) in front.links


def test_site_refuses_a_foreign_folder_and_replaces_its_own(site, tmp_path):
    workbook = site.parent
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFolderError):
        build_site(workbook, theirs, api=False, progress=False)
    assert (theirs / "notes.txt").read_text() == "mine"
    ours = build_site(workbook, tmp_path / "ours", api=False, progress=False)
    (ours / "stale.html").write_text("old")
    build_site(workbook, ours, api=False, progress=False)
    assert not (ours / "stale.html").exists() and (ours / "index.html").exists()


def test_unexecuted_or_missing_notebooks_are_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="moralkit workbook"):
        executed_notebooks(tmp_path)
    executed_notebook(tmp_path, executed=False)
    with pytest.raises(ValueError, match="never been executed"):
        executed_notebooks(tmp_path)


# --------------------------------------------------------------------------- in a real browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--allow-file-access-from-files"]


def chromium() -> str:
    for name in (os.environ.get("MORALKIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    installable = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    message = ("headless Chromium is not installed, so the site cannot be checked in a browser. `make setup` "
               "installs it where it can (`apt-get install -y chromium`, as root)")
    if installable or os.environ.get("CI"):
        pytest.fail(message + ("; it is root with apt-get here, so run `make setup` (or that command) and see "
                               "why it failed." if installable else "; this CI machine lacks root or apt-get."))
    pytest.skip(message + "; here it cannot (not root, or no apt-get): install chromium, or set MORALKIT_CHROMIUM "
                "to a Chrome/Chromium binary.")


def run_chromium(binary: str, profile: Path, *args: str) -> str:
    done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return done.stdout


PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="{page}" style="width:1280px;height:900px"></iframe>
<pre id="result">not loaded</pre><script>
document.getElementById("f").addEventListener("load", () => {{
  const doc = document.getElementById("f").contentDocument;
  const pngs = [...doc.querySelectorAll('img[src^="data:image/png"]')];
  const drawn = pngs.filter(i => i.complete && i.naturalWidth > 50 && i.naturalHeight > 50 && i.getBoundingClientRect().width > 50);
  document.getElementById("result").textContent = "RESULT " + JSON.stringify({{png: pngs.length, drawn: drawn.length}});
}});
</script></body></html>"""


@pytest.mark.slow
def test_chapter_page_shows_its_figures_in_headless_chromium(tmp_path, monkeypatch):
    from PIL import Image

    from moralkit.workbook import count_outputs, run_workbook

    binary = chromium()
    monkeypatch.setenv("MORALKIT_PROFILE", "smoke")
    monkeypatch.setenv("MORALKIT_THREADS", "1")
    [executed] = run_workbook(tmp_path, profile="smoke", notebooks=["01"], progress=False)
    figures = count_outputs(executed)
    assert figures >= 2
    began = time.time()
    site = build_site(tmp_path, tmp_path / "site", api=False, progress=False)
    build_seconds = time.time() - began
    page = site / "chapters" / f"{executed.stem}.html"
    assert not unresolved_links(site)

    # the DOM as Chromium parsed it: every figure is a PNG that decodes, of a real size
    dom = Page(run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", page.as_uri()))
    pngs = [src for src in dom.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) == figures, f"{len(pngs)} inline PNGs in the page, {figures} in the notebook"
    for src in pngs:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "PNG" and min(image.size) > 50

    # the browser really drew them: decoded, with a size on the page
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.format(page=page.relative_to(tmp_path).as_posix()))
    out = run_chromium(binary, tmp_path / "profile-probe", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    result = json.loads(re.search(r"RESULT (\{.*?\})", html.unescape(out)).group(1))
    assert result == {"png": figures, "drawn": figures}, result

    # a screenshot of the page's top with its first figures: not blank, and in colour
    shot = tmp_path / "chapter.png"
    run_chromium(binary, tmp_path / "profile-shot", "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 500, f"the screenshot has only {len(colours)} colours: is the page blank?"
    bluish = sum(n for n, (r, g, b) in colours if b > r + 40 and b > 120)  # the payoff heatmaps are blue
    assert bluish > 20_000, f"only {bluish} blue pixels: the payoff heatmaps are not drawn"
    if os.environ.get("MORALKIT_SITE_SCREENSHOT"):  # keep it for a person to look at
        shutil.copy(shot, os.environ["MORALKIT_SITE_SCREENSHOT"])
    assert build_seconds < 60, f"building the site of one chapter took {build_seconds:.0f} s"
