"""The built site, in a real browser, with the network cut off.

Every page of the site is opened in headless Chromium from a loopback HTTP server; any
request to another host is blocked AND counted as a failure. A page passes when it has no
console or script errors, every altair chart has drawn an svg/canvas, and MathJax has
typeset every equation (no raw TeX left). Colab links must open notebooks that exist.
At 1280 x 800 every chart (legend included) must fit the article's column, and at 1280 x 800
and 390 x 844 the page must not scroll sideways; a full-page screenshot of every page at
1280 px lands in _build/screenshots/ (next to the site) for a reader of the change to look at.

Site: $ADAMDIST_SITE (default _build/html). Without a built site the tests are skipped,
unless ADAMDIST_REQUIRE_SITE=1 (.ci/run), which makes a missing site or browser an error.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import bookinfo  # noqa: E402
import site_reports  # noqa: E402

SITE = Path(os.environ.get("ADAMDIST_SITE") or ROOT / "_build" / "html").resolve()
REQUIRE_SITE = os.environ.get("ADAMDIST_REQUIRE_SITE", "") not in ("", "0")
CHROMIUM = os.environ.get("ADAMDIST_CHROMIUM", "/usr/bin/chromium")
# Root in a container: no sandbox; no GPU; and none of Chromium's own calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-default-apps", "--disable-extensions"]
CHART_SELECTOR = '.adamdist-chart, [id^="altair-viz"], .vega-embed'
WAIT_MS = 30_000


def _pages() -> list[Path]:
    if not (SITE / "index.html").is_file():
        return []
    return sorted(p for p in SITE.rglob("*.html") if "_static" not in p.relative_to(SITE).parts)


PAGES = _pages()


def _missing_site() -> None:
    msg = (f"no built site at {SITE} (build it with `bash tools/build_book.sh`, "
           "or point ADAMDIST_SITE at one)")
    if REQUIRE_SITE:
        pytest.fail(msg + "; ADAMDIST_REQUIRE_SITE is set, so this is an error")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def site() -> Path:
    if not PAGES:
        _missing_site()
    return SITE


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(server):
    if not Path(CHROMIUM).is_file():
        msg = f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set ADAMDIST_CHROMIUM)"
        if REQUIRE_SITE:
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _is_redirect_stub(page: Path) -> bool:
    # Jupyter Book's index.html only forwards to the root document.
    return 'http-equiv="Refresh"' in page.read_text(encoding="utf-8", errors="replace")[:2000]


# The text a reader sees, without code blocks, where TeX may be quoted on purpose.
_VISIBLE_TEXT_JS = """() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el; el = el.parentElement) {
        if (skip.has(el.tagName) || el.classList.contains("highlight")) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  const parts = [];
  while (walker.nextNode()) parts.push(walker.currentNode.nodeValue);
  return parts.join(" ");
}"""
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\end\{")

_CHARTS_DRAWN_JS = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(el => !el.parentElement.closest(".vega-embed, .adamdist-chart"))
  .every(el => el.querySelector("svg, canvas"))"""
_EMPTY_CHARTS_JS = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(el => !el.parentElement.closest(".vega-embed, .adamdist-chart"))
  .filter(el => !el.querySelector("svg, canvas"))
  .map(el => (el.id || el.className) + ": " + el.textContent.slice(0, 200))"""
_MATH_JS = """() => Array.from(document.querySelectorAll(".math"))
  .filter(el => !el.querySelector("mjx-container")).map(el => el.textContent.slice(0, 80))"""


def check_page(browser, server: str, site: Path, page_path: Path) -> list[str]:
    """Everything wrong with one page, as readable lines (empty: the page is fine)."""
    local = urlsplit(server).netloc
    problems: list[str] = []
    external: list[str] = []

    def gate(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == local:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort("blockedbyclient")

    context = browser.new_context(service_workers="block")
    context.route("**/*", gate)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # Requests that never reach the router (e.g. a WebSocket) still count.
    page.on("request", lambda r: urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(r.url).netloc != local and external.append(r.url))
    page.on("websocket", lambda ws: external.append(ws.url))
    try:
        url = f"{server}/{page_path.relative_to(site).as_posix()}"
        response = page.goto(url, wait_until="load")
        if response is None or not response.ok:
            problems.append(f"could not load {url}: {response and response.status}")
            return problems
        if page.locator(".math").count():
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=WAIT_MS)
                page.evaluate("() => MathJax.startup.promise")
            except Exception as err:  # noqa: BLE001 - reported as a page problem
                problems.append(f"MathJax did not start: {err}")
            untypeset = page.evaluate(_MATH_JS)
            if untypeset:
                problems.append(f"{len(untypeset)} equation(s) not typeset by MathJax, e.g. {untypeset[:3]}")
            if not page.locator("mjx-container").count():
                problems.append("page has math but no mjx-container")
        if page.locator(CHART_SELECTOR).count():
            try:
                page.wait_for_function(_CHARTS_DRAWN_JS, arg=CHART_SELECTOR, timeout=WAIT_MS)
            except Exception:  # noqa: BLE001 - the empty charts are listed below
                pass
            for chart in page.evaluate(_EMPTY_CHARTS_JS, CHART_SELECTOR):
                problems.append(f"chart not drawn: {chart}")
        try:
            page.wait_for_load_state("networkidle", timeout=5_000)
        except Exception:  # noqa: BLE001 - a busy page is no failure by itself
            pass
        raw = sorted(set(m.group(0) for m in RAW_TEX.finditer(page.evaluate(_VISIBLE_TEXT_JS))))
        if raw:
            problems.append(f"raw TeX left in the text: {raw}")
    finally:
        context.close()
    problems += [f"attempted request to the network: {u}" for u in sorted(set(external))]
    return problems


# Layout at a laptop's and a phone's width: every chart (legend included: it is part of the
# chart's svg) within the article's column, and no sideways scrolling of the page as a whole.
_LAYOUT_JS = """() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const style = getComputedStyle(article);
  const box = article.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  const charts = [];
  for (const el of document.querySelectorAll(".adamdist-chart")) {
    const drawn = el.querySelector("svg, canvas");
    if (!drawn) continue;
    const section = el.closest("section");
    const heading = section && section.querySelector("h1, h2, h3");
    const legends = Array.from(drawn.querySelectorAll(".role-legend")).map(g => g.getBoundingClientRect().width);
    charts.push({where: heading ? heading.textContent.replace("#", "").trim().slice(0, 60) : "",
                 width: drawn.getBoundingClientRect().width, legend: Math.max(0, ...legends)});
  }
  const page = document.scrollingElement;
  return {column: right - left, charts: charts, overflow: page.scrollWidth - page.clientWidth};
}"""
LAYOUTS = {"laptop": (1280, 800), "phone": (390, 844)}
SCREENSHOTS = SITE.parent / "screenshots"


def check_layout(browser, server: str, site: Path, page_path: Path, layout: str) -> list[str]:
    """Layout problems of one page at one window size; at the laptop's size also a full-page screenshot."""
    width, height = LAYOUTS[layout]
    context = browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
    local = urlsplit(server).netloc
    context.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc in (local, "")
                  or urlsplit(route.request.url).scheme in ("data", "blob") else route.abort("blockedbyclient"))
    page = context.new_page()
    problems = []
    try:
        page.goto(f"{server}/{page_path.relative_to(site).as_posix()}", wait_until="load")
        if page.locator(CHART_SELECTOR).count():
            try:
                page.wait_for_function(_CHARTS_DRAWN_JS, arg=CHART_SELECTOR, timeout=WAIT_MS)
            except Exception:  # noqa: BLE001 - test_page_renders_offline reports undrawn charts
                pass
        result = page.evaluate(_LAYOUT_JS)
        if result["overflow"] > 1:
            problems.append(f"at {width} px the page scrolls sideways by {result['overflow']:.0f} px")
        if layout == "laptop":
            for chart in result["charts"]:
                if chart["width"] > result["column"] + 1:
                    problems.append(f"chart in '{chart['where']}' is {chart['width']:.0f} px wide, the column "
                                    f"{result['column']:.0f} px (its legend: {chart['legend']:.0f} px)")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = page_path.relative_to(site).with_suffix(".png").as_posix().replace("/", "__")
            page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
    finally:
        context.close()
    return problems


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("page_path", PAGES or [None],
                         ids=[p.relative_to(SITE).as_posix() for p in PAGES] or ["no-site"])
def test_page_layout_fits_the_window(page_path, layout, site, server, browser):
    if _is_redirect_stub(page_path):
        return
    problems = check_layout(browser, server, site, page_path, layout)
    assert not problems, f"{page_path.relative_to(site)} ({layout}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page_path", PAGES or [None],
                         ids=[p.relative_to(SITE).as_posix() for p in PAGES] or ["no-site"])
def test_page_renders_offline(page_path, site, server, browser):
    if _is_redirect_stub(page_path):
        target = re.search(r'url=([^"]+)"', page_path.read_text(encoding="utf-8"))
        assert target and (page_path.parent / target.group(1)).is_file(), "redirect to a missing page"
        return
    problems = check_page(browser, server, site, page_path)
    assert not problems, f"{page_path.relative_to(site)}:\n  " + "\n  ".join(problems)


class _LinksAndScripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.colab_badges: list[str] = []
        self.scripts: list[dict] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if "adamdist-colab-badge" in (a.get("class") or "").split():
                self.colab_badges.append(a["href"])
        elif tag == "script":
            self.scripts.append(a)


def _parse(page: Path) -> _LinksAndScripts:
    parser = _LinksAndScripts()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_no_widget_state_or_requirejs(site):
    bad = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for script in _parse(page).scripts:
            if "require" in (script.get("src") or "").rsplit("/", 1)[-1]:
                bad.append(f"{page.relative_to(site)}: loads {script['src']}")
        if "application/vnd.jupyter.widget-state+json" in text or "widget-view+json" in text:
            bad.append(f"{page.relative_to(site)}: carries ipywidgets state (use plain tqdm)")
    assert not bad, "\n".join(bad)


def test_links_between_pages_reach_their_target(site):
    """Every link from one page of the site to another (and to a section of it) lands on an existing
    page and an existing id: the summary page's links into the chapters are made by code, from heading ids."""
    parsed = {page: _parse(page) for page in PAGES}
    bad = []
    for page, content in parsed.items():
        for href in content.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path.endswith(".html"):
                continue
            target = (page.parent / parts.path).resolve()
            if target not in parsed:
                bad.append(f"{page.relative_to(site)}: {href} opens no page of the site")
            elif parts.fragment and parts.fragment not in parsed[target].ids:
                bad.append(f"{page.relative_to(site)}: {href} has no #{parts.fragment} on {target.relative_to(site)}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_colab_links_open_existing_notebooks(site):
    url, ref = bookinfo.repository_url(), bookinfo.release_ref()
    prefix = bookinfo.colab_url("", url, ref)
    bad = []
    for page in PAGES:
        for href in _parse(page).links:
            if not href.startswith("https://colab.research.google.com/"):
                continue
            notebook = href.removeprefix(prefix)
            if not href.startswith(prefix) or not notebook.endswith(".ipynb"):
                bad.append(f"{page.relative_to(site)}: {href} is not {prefix}<notebook>.ipynb")
            elif not (ROOT / notebook).is_file() or not notebook.startswith("notebooks/"):
                bad.append(f"{page.relative_to(site)}: {href} opens {notebook}, not in notebooks/")
    assert not bad, "\n".join(bad)


def test_every_chapter_page_has_its_colab_link(site):
    bad = []
    for chapter in bookinfo.chapter_sources(ROOT):
        page = site / chapter.relative_to(ROOT).with_suffix(".html")
        if not page.is_file():
            continue  # not in the toc: test_notebooks reports that
        notebook = bookinfo.paired_notebook(chapter, ROOT).relative_to(ROOT).as_posix()
        expected = bookinfo.colab_url(notebook, bookinfo.repository_url(), bookinfo.release_ref())
        badges = _parse(page).colab_badges
        if badges != [expected]:
            bad.append(f"{page.relative_to(site)}: Colab links {badges}, expected [{expected}]")
    assert not bad, "\n".join(bad)


def test_reports_written_during_the_build_are_linked_pages(site):
    """Each report a chapter writes during the build is on the site, and its chapter links to it
    (rendering offline and fitting a phone are checked for it as for every page, above)."""
    for doc, names in site_reports.REPORTS.items():
        page = site / f"{doc}.html"
        links = {(page.parent / urlsplit(h).path).resolve() for h in _parse(page).links}
        for name in names:
            report = (site / site_reports.FOLDER / name).resolve()
            assert report in PAGES, f"{report} is not on the site"
            assert report in links, f"{page.relative_to(site)} does not link to {report.relative_to(site)}"
            assert "vegaEmbed" in report.read_text(encoding="utf-8")
