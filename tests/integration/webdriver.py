"""webdriver.py — a small W3C WebDriver client over plain HTTP (urllib + json)
driving Debian's headless chromium through chromedriver. Standard library
only; nothing is downloaded.

    with Browser() as b:
        b.get("http://127.0.0.1:4040/")
        b.wait_js("return document.body.dataset.ready === 'true'")
        b.screenshot("page.png")

Browser() raises harness.Skip when chromium or chromedriver is absent.
chromedriver listens on a free 127.0.0.1 port; it and the browser are
stopped when the block ends (and at exit). Every wait is bounded.

Starting chromium costs seconds on a loaded machine, so a test file can
share one browser among its tests: each `with shared_tab() as b:` opens a
new tab (closed when the block ends, with every origin it loaded cleared
of its storage and the cache emptied), so no test sees another's page,
local storage or cached answers. A tab that cannot be closed takes the
browser down with it; the next block starts a new one.

    with shared_tab(1280, 800) as b:
        b.get(...)
"""
import atexit
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import Skip

CHROMIUM = os.environ.get("FLAMEDB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLAMEDB_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1"]
_live = []
atexit.register(lambda: [b.close() for b in list(_live)])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriverError(Exception):
    pass


class Browser:
    def __init__(self, width=1280, height=800, timeout=30.0):
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise Skip("%s not installed (Debian packages chromium, chromium-driver: "
                           "deploy/packages.txt)" % path)
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="flamedb-chromium-")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _live.append(self)
        self.base = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._call("GET", "/status", timeout=2).get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline:
                self.close()
                raise WebDriverError("chromedriver did not start in %.0fs" % timeout)
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": FLAGS + [
                "--window-size=%d,%d" % (width, height), "--user-data-dir=" + self.profile + "/data"]},
        }}}
        self.session = self._call("POST", "/session", caps, timeout=60)["sessionId"]
        self.set_window(width, height)
        self.home = None  # the first tab, kept blank while shared tabs come and go
        self.origins = set()  # origins loaded in the current shared tab

    def _call(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode() or "{}").get("value")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                v = json.loads(text)["value"]
                raise WebDriverError("%s: %s" % (v.get("error"), v.get("message", "")[:500]))
            except (ValueError, KeyError, AttributeError):
                raise WebDriverError("HTTP %d: %s" % (e.code, text[:500]))

    def cmd(self, method, what, body=None, timeout=60):
        return self._call(method, "/session/%s%s" % (self.session, what), body, timeout)

    def set_window(self, width, height):
        """Resizes the window and waits (5 s at most) until the page sees the
        new width: headless Chrome applies a resize after answering, and a
        layout read at once still had the old one."""
        self.cmd("POST", "/window/rect", {"width": width, "height": height})
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self.js("return window.outerWidth === %d || window.innerWidth === %d"
                       % (width, width)):
                return
            time.sleep(0.02)

    def get(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https"):
            self.origins.add("%s://%s" % (parts.scheme, parts.netloc))
        self.cmd("POST", "/url", {"url": url})

    def cdp(self, command, params):
        """A Chrome DevTools Protocol command through chromedriver."""
        return self.cmd("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def open_tab(self, width, height):
        """Opens a new tab of the given size and switches to it."""
        if self.home is None:
            self.home = self.cmd("GET", "/window")
        handle = self.cmd("POST", "/window/new", {"type": "tab"})["handle"]
        self.cmd("POST", "/window", {"handle": handle})
        self.set_window(width, height)
        self.origins = set()
        self.console_errors()  # what earlier tabs logged is theirs

    def close_tab(self):
        """Clears the storage of every origin the current tab loaded and the
        cache, closes the tab and goes back to the blank first one."""
        for origin in sorted(self.origins):
            self.cdp("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        self.cdp("Network.clearBrowserCache", {})
        self.origins = set()
        self.cmd("DELETE", "/window")
        self.cmd("POST", "/window", {"handle": self.home})

    def alive(self):
        return self in _live and self.proc.poll() is None

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args, timeout=30):
        """Runs script with a callback as its last argument; returns what it passes."""
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)}, timeout)

    def wait_js(self, script, timeout=20.0, what=None):
        """Polls script until it returns something truthy; returns that."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.js(script)
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError("timed out after %.0fs waiting for %s (last: %r)"
                             % (timeout, what or script, last))

    def find(self, css):
        v = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(v.values()))

    def click(self, css):
        self.cmd("POST", "/element/%s/click" % self.find(css), {})

    def type(self, css, text):
        self.cmd("POST", "/element/%s/value" % self.find(css), {"text": text})

    def mouse(self, actions):
        """Pointer actions (W3C), e.g. [("move", x, y), ("down",), ("up",)],
        coordinates relative to the viewport."""
        seq = []
        for a in actions:
            if a[0] == "move":
                seq.append({"type": "pointerMove", "x": int(a[1]), "y": int(a[2]), "duration": 50})
            elif a[0] == "down":
                seq.append({"type": "pointerDown", "button": 0})
            elif a[0] == "up":
                seq.append({"type": "pointerUp", "button": 0})
            elif a[0] == "pause":
                seq.append({"type": "pause", "duration": int(a[1])})
        self.cmd("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": seq}]})
        self.cmd("DELETE", "/actions")

    def keys(self, text):
        self.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
            a for ch in text for a in ({"type": "keyDown", "value": ch}, {"type": "keyUp", "value": ch})]}]})

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return path

    def console_errors(self):
        """Severe browser log entries (JS exceptions, failed loads), when the driver keeps them."""
        try:
            return [e for e in self.cmd("POST", "/se/log", {"type": "browser"}) or []
                    if e.get("level") == "SEVERE"]
        except WebDriverError:
            return []

    def close(self):
        if self not in _live:
            return
        _live.remove(self)
        try:
            if getattr(self, "session", None):
                self._call("DELETE", "/session/%s" % self.session, timeout=10)
        except (OSError, WebDriverError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_shared = [None]


@contextlib.contextmanager
def shared_tab(width=1280, height=800):
    """A new tab of the browser this process shares among its tests (started
    on first use, stopped at exit); see the module comment."""
    if _shared[0] is None or not _shared[0].alive():
        _shared[0] = Browser(width, height)
    b = _shared[0]
    try:
        b.open_tab(width, height)
    except (OSError, WebDriverError):
        b.close()
        _shared[0] = None
        raise
    try:
        yield b
    finally:
        try:
            b.close_tab()
        except (OSError, WebDriverError):
            b.close()  # the next tab gets a new browser
            _shared[0] = None
