"""The ROI dashboard page (healing_guard/rest/static/dashboard.html) in headless Chromium.

A tiny stdlib HTTP server on loopback stands in for the API: it serves the page at /dashboard (and any
asset beside it) and answers GET /api/v1/repos/acme/web/roi and GET /api/v1/roi (every repository the
key may read: the page's repo=*) with contract-shaped JSON, checking the Bearer key. Chromium (Debian's ``chromium``; ``make chromium`` installs it, ``make test`` depends on it)
loads the page, and the test reads the DOM it dumps and the screenshot it takes.

The assertions (``assert_*``) only need a base URL, so the same checks can run against the real API's
/dashboard route: swap the ``base_url`` fixture.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.support.paths import ROOT

# one worker runs the whole module under `pytest -n 2 --dist loadgroup` (module-scoped fixture)
pytestmark = pytest.mark.xdist_group("test_dashboard")

STATIC = ROOT / "healing_guard" / "rest" / "static"
CHROMIUM = "/usr/bin/chromium"
KEY = "test-key-0123456789"
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_CATEGORY = '"><svg onload=alert(2)>'
HOSTILE_TEMPLATE = "<script>alert(3)</script> failed at <NUM>"
HOSTILE_DETAIL = "<iframe src=//evil.example>"
WINDOW = (1400, 1800)

# Keep in step with the colour table C in dashboard.html.
COLOURS = {
    "minutes": (0x2F, 0x7E, 0xD8),
    "dollars": (0x1A, 0x98, 0x50),
    "mttg": (0xD9, 0x5F, 0x02),
    "category": (0x75, 0x70, 0xB3),
    "flaky": (0xE7, 0x29, 0x8A),
    "burn": (0x66, 0xA6, 0x1E),
    "th95": (0xD7, 0x19, 0x1C),
}


def roi_payload() -> dict[str, Any]:
    """{"report": report(), "daily": daily()} as in /tmp/notes/contract.md, with recognisable numbers."""
    days = [f"2026-11-{d:02d}" for d in range(10, 24)]
    daily = [
        {"day": d, "jobs": 40 + i, "failed_jobs": 5 + i % 3, "time_saved_minutes": 30.0 + 7 * i,
         "cost_saved_usd": 2.5 + 0.75 * i, "rerun_cost_usd": 0.4 + 0.05 * i,
         "success_rate": 1 - (5 + i % 3) / (40 + i), "mttr_minutes": None if i in (4, 5, 9) else 9.0 + i % 4,
         "mttg_minutes": None if i in (4, 5, 9) else 12.0 + (i % 5) * 3.5}
        for i, d in enumerate(days)
    ]
    report = {
        "repo": "acme/web", "days": 14, "jobs": 658, "failed_jobs": 91, "ci_minutes": 5123.4, "ci_cost_usd": 40.99,
        "auto_commands": 57, "manual_commands": 21, "reruns_decided": 40, "reruns_recovered": 35,
        "time_saved_minutes": 1234.5, "rerun_cost_usd": 6.78, "cost_avoided_usd": 987.65, "cost_saved_usd": 987.65,
        "mttr_minutes": 11.2, "mttr_without_guard_minutes": 38.6, "mttr_episodes": 45, "mttg_minutes": 17.3,
        "mttg_episodes": 80, "open_failures": 2, "success_rate": 0.8617,
        "reliability": {
            "window_days": 14,
            "current": {"since": "2026-11-10", "until": None, "jobs": 658, "failed_jobs": 91, "success_rate": 0.8617,
                        "failure_episodes": 80, "healed_share": 0.4375, "mttr_minutes": 11.2, "mttg_minutes": 17.3},
            "previous": {"since": "2026-10-27", "until": "2026-11-10", "jobs": 600, "failed_jobs": 120,
                         "success_rate": 0.8, "failure_episodes": 100, "healed_share": 0.1, "mttr_minutes": 25.7,
                         "mttg_minutes": 16.1},
            "change": {"success_rate_points": 6.17, "mttr_minutes": -14.5, "mttg_minutes": 1.2},
        },
        "recovery_rate": 0.842,
        "recovery_by_strategy": [{"action": "rerun_failed_tests", "commands": 40, "recovered": 35, "decided": 40, "rate": 0.875}],
        "tests_seen": 1200, "flaky_tests": 18, "flaky_test_rate": 0.015, "flaky_tests_judged": 14,
        "flaky_tests_observed": 11,
        "flakiest_tests": [
            {"test_id": HOSTILE, "runs": 60, "failures": 21, "flaky_jobs": 9, "guard_reruns": 5, "quarantined": True},
            {"test_id": "tests/test_api.py::test_login_race", "runs": 80, "failures": 12, "flaky_jobs": 7,
             "guard_reruns": 3, "quarantined": False},
            {"test_id": "com.acme.web.CheckoutIT#paysWithCard", "runs": 50, "failures": 5, "flaky_jobs": 4},
        ],
        "failures_by_category": {"flaky_test": 31, "test_failure": 22, "network": 14, "oom": 9, HOSTILE_CATEGORY: 3},
        "top_templates": [{"template": "connection reset by peer <*>", "category": "network", "count": 9},
                          {"template": "npm ERR! code E<NUM>", "category": "network", "count": 4},
                          {"template": HOSTILE_TEMPLATE, "category": HOSTILE_CATEGORY, "count": 2}],
        "budget": [
            {"day": d, "spent_usd": 10.0 + 5 * i, "budget_usd": 50.0, "burn": (10.0 + 5 * i) / 50.0}
            for i, d in enumerate(days)
        ] + [{"day": "2026-11-24", "spent_usd": 1.0, "budget_usd": None, "burn": None}],
    }
    actions = [
        {"ts": "2026-11-23T18:04:05.123Z", "repo": "acme/web", "provider": "github", "job_id": "9001", "attempt": 1,
         "job_name": "test (3.12)", "action": "retry_tests_isolated", "category": "test_failure",
         "reason": "all 1 failed tests are flaky", "status": "succeeded", "detail": "GitHub re-ran the failed jobs",
         "rerun_conclusion": "success"},
        {"ts": "2026-11-23T17:50:00Z", "repo": "acme/web", "provider": "github", "job_id": "9000", "attempt": 2,
         "job_name": "e2e", "action": "retry_backoff", "category": "network", "reason": "transient network error",
         "status": "refused", "detail": HOSTILE_DETAIL, "rerun_conclusion": None},
        {"ts": "2026-11-23T17:40:00Z", "repo": "acme/web", "provider": "github", "job_id": "8999", "attempt": 1,
         "job_name": None, "action": "notify_author", "category": "compilation_error", "reason": "a code failure",
         "status": None, "detail": None, "rerun_conclusion": None},
    ]
    return {"report": report, "daily": daily, "actions": actions}


def all_payload() -> dict[str, Any]:
    """GET /api/v1/roi: the same shapes over every repository the key may read."""
    body = roi_payload()
    body["report"] = {**body["report"], "repo": None, "jobs": 1316, "failed_jobs": 170}
    body["actions"] = body["actions"] + [{**body["actions"][0], "repo": "acme/api", "job_id": "77", "job_name": "build"}]
    body["repositories"] = ["github:acme/api", "github:acme/web"]
    return body


def empty_payload() -> dict[str, Any]:
    """A repository the guard has seen nothing of: zeros, nulls and empty lists."""
    report = {
        "repo": "acme/empty", "days": 30, "jobs": 0, "failed_jobs": 0, "ci_minutes": 0.0, "ci_cost_usd": 0.0,
        "auto_commands": 0, "manual_commands": 0, "time_saved_minutes": 0.0, "rerun_cost_usd": 0.0,
        "cost_avoided_usd": 0.0, "cost_saved_usd": 0.0, "mttr_minutes": None, "mttg_minutes": None,
        "open_failures": 0, "success_rate": None,
        "reliability": {"window_days": 30, "change": {"success_rate_points": None, "mttr_minutes": None,
                                                      "mttg_minutes": None},
                        **{w: {"since": "2026-10-01", "until": None, "jobs": 0, "failed_jobs": 0, "success_rate": None,
                               "failure_episodes": 0, "healed_share": None, "mttr_minutes": None,
                               "mttg_minutes": None} for w in ("current", "previous")}}, "recovery_rate": None, "recovery_by_strategy": [], "tests_seen": 0, "flaky_tests": 0,
        "flaky_test_rate": None, "flakiest_tests": [], "failures_by_category": {}, "top_templates": [], "budget": [],
    }
    return {"report": report, "daily": []}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet, but remember the paths
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        url = urlsplit(self.path)
        if url.path == "/dashboard":
            self._send(200, (STATIC / "dashboard.html").read_bytes(), "text/html; charset=utf-8")
            return
        asset = re.fullmatch(r"/(?:dashboard/|static/)?(dashboard\.(?:js|css))", url.path)
        if asset and (STATIC / asset.group(1)).is_file():
            ctype = "text/javascript" if asset.group(1).endswith(".js") else "text/css"
            self._send(200, (STATIC / asset.group(1)).read_bytes(), ctype + "; charset=utf-8")
            return
        if url.path == "/api/v1/roi":
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                self._send(401, b'{"detail":"invalid or missing API key"}', "application/json")
            else:
                self._send(200, json.dumps(all_payload()).encode(), "application/json")
            return
        roi = re.fullmatch(r"/api/v1/repos/acme/(\w+)/roi", url.path)
        if roi:
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                self._send(401, b'{"detail":"invalid or missing API key"}', "application/json")
            elif roi.group(1) == "web":
                self._send(200, json.dumps(roi_payload()).encode(), "application/json")
            elif roi.group(1) == "empty":
                self._send(200, json.dumps(empty_payload()).encode(), "application/json")
            else:
                self._send(403, b'{"detail":"this key is not scoped to acme/secret"}', "application/json")
            return
        self._send(404, b'{"detail":"Not Found"}', "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, name="dashboard-http", daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def base_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def chromium(url: str, workdir: Path, *, screenshot: Path | None = None) -> str:
    """Load ``url`` in headless Chromium; the serialized DOM after scripts ran (and a PNG if asked)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (installs Debian's chromium package, as root)")
    args = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={workdir / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    env = {**os.environ, "HOME": str(workdir)}
    proc = subprocess.run(args + [url], capture_output=True, text=True, timeout=60, env=env, cwd=workdir)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def body_attr(dom: str, name: str) -> str | None:
    m = re.search(r"</head>\s*<body\b([^>]*)>", dom)
    assert m, dom[:500]
    attr = re.search(rf'\b{re.escape(name)}="([^"]*)"', m.group(1))
    return attr.group(1) if attr else None


def assert_dashboard_ready(dom: str, payload: dict[str, Any]) -> None:
    """The page drew everything from ``payload`` and escaped what it took from the data."""
    assert body_attr(dom, "data-error") is None, body_attr(dom, "data-error")
    assert body_attr(dom, "data-ready") == "1", dom[-3000:]
    r = payload["report"]
    assert f"{r['time_saved_minutes']:,.1f} min" in dom          # 1,234.5 min
    assert f"${r['cost_saved_usd']:,.2f}" in dom                  # $987.65
    assert f"${r['rerun_cost_usd']:,.2f}" in dom
    assert f"{r['recovery_rate'] * 100:.1f} %" in dom
    assert f"{r['mttg_minutes']:.1f} min" in dom
    # the reliability panel: MTTR and success rate now, before, and the change read the right way round
    rel = r["reliability"]
    mttr_row = re.search(r'<tr data-row="mttr">(.*?)</tr>', dom)
    assert mttr_row, "no MTTR row in the reliability panel"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", mttr_row.group(1))
    assert cells[1:] == [f"{rel['current']['mttr_minutes']:.1f} min", f"{rel['previous']['mttr_minutes']:.1f} min",
                         f"−{abs(rel['change']['mttr_minutes']):.1f} min"], cells
    assert 'data-verdict="better"' in mttr_row.group(1)
    success = re.search(r'<tr data-row="success-rate">(.*?)</tr>', dom)
    assert success and f"+{rel['change']['success_rate_points']:.1f} points" in success.group(1)
    assert 'data-verdict="better"' in success.group(1)
    mttg = re.search(r'<tr data-row="mttg">(.*?)</tr>', dom)
    assert mttg and 'data-verdict="worse"' in mttg.group(1)  # MTTG rose by 1.2 min: worse
    assert f"{r['success_rate'] * 100:.1f} %" in dom
    # every chart drew (no "no data" placeholder) and every category / test is on the page
    assert 'class="empty"' not in dom
    assert dom.count("<svg") >= 4
    assert dom.count("<polyline") >= 2                             # dollars line + MTTG segments
    for cat in r["failures_by_category"]:
        if "<" not in cat and '"' not in cat:
            assert f">{cat}<" in dom
    for t in r["flakiest_tests"]:
        if "<" not in t["test_id"]:
            assert t["test_id"] in dom
    # MTTR beside its counterfactual, MTTG labelled as all failures, both flaky counts named
    assert re.search(r'data-metric="mttr-without"><div class="v">38\.6 min</div>', dom), "no MTTR-without card"
    assert "mean time to green (all failures)" in dom and "14 judged by the guard, 11 failed and passed" in dom
    # the flaky tests table names the guard's re-runs and its quarantine
    assert "guard re-runs" in dom and "(quarantined)" in dom
    # the top failure templates: one row each, the hostile one as text
    assert dom.count('<tr data-row="template">') == len(r["top_templates"])
    assert "connection reset by peer &lt;*&gt;" in dom and "npm ERR! code E&lt;NUM&gt;" in dom
    # recent actions: time, job, action, status (the executor's, and how a re-run ended), detail
    rows = re.findall(r'<tr data-row="action">(.*?)</tr>', dom)
    assert len(rows) == len(payload["actions"]), rows
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]
    where = "acme/web: " if "repositories" in payload else ""  # the all-repositories view names the repository
    assert cells[0][:4] == ["2026-11-23 18:04", f"{where}test (3.12) #9001", "retry_tests_isolated (test_failure)",
                            "succeeded; re-run passed"], cells[0]
    assert cells[1][1:4] == [f"{where}e2e #9000 (attempt 2)", "retry_backoff (network)", "refused"], cells[1]
    assert 'data-status="refused"' in rows[1] and 'class="status bad"' in rows[1]
    assert cells[2][1] == f"{where}#8999" and cells[2][3] == "no outcome yet"
    # hostile strings are text, not markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<img" not in dom.lower()
    assert "<svg onload" not in dom.lower()
    assert "&lt;svg onload=alert(2)&gt;" in dom
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in dom and "alert(3)</script>" not in dom
    assert "&lt;iframe src=//evil.example&gt;" in dom and "<iframe" not in dom.lower()


def assert_screenshot(png: bytes) -> None:
    """Expected size, not blank, and the chart colours are drawn."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == WINDOW
    colours = img.getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert colours is not None
    assert len(colours) > 50, f"only {len(colours)} colours: blank page?"
    counts = {c: n for n, c in colours}
    background = max(colours)[0]
    assert background / (WINDOW[0] * WINDOW[1]) < 0.95, "the page is (almost) all one colour"
    near = {name: sum(n for c, n in counts.items() if max(abs(a - b) for a, b in zip(c, rgb)) <= 3)
            for name, rgb in COLOURS.items()}
    missing = [name for name, n in near.items() if n < 20]
    assert not missing, f"chart colours not in the screenshot: {missing} ({near})"


def test_dashboard_draws_the_roi(base_url: str, server: _Server, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    dom = chromium(f"{base_url}/dashboard#key={KEY}&repo=acme/web&days=14", tmp_path, screenshot=shot)
    assert_dashboard_ready(dom, roi_payload())
    assert shot.is_file(), "chromium wrote no screenshot"
    assert_screenshot(shot.read_bytes())
    if os.environ.get("GUARD_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["GUARD_KEEP_SCREENSHOT"])
    # the key went in the header only, never in a URL the server saw
    roi = [(p, auth) for p, auth in server.requests if "/roi" in p]
    assert roi and all(auth == f"Bearer {KEY}" for _, auth in roi)
    assert any(p.endswith("/roi?days=14") for p, _ in roi)
    assert not any(KEY in p for p, _ in server.requests)


def assert_dashboard_error(dom: str, status: int, words: str) -> None:
    error = body_attr(dom, "data-error")
    assert error is not None and str(status) in error and words in error, dom[-2000:]
    assert body_attr(dom, "data-ready") is None
    shown = re.search(r'<div id="error" role="alert"[^>]*>([^<]*)</div>', dom)
    assert shown and words in shown.group(1), "the message is not shown on the page"


@pytest.mark.parametrize(("fragment", "status", "words"), [
    ("key=wrong-key&repo=acme/web&days=30", 401, "API key was refused"),
    (f"key={KEY}&repo=acme/secret&days=30", 403, "may not read acme/secret"),
], ids=["401", "403"])
def test_dashboard_shows_refusals_in_words(base_url: str, tmp_path: Path, fragment: str, status: int, words: str) -> None:
    assert_dashboard_error(chromium(f"{base_url}/dashboard#{fragment}", tmp_path), status, words)


def test_dashboard_of_every_repository_the_key_may_read(base_url: str, server: _Server, tmp_path: Path) -> None:
    """repo=* asks GET /api/v1/roi (every repository the key may read) and draws the same panels, naming the
    repositories and, in the table of actions, each job's repository."""
    dom = chromium(f"{base_url}/dashboard#key={KEY}&repo=*&days=14", tmp_path)
    assert_dashboard_ready(dom, all_payload())
    sub = re.search(r'<div class="sub" id="subtitle">([^<]*)</div>', dom)
    assert sub and sub.group(1) == ("all repositories this key may read (2: github:acme/api, github:acme/web) "
                                    "— last 14 days"), sub
    assert "acme/api: build #77" in dom and "acme/web: test (3.12) #9001" in dom
    asked = [(p, auth) for p, auth in server.requests if p.startswith("/api/v1/roi")]
    assert asked and asked[-1] == ("/api/v1/roi?days=14", f"Bearer {KEY}")
    assert not any(KEY in p for p, _ in server.requests)


def test_dashboard_with_no_data_still_draws(base_url: str, tmp_path: Path) -> None:
    dom = chromium(f"{base_url}/dashboard#key={KEY}&repo=acme/empty", tmp_path)
    assert body_attr(dom, "data-error") is None and body_attr(dom, "data-ready") == "1", dom[-2000:]
    assert dom.count('class="empty"') == 8 and "0.0 min" in dom and "$0.00" in dom


def test_dashboard_without_key_asks_for_it(base_url: str, tmp_path: Path) -> None:
    dom = chromium(f"{base_url}/dashboard", tmp_path)
    assert body_attr(dom, "data-ready") is None and body_attr(dom, "data-error") is None
    assert 'id="f-key"' in dom and re.search(r'<form id="form"[^>]*style="display: block;"', dom), dom[-2000:]


def test_dashboard_is_self_contained_and_escapes() -> None:
    """No CDN, no external URL (air-gapped installs), and data never goes through innerHTML."""
    for path in STATIC.glob("dashboard.*"):
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{path.name} names external URLs: {urls}"   # the SVG namespace is a name, not a fetch
        assert not re.search(r"\b(?:innerHTML|outerHTML|insertAdjacentHTML|document\.write)\b", text), path.name
        assert not re.search(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=", text), f"{path.name} loads a resource"
