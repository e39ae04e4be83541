"""Open the built site in headless Chromium and check every page of ``_toc.yml``.

    python tools/browser_check.py [_build/html] [--screenshots _build/screenshots]

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
file descriptors 3 and 4, no port, no websocket library). For every page it records each
network request the page makes (``Network.requestWillBeSent``) and each failed load, then
checks, after MathJax has finished:

- the page loads, has a title and a heading, and throws no JavaScript exception;
- every request stays on the machine (``file:``, ``data:``, ``blob:``, ``about:``); in addition
  the browser resolves no host name at all (``--host-resolver-rules``), so a request that tried
  to leave would also fail, and be reported;
- every local resource loads (no failed request);
- every math element holds typeset MathJax output (``mjx-container``) and no TeX error;
- every image has loaded (``naturalWidth > 0``);
- nothing is clipped: no table, and no code or output line, is wider than its column (every ``<pre>``, with all
  collapsed boxes opened first, fits without scrolling);
- no image wider than its container has a resolution under 150 dpi (read from the PNG's ``pHYs``
  chunk): a large, low-resolution figure shrunk into the column has illegible text;
- no link points to a placeholder address (``PLACEHOLDER_URLS``), and the page's text holds no
  editing marker (``FORBIDDEN_TEXT``: "(verify)", internal issue numbers).

``tests/test_browser.py`` runs this on a fresh build; this file can also be run by hand.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
MIN_DPI = 150
# Addresses that stand for a repository or site not configured yet.
PLACEHOLDER_URLS = (r"github\.com/reptile-book/", r"//(www\.)?example\.(com|org|net)\b", r"your[-_]?(org|user|name|repo)",
                    r"\bOWNER/REPO\b", r"<owner>", r"\bplaceholder\b")
# Words that must not reach a reader: editing markers and references to internal tracking.
FORBIDDEN_TEXT = (r"\(verify\)", r"\bissues? #?\d+")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", "--disable-domain-reliability", "--metrics-recording-only",
         "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
         # Resolve no host name: nothing can leave the machine even if a page asked for it.
         "--host-resolver-rules=MAP * ~NOTFOUND"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class Chromium:
    """A headless Chromium with the DevTools protocol on a pipe (one message per NUL-terminated JSON)."""

    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="reptile-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # in the child: the pipe ends become fds 3 (commands in) and 4 (replies out)
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, pass_fds=(3, 4), preexec_fn=wire)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self.events.append(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            q: queue.Queue = queue.Queue()
            self._replies[mid] = q
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} within {timeout or self.timeout} s; "
                               f"stderr: {self.stderr_text()[-2000:]}") from None
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, start: int, timeout: float | None = None) -> dict:
        end = time.time() + (timeout or self.timeout)
        while time.time() < end:
            for ev in self.events[start:]:
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return ev
            time.sleep(0.05)
        raise TimeoutError(f"no {method} within {timeout or self.timeout} s")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing a browser that already went away
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        shutil.rmtree(self.profile, ignore_errors=True)


PAGE_STATE_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const math = Array.from(document.querySelectorAll('.math'));
  const closed = Array.from(document.querySelectorAll('details')).filter(d => !d.open);
  closed.forEach(d => { d.open = true; });  // measure collapsed boxes too
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const clipped = Array.from(document.querySelectorAll('main pre, article pre'))
    .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
    .map(p => ({over: p.scrollWidth - p.clientWidth,
                line: p.textContent.split('\n').reduce((a, b) => b.length > a.length ? b : a, '').trim().slice(0, 80)}));
  // a table wider than the column scrolls sideways inside its box: its last columns are hidden
  const wide = Array.from(document.querySelectorAll('main table, article table'))
    .filter(t => t.parentElement && t.parentElement.clientWidth > 0 && t.scrollWidth > t.parentElement.clientWidth + 1)
    .map(t => ({over: t.scrollWidth - t.parentElement.clientWidth,
                line: 'table: ' + Array.from(t.querySelectorAll('th')).map(h => h.textContent.trim()).join(' | ').slice(0, 80)}));
  clipped.push(...wide);
  const figures = imgs.filter(i => i.naturalWidth > 0).map(i => {
    const box = i.parentElement ? i.parentElement.getBoundingClientRect().width : 0;
    return {src: i.currentSrc || i.src, natural: i.naturalWidth, shown: i.getBoundingClientRect().width, container: box};
  });
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  closed.forEach(d => { d.open = false; });  // the screenshot shows the page as a reader meets it
  return {
    clipped: clipped,
    figures: figures,
    links: links,
    text: document.body ? document.body.innerText : '',
    title: document.title,
    headings: document.querySelectorAll('main h1, article h1, h1').length,
    math: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).length,
    mjx: document.querySelectorAll('mjx-container').length,
    merror: document.querySelectorAll('mjx-merror').length,
    mathjax_loaded: !!(window.MathJax && MathJax.version),
    mathjax_version: window.MathJax && MathJax.version || null,
    images: imgs.map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth})),
  };
})()
"""


@dataclass
class PageReport:
    page: str
    url: str
    state: dict = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    @property
    def external(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.state.get("images", []) if not i["width"]]

    @property
    def clipped(self) -> list[str]:
        """Code and output blocks wider than their column: by how many pixels, and their longest line."""
        return [f"{c['over']} px too wide: {c['line']!r}" for c in self.state.get("clipped", [])]

    @property
    def low_resolution(self) -> list[str]:
        """Images wider than their container whose PNG says under ``MIN_DPI`` (or says nothing)."""
        out = []
        for f in self.state.get("figures", []):
            if not f["container"] or f["natural"] <= f["container"] + 1:
                continue
            dpi = png_dpi(f["src"])
            if dpi is None or dpi < MIN_DPI:
                out.append(f"{f['src'].rsplit('/', 1)[-1]}: {f['natural']} px in a {f['container']:.0f} px column at "
                           f"{'unknown' if dpi is None else f'{dpi:.0f}'} dpi (needs {MIN_DPI})")
        return out

    @property
    def placeholders(self) -> list[str]:
        import re

        return sorted({h for h in self.state.get("links", []) if any(re.search(p, h, re.I) for p in PLACEHOLDER_URLS)})

    @property
    def forbidden(self) -> list[str]:
        import re

        text = self.state.get("text", "")
        found = []
        for pattern in FORBIDDEN_TEXT:
            for m in re.finditer(pattern, text, re.I):
                found.append(text[max(0, m.start() - 40):m.end() + 20].replace("\n", " "))
        return found

    def problems(self) -> list[str]:
        out = []
        if not self.state.get("title"):
            out.append("no title")
        if not self.state.get("headings"):
            out.append("no heading")
        out += [f"external request {u}" for u in self.external]
        out += [f"failed load {u}" for u in self.failed]
        out += [f"JavaScript exception {e}" for e in self.exceptions]
        if self.state.get("untypeset"):
            out.append(f"{self.state['untypeset']} of {self.state['math']} math elements not typeset by MathJax")
        if self.state.get("merror"):
            out.append(f"{self.state['merror']} MathJax errors")
        out += [f"image did not load {s}" for s in self.broken_images]
        out += [f"clipped code or output: {c}" for c in self.clipped]
        out += [f"low-resolution image: {x}" for x in self.low_resolution]
        out += [f"placeholder link {h}" for h in self.placeholders]
        out += [f"forbidden text: ...{x}..." for x in self.forbidden]
        return out


def png_dpi(src: str) -> float | None:
    """Horizontal resolution of a local PNG from its ``pHYs`` chunk (None: not a local PNG, or no chunk)."""
    import struct
    from urllib.parse import unquote, urlparse

    url = urlparse(src)
    if url.scheme != "file" or not url.path.lower().endswith(".png"):
        return None
    try:
        data = Path(unquote(url.path)).read_bytes()
    except OSError:
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"pHYs" and length == 9:
            x, _, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            return x * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None  # pHYs comes before the image data
        pos += 12 + length
    return None


class Site:
    """Visits pages of a built site in one Chromium tab."""

    def __init__(self, html: Path, binary: str, width: int = 1280, height: int = 900):
        self.html = Path(html).resolve()
        self.browser = Chromium(binary)
        target = self.browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.browser.send(f"{domain}.enable", session=self.session)
        self.width, self.height = width, height
        self._metrics(width, height)

    def visit(self, page: str) -> PageReport:
        path = self.html / f"{page}.html"
        if not path.exists():
            return PageReport(page, str(path), failed=[f"{path} does not exist"])
        url = path.as_uri()
        start = len(self.browser.events)
        self.browser.send("Page.navigate", {"url": url}, session=self.session)
        self.browser.wait_event("Page.loadEventFired", self.session, start)
        state = self.browser.send("Runtime.evaluate", {"expression": PAGE_STATE_JS, "awaitPromise": True,
                                                       "returnByValue": True}, session=self.session)
        time.sleep(0.2)  # let late events (fonts) arrive
        report = PageReport(page, url, state.get("result", {}).get("value", {}))
        ids: dict[str, str] = {}
        for ev in self.browser.events[start:]:
            if ev.get("sessionId") != self.session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Network.requestWillBeSent":
                ids[p["requestId"]] = p["request"]["url"]
                report.requests.append(p["request"]["url"])
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                report.failed.append(f"{ids.get(p['requestId'], p['requestId'])} ({p.get('errorText')})")
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                report.exceptions.append(d.get("exception", {}).get("description") or d.get("text", "?"))
        return report

    def screenshot(self, path: Path, max_height: int = 4000) -> Path:
        """The whole page (up to ``max_height`` CSS pixels) as a PNG, laid out as a reader's window shows it.

        The window is made as tall as the page for the capture (a clip beyond the viewport shifts this
        theme's fixed sidebars and crops the page's left side), then set back.
        """
        size = self.browser.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        height = int(min(size["height"], max_height))
        self._metrics(self.width, height)
        try:
            time.sleep(0.2)   # the re-layout
            data = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        finally:
            self._metrics(self.width, self.height)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def _metrics(self, width: int, height: int) -> None:
        self.browser.send("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                          session=self.session)

    def close(self) -> None:
        self.browser.close()


def external_references(html_root: Path) -> list[str]:
    """Scripts, styles, images, fonts and frames that a built page or stylesheet loads from a network.

    A static complement to the browser's request log: it covers every file of the site, including
    resources a page only loads on interaction. Plain links (``<a href>``) are not loads.
    """
    import re

    loads = re.compile(r"""<(?:script|img|iframe|source|video|audio|embed)\b[^>]*?\bsrc\s*=\s*["']([^"']+)["']"""
                       r"""|<link\b[^>]*?\bhref\s*=\s*["']([^"']+)["'][^>]*>""", re.I)
    css_url = re.compile(r"""url\(\s*["']?([^"')]+)""", re.I)
    found = []
    for f in sorted(Path(html_root).rglob("*.html")):
        if "_static/mathjax" in f.as_posix():
            continue
        text = f.read_text(errors="replace")
        for m in loads.finditer(text):
            url = m.group(1) or m.group(2)
            tag = m.group(0).lower()
            if m.group(2) and not re.search(r"""rel\s*=\s*["'](?:stylesheet|preload|icon|shortcut icon|modulepreload)""", tag):
                continue  # <link rel="canonical|next|prev"> loads nothing
            if re.match(r"^(https?:)?//", url.strip(), re.I):
                found.append(f"{f.relative_to(html_root)}: {url}")
    for f in sorted(Path(html_root).rglob("*.css")):
        for m in css_url.finditer(f.read_text(errors="replace")):
            if re.match(r"^(https?:)?//", m.group(1).strip(), re.I):
                found.append(f"{f.relative_to(html_root)}: {m.group(1)}")
    return found


def check_site(html: Path, pages: list[str], binary: str, screenshots: dict[str, Path] | None = None
               ) -> list[PageReport]:
    site = Site(html, binary)
    try:
        reports = []
        for page in pages:
            reports.append(site.visit(page))
            if screenshots and page in screenshots:
                site.screenshot(screenshots[page])
        return reports
    finally:
        site.close()


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_book import ROOT, toc_files

    p = argparse.ArgumentParser(description="Check the built site in headless Chromium.")
    p.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    p.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    args = p.parse_args(argv)
    binary = find_chromium()
    if binary is None:
        print("browser_check: Chromium not found; install it (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    pages = toc_files()
    shots = {page: args.screenshots / f"{page.rsplit('/', 1)[-1]}.png" for page in pages}
    reports = check_site(args.html, pages, binary, shots)
    bad = 0
    for r in reports:
        problems = r.problems()
        bad += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {r.page}: {len(r.requests)} requests, {r.state.get('mjx', 0)} "
              f"formulas, {len(r.state.get('images', []))} images" + "".join(f"\n     {x}" for x in problems))
    for ref in external_references(args.html):
        bad += 1
        print(f"FAIL external reference {ref}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
