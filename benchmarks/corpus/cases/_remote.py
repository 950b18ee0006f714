"""Make a real tool fail to reach a remote-looking host while every packet stays on 127.0.0.1.

A CI network fault names the host the job could not reach (pypi.org, a company mirror, a deploy API), not
the runner itself: a refused connection to 127.0.0.1 or localhost reads as a service the job should have
started. The corpus may only touch loopback, so these ``Case.around`` helpers point made-up names under
``example.com`` at 127.0.0.1 through each tool's own configuration, set in the job's environment (which no
platform log shows), and no DNS query is ever made for them:

* :func:`resolve_to_loopback` - curl reads ``resolve = HOST:443:127.0.0.1`` from a ``.curlrc`` in
  ``CURL_HOME``; git gets ``http.curloptResolve`` through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
  ``GIT_CONFIG_VALUE_n`` (git 2.37+); node gets a ``--require`` preload (``NODE_OPTIONS``) whose
  ``dns.lookup`` answers 127.0.0.1 for these names. Nothing listens on 127.0.0.1:443 (checked before the
  job: if something does, the case raises and is dropped, never mislabelled), so the connection is refused
  and the tool reports it under the name: ``Failed to connect to deploy-api.example.com port 443``.
  ``no_proxy=*`` keeps a proxy of this machine out of the way.
* :func:`proxy_down` - ``http_proxy``/``https_proxy`` (both cases) name a 127.0.0.1 port nothing listens on:
  a runner whose HTTP proxy is down. pip and Python's urllib hand the remote name to the proxy and never
  resolve it; the connection to the proxy is refused (pip: ``ProxyError('Cannot connect to proxy.'``).
  ``no_proxy`` is emptied so nothing bypasses it. The proxy's port is not printed, so any free one will do.

Each around keeps its files in ``<work>/.<case>.net`` (beside the project, so not in it) and removes them after.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["Around", "proxy_down", "resolve_to_loopback"]

Around = Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]

HTTPS = 443

_NODE_PRELOAD = """\
'use strict';
// resolve these names to 127.0.0.1 without asking DNS (the corpus only ever talks to loopback)
const dns = require('dns');
const HOSTS = new Set(%s);
const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  return lookup.call(this, HOSTS.has(hostname) ? '127.0.0.1' : hostname, options, callback);
};
"""


def _refuses(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def _free_port(preferred: int) -> int:
    """A loopback port nothing listens on: ``preferred`` if so, else one the kernel hands out (and then closed)."""
    if _refuses(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    if not _refuses(port):
        raise RuntimeError("no loopback port that refuses connections")
    return port


@contextlib.contextmanager
def _scratch(where: Path) -> Iterator[Path]:
    d = where.parent / f".{where.name}.net"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def resolve_to_loopback(*hosts: str) -> Around:
    """An around under which curl, git and node reach ``https://HOST/`` at 127.0.0.1:443, where nothing listens."""
    if not hosts:
        raise ValueError("no hosts")

    @contextlib.contextmanager
    def around(where: Path) -> Iterator[Mapping[str, str]]:
        if not _refuses(HTTPS):
            raise RuntimeError(f"127.0.0.1:{HTTPS} does not refuse connections: {', '.join(hosts)} would reach it")
        with _scratch(where) as d:
            (d / ".curlrc").write_text("".join(f"resolve = {h}:{HTTPS}:127.0.0.1\n" for h in hosts), encoding="utf-8")
            (d / "resolve-hosts.js").write_text(_NODE_PRELOAD % json.dumps(list(hosts)), encoding="utf-8")
            env = {"CURL_HOME": str(d), "NODE_OPTIONS": f"--require {d / 'resolve-hosts.js'}",
                   "GIT_CONFIG_COUNT": str(len(hosts)), "no_proxy": "*", "NO_PROXY": "*"}
            for i, h in enumerate(hosts):
                env[f"GIT_CONFIG_KEY_{i}"] = "http.curloptResolve"
                env[f"GIT_CONFIG_VALUE_{i}"] = f"{h}:{HTTPS}:127.0.0.1"
            yield env

    return around


def proxy_down(preferred: int) -> Around:
    """An around whose HTTP(S) proxy, 127.0.0.1:``preferred`` (or any free port), refuses connections."""

    @contextlib.contextmanager
    def around(_: Path) -> Iterator[Mapping[str, str]]:
        proxy = f"http://127.0.0.1:{_free_port(preferred)}"
        yield {"http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
               "no_proxy": "", "NO_PROXY": "", "PIP_PROXY": ""}

    return around
