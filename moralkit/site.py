"""The workbook as a static website: executed chapters with their figures, the docs, an API reference.

``moralkit site`` (``make site``) turns the executed notebooks that ``moralkit workbook`` wrote into
``<workbook>/notebooks`` into HTML pages -- their figures are inline PNGs, so the site needs no
server and opens from disk -- beside the Markdown pages of ``docs/`` and an API reference written
from the package's docstrings. Every chapter page carries its Colab badge
(:func:`moralkit.colab.badge_html`) and says which profile it was executed in::

    site/
      index.html                 the chapters, the docs, the API reference
      chapters/<notebook>.html   one executed notebook each
      docs/<page>.html           docs/*.md (docs/README.md becomes docs/index.html)
      api/index.html             every module with its first docstring line
      api/<module>.html          every public name of a module, with signature and docstring
      style.css

Links between the Markdown sources (``docs/science.md``, ``../notebooks/01_payoff_matrices.ipynb``)
become links between the pages; a link to any other file of the repository points at it on GitHub
(:data:`moralkit.colab.REPOSITORY`). The site is written as one folder, atomically, and only into a
folder that is new, empty or an earlier site (it holds the marker file :data:`SITE_MARKER`).
"""

from __future__ import annotations

import html
import importlib
import inspect
import json
import pkgutil
import posixpath
import re
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .chapters import CHAPTERS
from .colab import BRANCH, REPOSITORY, badge_html
from .storage import claim_folder, write_folder

__all__ = [
    "SITE_MARKER",
    "DOCS_DIR",
    "README",
    "build_site",
    "executed_notebooks",
    "render_markdown",
    "api_modules",
    "public_names",
    "summary_line",
]

SITE_MARKER: str = ".moralkit-site"
"""The file that marks a folder as a site ``moralkit site`` wrote (so it may replace it)."""
_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR: Path = _ROOT / "docs"
"""The Markdown pages rendered into ``docs/`` of the site (a checkout's ``docs/``)."""
README: Path = _ROOT / "README.md"
"""The README whose first paragraph opens the site's front page."""


# --------------------------------------------------------------------------- inputs
def executed_notebooks(workbook_dir: str | Path) -> list[Path]:
    """The executed notebooks of a workbook output folder, in chapter order.

    ``workbook_dir`` is what ``moralkit workbook --out`` wrote (its ``notebooks/`` is used) or a
    folder of executed notebooks itself. Raises when there is none, or when a notebook was never
    executed (no cell has run), saying how to make them.
    """
    folder = Path(workbook_dir).expanduser()
    candidates = folder / "notebooks" if (folder / "notebooks").is_dir() else folder
    paths = sorted(candidates.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(
            f"No executed notebooks (01_*.ipynb, ...) in {candidates}. Run the workbook first: `make workbook` "
            f"or `moralkit workbook --out {folder}` (e.g. `--profile smoke` for a quick one), then build the site.")
    for path in paths:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        if not any(c.get("execution_count") for c in cells if c.get("cell_type") == "code"):
            raise ValueError(f"{path} has never been executed (no code cell has run): the site shows executed "
                             f"notebooks. Run `moralkit workbook --out {folder}` and build the site from there.")
    return paths


# --------------------------------------------------------------------------- markdown
def _markdown_it():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(["table", "strikethrough"])


def _slug(text: str) -> str:
    """A heading's anchor as GitHub makes it (``## 5. Training`` -> ``5-training``)."""
    text = re.sub(r"<[^>]+>", "", html.unescape(text)).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def _anchor_headings(body: str) -> str:
    seen: dict[str, int] = {}

    def add_id(m: re.Match) -> str:
        slug = _slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        return f'<h{m.group(1)} id="{slug}{f"-{n}" if n else ""}">{m.group(2)}</h{m.group(1)}>'

    return re.sub(r"<h([1-6])>(.*?)</h\1>", add_id, body, flags=re.S)


def render_markdown(text: str) -> str:
    """Markdown (CommonMark with tables) as HTML, headings given GitHub's anchors.

    >>> render_markdown("## 5. Training\\n\\n| a |\\n|---|\\n| 1 |")
    '<h2 id="5-training">5. Training</h2>\\n<table>\\n<thead>\\n<tr>\\n<th>a</th>\\n</tr>\\n</thead>\\n<tbody>\\n<tr>\\n<td>1</td>\\n</tr>\\n</tbody>\\n</table>\\n'
    """
    return _anchor_headings(_markdown_it().render(text))


_HREF = re.compile(r'(href|src)="([^"]*)"')
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def _relink(body: str, source: str, page: str, pages: dict[str, str]) -> str:
    """Rewrite relative links of a page made from the repository file ``source`` (e.g. ``docs/glossary.md``).

    A link to a file that became a page points at that page; any other file of the repository is
    linked on GitHub.
    """
    here = posixpath.dirname(page) or "."

    def fix(m: re.Match) -> str:
        attr, href = m.group(1), html.unescape(m.group(2))
        if not href or _EXTERNAL.match(href):
            return m.group(0)
        path, hashmark, fragment = href.partition("#")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if target in pages:
            new = posixpath.relpath(pages[target], here)
        elif target.startswith(".."):
            return m.group(0)  # outside the repository: nothing to point at
        else:
            new = f"{REPOSITORY}/{'tree' if path.endswith('/') else 'blob'}/{BRANCH}/{target}"
        return f'{attr}="{html.escape(new + hashmark + fragment)}"'

    return _HREF.sub(fix, body)


# --------------------------------------------------------------------------- page frame
_CSS = """\
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 0; }
.mk-nav { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: center; padding: .6rem 1.5rem;
  background: #24344d; color: #fff; font-size: 15px; }
.mk-nav a { color: #fff; text-decoration: none; } .mk-nav a:hover { text-decoration: underline; }
.mk-nav .mk-home { font-weight: 700; margin-right: .6rem; } .mk-nav .colab-badge { margin-left: auto; }
.mk-nav img { vertical-align: middle; height: 20px; }
.mk-note { margin: 0; padding: .5rem 1.5rem; background: #fff4d6; border-bottom: 1px solid #e6cf8b; font-size: 15px; }
main.mk-main { max-width: 56rem; margin: 0 auto; padding: 1rem 1.5rem 4rem; }
main.mk-main code { background: #f1f3f6; padding: 0 .2em; border-radius: 3px; font-size: 90%; }
main.mk-main pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 4px; }
main.mk-main pre code { background: none; padding: 0; }
main.mk-main table { border-collapse: collapse; margin: 1rem 0; }
main.mk-main th, main.mk-main td { border: 1px solid #d0d7de; padding: .3rem .6rem; vertical-align: top; text-align: left; }
.mk-api-entry { border-top: 1px solid #d0d7de; padding-top: .5rem; margin-top: 1.5rem; }
.mk-sig { font-family: ui-monospace, monospace; font-size: 15px; background: #eef2f8; padding: .4rem .6rem; border-radius: 4px; }
.mk-member { margin-left: 1.5rem; }
"""


def _nav(rel_root: str, extra: str = "") -> str:
    return (f'<nav class="mk-nav"><a class="mk-home" href="{rel_root}index.html">moralkit</a>'
            f'<a href="{rel_root}index.html#chapters">Chapters</a><a href="{rel_root}docs/index.html">Docs</a>'
            f'<a href="{rel_root}api/index.html">API reference</a>{extra}</nav>')


def _page(title: str, body: str, rel_root: str, *, nav_extra: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)} · moralkit</title>\n"
            f'<link rel="stylesheet" href="{rel_root}style.css">\n</head>\n<body>\n'
            f'{_nav(rel_root, nav_extra)}\n<main class="mk-main">\n{body}\n</main>\n</body>\n</html>\n')


# --------------------------------------------------------------------------- chapters
@dataclass(frozen=True)
class _Chapter:
    stem: str
    title: str
    profile: str | None
    figures: int
    page: str


def _chapter_title(stem: str, nb: dict) -> str:
    if stem in CHAPTERS:
        return CHAPTERS[stem].title
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(cell["source"]), flags=re.M)
            if m:
                return m.group(1).strip()
    return stem


def _smoke_note(profile: str | None) -> str:
    if profile == "smoke":
        return ('<p class="mk-note">Executed in the <b>smoke</b> profile: every code path ran, in minutes, but '
                "its figures and numbers are not results. Run <code>make workbook PROFILE=cpu</code> (or "
                "<code>gpu</code>) and rebuild the site for real ones.</p>")
    if profile:
        return f'<p class="mk-note">Executed in the <b>{html.escape(profile)}</b> profile.</p>'
    return ""


def _render_chapter(path: Path, chapters: list[_Chapter], index: int, pages: dict[str, str]) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    me = chapters[index]
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{me.title} · moralkit"}})
    links = ""
    if index > 0:
        links += f'<a href="{chapters[index - 1].stem}.html">← {html.escape(chapters[index - 1].title)}</a>'
    if index + 1 < len(chapters):
        links += f'<a href="{chapters[index + 1].stem}.html">{html.escape(chapters[index + 1].title)} →</a>'
    header = (f'<link rel="stylesheet" href="../style.css">\n{_nav("../", links + badge_html(me.stem))}\n'
              f"{_smoke_note(me.profile)}\n")
    body = _relink(body, f"notebooks/{path.name}", me.page, pages)
    body, found = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + header, body, count=1)
    if not found:
        raise RuntimeError(f"nbconvert's page for {path.name} has no <body>: cannot add the navigation.")
    return body


# --------------------------------------------------------------------------- API reference
def api_modules() -> list[str]:
    """The public modules of moralkit (no part of the name starts with ``_``), sorted by name."""
    import moralkit

    names = [info.name for info in pkgutil.walk_packages(moralkit.__path__, "moralkit.")]
    return sorted(n for n in ["moralkit", *names] if not any(p.startswith("_") for p in n.split(".")))


def public_names(module) -> list[str]:
    """A module's public names: its ``__all__``, else the functions and classes it defines.

    >>> import moralkit.chapters
    >>> public_names(moralkit.chapters)[:3]
    ['Chapter', 'CHAPTERS', 'chapter']
    """
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, v in vars(module).items() if not n.startswith("_")
            and (inspect.isfunction(v) or inspect.isclass(v)) and getattr(v, "__module__", None) == module.__name__]


def summary_line(doc: str | None) -> str:
    """The summary of a docstring: its first paragraph as one line, or ``""``.

    >>> summary_line("Play one game\\nof the catalogue.\\n\\nMore here.")
    'Play one game of the catalogue.'
    """
    return " ".join(re.split(r"\n\s*\n", inspect.cleandoc(doc).strip())[0].split()) if doc else ""


def _attribute_docs(module) -> dict[str, str]:
    """``NAME: type = value`` followed by a string: the string documents NAME (also inside classes: ``Class.NAME``)."""
    import ast

    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs = {}

    def scan(body, prefix):
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.ClassDef):
                scan(node.body, f"{prefix}{node.name}.")
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if (isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[prefix + target.id] = nxt.value.value
        if body and isinstance(body[-1], ast.ClassDef):
            scan(body[-1].body, f"{prefix}{body[-1].name}.")

    scan(tree.body, "")
    return docs


_ROLE = re.compile(r":(?:py:)?(?:func|class|data|attr|meth|mod|obj|exc|const):`~?([^`<]*?)(?:\s*<([^>]+)>)?`")


def _docstring_markdown(doc: str, resolve: Callable[[str], str | None]) -> str:
    """A reST-flavoured docstring as Markdown: roles become linked code, doctests and ``::`` blocks code."""

    def role(m: re.Match) -> str:
        shown, target = m.group(1).strip(), (m.group(2) or m.group(1)).strip()
        if "`~" in m.group(0):
            shown = shown.rsplit(".", 1)[-1]
        url = resolve(target)
        return f"[`{shown}`]({url})" if url else f"`{shown}`"

    def prose(line: str) -> str:
        return re.sub(r"``([^`]+)``", r"`\1`", _ROLE.sub(role, line))

    lines, out, i = inspect.cleandoc(doc).splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += ["", "```python", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
            continue
        if line.rstrip().endswith("::"):
            out.append(prose(line.rstrip()[:-1]) if line.strip() != "::" else "")
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            out += ["", "```", *textwrap.dedent("\n".join(block)).strip("\n").splitlines(), "```", ""]
            continue
        out.append(prose(line))
        i += 1
    return "\n".join(out)


class _Annotation:
    """An annotation kept as text (``from __future__ import annotations``), shown without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"

    def plain(annotation):
        return _Annotation(annotation) if isinstance(annotation, str) else annotation

    params = [p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=plain(sig.return_annotation)))


def _kind(obj) -> str:
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "def"
    return "data"


def _api_index(modules: list[tuple[str, Any]]) -> dict[str, str]:
    """``module.name`` (and ``module``) -> the API page and anchor that documents it."""
    index = {}
    for name, module in modules:
        index[name] = f"{name}.html"
        for public in public_names(module):
            obj = getattr(module, public, None)
            home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
            if home in (None, name) or not str(home).startswith("moralkit"):
                index[f"{name}.{public}"] = f"{name}.html#{name}.{public}"
                if inspect.isclass(obj):
                    for member in vars(obj):
                        if not member.startswith("_"):
                            index[f"{name}.{public}.{member}"] = f"{name}.html#{name}.{public}.{member}"
    return index


def _resolver(index: dict[str, str], module: str) -> Callable[[str], str | None]:
    def resolve(target: str) -> str | None:
        target = target.strip().lstrip("~.").removesuffix("()")
        bare = target.removeprefix("moralkit.")
        for key in (f"moralkit.{bare}", f"{module}.{bare}", target):
            if key in index:
                return index[key]
        ends = [k for k in index if k.endswith(f".{bare}")]
        return index[ends[0]] if len(ends) == 1 else None

    return resolve


def _render_api_module(name: str, module, index: dict[str, str], md) -> str:
    resolve = _resolver(index, name)
    attr_docs = _attribute_docs(module)
    doc = inspect.getdoc(module) or ""
    parts = [f"<h1><code>{name}</code></h1>", md.render(_docstring_markdown(doc, resolve)) if doc else ""]
    rows, entries = [], []
    for public in public_names(module):
        if not hasattr(module, public):
            raise AttributeError(f"{name}.__all__ names {public!r}, which the module does not define: fix its __all__.")
        obj = getattr(module, public)
        anchor = f"{name}.{public}"
        home = getattr(obj, "__module__", "") if (inspect.isclass(obj) or inspect.isfunction(obj)) else ""
        if home and home != name and home.startswith("moralkit") and f"{home}.{public}" in index:
            rows.append(f'<tr><td><a href="{index[f"{home}.{public}"]}"><code>{public}</code></a></td>'
                        f"<td>from <code>{home}</code></td></tr>")
            continue
        kind = _kind(obj)
        docstring = attr_docs.get(public) if kind == "data" else inspect.getdoc(obj)
        if kind == "data":
            value = repr(obj)
            sig = f"{public} = {html.escape(value if len(value) <= 120 else value[:117] + '...')}"
        else:
            sig = f"{kind} {public}{html.escape(_signature(obj))}"
        rows.append(f'<tr><td><a href="#{anchor}"><code>{public}</code></a></td>'
                    f"<td>{md.renderInline(_docstring_markdown(summary_line(docstring), resolve))}</td></tr>")
        entry = [f'<section class="mk-api-entry" id="{anchor}"><div class="mk-sig">{sig}</div>']
        if docstring:
            entry.append(md.render(_docstring_markdown(docstring, resolve)))
        if inspect.isclass(obj):
            for member, raw in vars(obj).items():
                if member.startswith("_") or member not in dir(obj):
                    continue
                value = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                if isinstance(value, property):
                    msig, mdoc = f"property {member}", inspect.getdoc(value)
                elif inspect.isfunction(value):
                    msig, mdoc = f"def {member}{html.escape(_signature(value))}", inspect.getdoc(value)
                elif f"{public}.{member}" in attr_docs:
                    msig, mdoc = f"{member}", attr_docs[f"{public}.{member}"]
                else:
                    continue
                entry.append(f'<div class="mk-member" id="{anchor}.{member}"><div class="mk-sig">{msig}</div>'
                             f"{md.render(_docstring_markdown(mdoc, resolve)) if mdoc else ''}</div>")
        entry.append("</section>")
        entries.append("\n".join(entry))
    if rows:
        parts.append("<h2>Contents</h2><table>" + "".join(rows) + "</table>")
    parts += entries
    return "\n".join(parts)


def _api_pages(md) -> dict[str, str]:
    modules = [(name, importlib.import_module(name)) for name in api_modules()]
    index = _api_index(modules)
    pages = {}
    rows = []
    for name, module in modules:
        rows.append(f'<tr><td><a href="{name}.html"><code>{name}</code></a></td>'
                    f"<td>{md.renderInline(_docstring_markdown(summary_line(inspect.getdoc(module)), lambda _: None))}</td></tr>")
        pages[f"api/{name}.html"] = _page(name, _render_api_module(name, module, index, md), "../")
    pages["api/index.html"] = _page("API reference", "<h1>API reference</h1>\n<p>Every public module of "
                                    "<code>moralkit</code>, written from its docstrings.</p>\n<table>"
                                    + "".join(rows) + "</table>", "../")
    return pages


# --------------------------------------------------------------------------- the site
def _docs_pages(docs_dir: Path | None) -> list[Path]:
    return sorted(docs_dir.glob("*.md")) if docs_dir is not None and docs_dir.is_dir() else []


def _first_heading(text: str, default: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else default


def _readme_intro(readme: Path | None) -> str:
    if readme is None or not readme.is_file():
        return ""
    paragraphs = re.split(r"\n\s*\n", readme.read_text(encoding="utf-8"))
    body = [p for p in paragraphs if p.strip() and not p.lstrip().startswith("#")]
    return "\n\n".join(body[:2])


def build_site(
    workbook_dir: str | Path = "outputs",
    out: str | Path = "outputs/site",
    *,
    docs_dir: str | Path | None = DOCS_DIR,
    readme: str | Path | None = README,
    api: bool = True,
    progress: bool = True,
) -> Path:
    """Build the static site from the executed notebooks in ``workbook_dir`` into ``out``; returns ``out``.

    ``docs_dir`` (default: the checkout's ``docs/``) is rendered into ``docs/``; ``api`` adds the API
    reference. ``out`` is replaced as a whole (atomically) if it is an earlier site, and refused if
    it holds anything else. Open ``<out>/index.html`` in a browser: no server is needed.
    """
    import markdown_it  # noqa: F401  -- fail here, with the fix, rather than half-way
    import nbconvert  # noqa: F401

    began = time.time()
    notebooks = executed_notebooks(workbook_dir)
    out = claim_folder(out, marker=SITE_MARKER, kind="the site",
                       fix="choose another --out, or empty that folder (the site replaces its whole folder).")
    docs = _docs_pages(Path(docs_dir) if docs_dir is not None else None)
    md = _markdown_it()

    pages: dict[str, str] = {}  # repository path -> site path, for links between sources
    for doc in docs:
        pages[f"docs/{doc.name}"] = "docs/index.html" if doc.name == "README.md" else f"docs/{doc.stem}.html"
    if not any(p == "docs/index.html" for p in pages.values()):
        pages["docs/"] = "docs/index.html"
    pages["README.md"] = "index.html"
    chapters = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        profile = nb.get("metadata", {}).get("papermill", {}).get("parameters", {}).get("profile")
        figures = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
        chapters.append(_Chapter(path.stem, _chapter_title(path.stem, nb), profile, figures, f"chapters/{path.stem}.html"))
        pages[f"notebooks/{path.name}"] = f"chapters/{path.stem}.html"

    files: dict[str, str] = {"style.css": _CSS, SITE_MARKER: "moralkit site\n"}
    for i, path in enumerate(notebooks):
        if progress:
            print(f"[moralkit] site: chapter {path.stem}", flush=True)
        files[chapters[i].page] = _render_chapter(path, chapters, i, pages)

    titles = {}
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        site_path = pages[f"docs/{doc.name}"]
        titles[site_path] = _first_heading(text, doc.stem)
        body = _relink(render_markdown(text), f"docs/{doc.name}", site_path, pages)
        files[site_path] = _page(titles[site_path], body, "../")
    if "docs/index.html" not in files:
        listing = "".join(f'<li><a href="{posixpath.basename(p)}">{html.escape(t)}</a></li>' for p, t in titles.items())
        files["docs/index.html"] = _page("Documentation", f"<h1>Documentation</h1><ul>{listing}</ul>", "../")
        titles["docs/index.html"] = "Documentation"

    if api:
        if progress:
            print("[moralkit] site: API reference", flush=True)
        files.update(_api_pages(md))
    else:
        files["api/index.html"] = _page("API reference", "<h1>API reference</h1><p>Not built (--no-api).</p>", "../")

    files["index.html"] = _page("moralkit", _front_page(chapters, titles, readme, md), "")

    def fill(tmp: Path) -> None:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")

    write_folder(out, fill)
    if progress:
        print(f"[moralkit] site: {len(chapters)} chapter(s), {len(docs)} docs page(s), "
              f"{sum(p.startswith('api/') for p in files)} API page(s) in {time.time() - began:.0f} s -> "
              f"{Path(out) / 'index.html'}", flush=True)
    return Path(out)


def _front_page(chapters: list[_Chapter], doc_titles: dict[str, str], readme, md) -> str:
    intro = _readme_intro(Path(readme) if readme is not None else None)
    intro_html = _relink(md.render(intro), "README.md", "index.html", {}) if intro else ""
    rows = "".join(
        f'<tr><td>{int(c.stem[:2])}</td><td><a href="{c.page}">{html.escape(c.title)}</a></td>'
        f"<td>{c.figures}</td><td>{html.escape(c.profile or '?')}</td><td>{badge_html(c.stem)}</td></tr>"
        for c in chapters)
    docs = "".join(f'<li><a href="{p}">{html.escape(t)}</a></li>' for p, t in doc_titles.items())
    return (f"<h1>moralkit: moral alignment of LLM agents with intrinsic rewards</h1>\n{intro_html}\n"
            f'<h2 id="chapters">Chapters</h2>\n<table><thead><tr><th>#</th><th>chapter</th><th>figures</th>'
            f"<th>executed in profile</th><th>Colab</th></tr></thead><tbody>{rows}</tbody></table>\n"
            + (f"<h2>Documentation</h2>\n<ul>{docs}</ul>\n" if docs else "")
            + '<h2>API reference</h2>\n<p><a href="api/index.html">Every module and public function</a>, '
              "from the docstrings.</p>")
