"""C/C++ cases (gcc, g++, make, CMake/ctest, AddressSanitizer) and infrastructure cases (network, rate limits,
corrupt caches, memory limits, full disks, platform time limits, lost runners, hung test scripts, failures
that say nothing), run with the machine's real tools.

Every project is made up. Only loopback is ever contacted: a refused connection is to a made-up remote name
(``deploy-api.example.com``) that the tool is told resolves to 127.0.0.1:443, where nothing listens, or to a
runner's HTTP proxy on a 127.0.0.1 port nothing listens on (``_remote.py``), DNS failures use a name under the
reserved ``.invalid`` TLD (never resolves), and
rate limits, corrupt package indexes and oversized wheels are served by a small ``http.server`` in a thread on
127.0.0.1 (``Case.around``). A full disk is ``/dev/full`` (reached through a symlink the project's build
writes to) or, where ``mount -t tmpfs`` works (we are root), a real 1 MiB tmpfs mounted over the build
directory. Memory exhaustion is real allocation under ``ulimit -v``; the one ``Killed``/137 case sends
itself SIGKILL as the kernel's OOM killer would.

clang-format and cppcheck are not on this machine, so no C/C++ lint_style case is built.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..case import Case, Step, Tools
from ._remote import proxy_down, resolve_to_loopback

__all__ = ["cases"]

# --------------------------------------------------------------------------------------------------------------
# helpers: ports, a loopback HTTP server, wheels, tmpfs
# --------------------------------------------------------------------------------------------------------------

#: each case prefers its own fixed port (so its log repeats run to run) and falls back to any free one
_PORTS = {
    "pip-proxy": 47613,
    "curl-429": 47621, "pip-429": 47622, "npm-429": 47623, "git-429": 47624,
    "pip-hash": 47631, "npm-hash": 47632, "pip-tmpfs": 47641,
}

Respond = Callable[[str, str], tuple[int, Mapping[str, str], bytes]]


@contextlib.contextmanager
def _serve(respond: Respond, preferred: int) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 (``preferred`` port if free) answering every request with ``respond``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "nginx"
        sys_version = ""

        def _answer(self, body_too: bool) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = respond(self.command, self.path)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body_too:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(True)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    try:
        srv = Server(("127.0.0.1", preferred), Handler)
    except OSError:
        srv = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, name="corpus-http", daemon=True)
    thread.start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


_RATE_LIMIT_BODY = (b'{"message":"API rate limit exceeded for 127.0.0.1. (But here\'s the good news: Authenticated '
                    b'requests get a higher rate limit. Check out the documentation for more details.)",'
                    b'"documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api'
                    b'#rate-limiting"}\n')


def _rate_limited(retry_after: int) -> Respond:
    def respond(_: str, __: str) -> tuple[int, Mapping[str, str], bytes]:
        return 429, {"Content-Type": "application/json; charset=utf-8", "Retry-After": str(retry_after),
                     "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1767225600",
                     "X-RateLimit-Resource": "core", "X-RateLimit-Used": "60"}, _RATE_LIMIT_BODY
    return respond


def _rate_limit_server(env: Callable[[int], Mapping[str, str]], preferred: int, *, retry_after: int = 60
                       ) -> Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]:
    """A server answering 429 to everything. Clients that honour Retry-After (pip, npm) sleep that long before
    each retry, so their cases use a short one."""
    @contextlib.contextmanager
    def around(_: Path) -> Iterator[Mapping[str, str]]:
        with _serve(_rate_limited(retry_after), preferred) as port:
            yield env(port)
    return around


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _wheel(name: str, version: str, files: Mapping[str, bytes]) -> tuple[str, bytes]:
    """A small pure-Python wheel built by hand (zip with METADATA, WHEEL and RECORD), byte-for-byte repeatable."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   f"Summary: {name}\nRequires-Python: >=3.8\n").encode()
    entries[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: corpus\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{p},sha256={_b64(hashlib.sha256(b).digest())},{len(b)}\n" for p, b in entries.items())
    entries[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in entries.items():
            zi = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED if len(data) > 65536 else zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


def _index(packages: Mapping[str, tuple[str, bytes, str]]) -> Respond:
    """A PEP 503 simple index: project name -> (file name, bytes served, sha256 advertised in the link)."""

    def respond(_: str, path: str) -> tuple[int, Mapping[str, str], bytes]:
        path = path.split("?", 1)[0]
        if path in ("/simple/", "/simple"):
            links = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in packages)
            return 200, {"Content-Type": "text/html"}, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        for name, (filename, data, sha) in packages.items():
            if path.rstrip("/") == f"/simple/{name}":
                page = (f"<!DOCTYPE html><html><head><title>Links for {name}</title></head><body>\n"
                        f"<h1>Links for {name}</h1>\n"
                        f'<a href="/packages/{filename}#sha256={sha}" data-requires-python="&gt;=3.8">'
                        f"{filename}</a><br/>\n"
                        f"</body></html>\n")
                return 200, {"Content-Type": "text/html"}, page.encode()
            if path == f"/packages/{filename}":
                return 200, {"Content-Type": "application/octet-stream"}, data
        return 404, {"Content-Type": "text/plain"}, b"Not Found\n"

    return respond


def _tmpfs_works() -> bool:
    """Whether ``mount -t tmpfs`` works here (root, not forbidden by the container)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    d = tempfile.mkdtemp(prefix="corpus-tmpfs-probe-")
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True,
                            check=False).returncode == 0
        if ok:
            subprocess.run(["umount", d], capture_output=True, check=False)
        return ok
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[None]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True,
                   capture_output=True)
    try:
        yield
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _symlinks_to_dev_full(*rels: str) -> Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]:
    """Make each ``rel`` in the project a symlink to /dev/full: every write there fails with ENOSPC."""

    @contextlib.contextmanager
    def around(project: Path) -> Iterator[Mapping[str, str]]:
        for rel in rels:
            p = project / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink() or p.exists():
                p.unlink()
            p.symlink_to("/dev/full")
        yield {}

    return around


# --------------------------------------------------------------------------------------------------------------
# C / C++
# --------------------------------------------------------------------------------------------------------------

_RINGBUF_H = """\
#ifndef RINGBUF_H
#define RINGBUF_H

#include <stddef.h>

#define RB_CAP 8

typedef struct {
    int data[RB_CAP];
    size_t head;
    size_t tail;
    size_t len;
} ringbuf;

void rb_init(ringbuf *rb);
int rb_push(ringbuf *rb, int value);
int rb_pop(ringbuf *rb, int *out);
size_t rb_len(const ringbuf *rb);

#endif
"""

_RINGBUF_C = """\
#include "ringbuf.h"

void rb_init(ringbuf *rb)
{
    rb->head = rb->tail = rb->len = 0;
}

int rb_push(ringbuf *rb, int value)
{
    if (rb->len == RB_CAP)
        return -1;
    rb->data[rb->tail] = value;
    rb->tail = (rb->tail + 1) % RB_CAP;
    rb->len++{semi}
    return 0;
}

int rb_pop(ringbuf *rb, int *out)
{
    if (rb->len == 0)
        return -1;
    *out = rb->data[rb->head];
    rb->head = (rb->head + 1) % RB_CAP;{dec}
    return 0;
}

size_t rb_len(const ringbuf *rb)
{
    return rb->len;
}
"""

_RINGBUF_TEST = """\
#include <assert.h>
#include <stdio.h>

#include "ringbuf.h"

static void test_push_pop(void)
{
    ringbuf rb;
    int v = 0;
    rb_init(&rb);
    assert(rb_push(&rb, 42) == 0);
    assert(rb_pop(&rb, &v) == 0);
    assert(v == 42);
}

static void test_full(void)
{
    ringbuf rb;
    rb_init(&rb);
    for (int i = 0; i < RB_CAP; i++)
        assert(rb_push(&rb, i) == 0);
    assert(rb_push(&rb, 99) == -1);
}

static void test_wraparound(void)
{
    ringbuf rb;
    int v = 0;
    rb_init(&rb);
    for (int i = 0; i < 6; i++)
        assert(rb_push(&rb, i) == 0);
    for (int i = 0; i < 3; i++) {
        assert(rb_pop(&rb, &v) == 0);
        assert(v == i);
    }
    assert(rb_len(&rb) == 3);
    for (int i = 6; i < 11; i++)
        assert(rb_push(&rb, i) == 0);
    assert(rb_len(&rb) == RB_CAP);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_push_pop();
    puts("test_push_pop ... ok");
    test_full();
    puts("test_full ... ok");
    test_wraparound();
    puts("test_wraparound ... ok");
    return 0;
}
"""

_RINGBUF_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -Wextra -O2 -g
CPPFLAGS = -Iinclude

all: build/libringbuf.a

build:
\tmkdir -p build

build/ringbuf.o: src/ringbuf.c include/ringbuf.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/libringbuf.a: build/ringbuf.o
\tar rcs $@ $^

build/test_ringbuf: tests/test_ringbuf.c build/libringbuf.a
\t$(CC) $(CPPFLAGS) $(CFLAGS) $< -Lbuild -lringbuf -o $@

check: build/test_ringbuf
\t./build/test_ringbuf

clean:
\trm -rf build

.PHONY: all check clean
"""


def _ringbuf(*, semi: str = ";", dec: str = "\n    rb->len--;") -> dict[str, str]:
    return {
        "Makefile": _RINGBUF_MAKEFILE,
        "include/ringbuf.h": _RINGBUF_H,
        "src/ringbuf.c": _RINGBUF_C.replace("{semi}", semi).replace("{dec}", dec),
        "tests/test_ringbuf.c": _RINGBUF_TEST,
        "README.md": "# ringbuf\n\nA fixed-capacity ring buffer of ints for embedded C.\n",
    }


_PKT_H = """\
#ifndef PKT_H
#define PKT_H

#include <stddef.h>
#include <stdint.h>

struct pkt_header {
    uint8_t version;
    uint8_t flags;
    uint16_t payload_len;
    uint32_t seq;
};

#define PKT_HEADER_SIZE 8

int pkt_parse_header(const uint8_t *buf, size_t n, struct pkt_header *out);
size_t pkt_total_len(const struct pkt_header *h);

#endif
"""

_PKT_C = """\
#include "pkt.h"

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int pkt_parse_header(const uint8_t *buf, size_t n, struct pkt_header *out)
{
    if (n < PKT_HEADER_SIZE)
        return -1;
    out->version = buf[0];
    out->flags = buf[1];
    out->payload_len = rd16(buf + 2);
    out->seq = rd32(buf + 4);
    return out->version == 2 ? 0 : -2;
}

size_t pkt_total_len(const struct pkt_header *h)
{
    return PKT_HEADER_SIZE + h->length;
}
"""

_PKT_MAIN = """\
#include <stdio.h>

#include "pkt.h"

int main(void)
{
    const uint8_t sample[] = {2, 0, 0, 4, 0, 0, 0, 7, 'p', 'i', 'n', 'g'};
    struct pkt_header h;
    if (pkt_parse_header(sample, sizeof sample, &h) != 0) {
        fprintf(stderr, "bad header\\n");
        return 1;
    }
    printf("seq=%u total=%zu\\n", (unsigned)h.seq, pkt_total_len(&h));
    return 0;
}
"""

_PKT_CMAKE = """\
cmake_minimum_required(VERSION 3.16)
project(pktparse VERSION 0.3.0 LANGUAGES C)

set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)

add_library(pktparse src/pkt.c)
target_include_directories(pktparse PUBLIC include)

add_executable(pktdump src/main.c)
target_link_libraries(pktdump PRIVATE pktparse)
"""

_VEC_HPP = """\
#pragma once

#include <array>
#include <cstddef>

namespace vm {

template <typename T, std::size_t N>
struct Vec {
    std::array<T, N> v{};

    T& operator[](std::size_t i) { return v[i]; }
    const T& operator[](std::size_t i) const { return v[i]; }
};

template <typename T, std::size_t N>
T dot(const Vec<T, N>& a, const Vec<T, N>& b)
{
    T s{};
    for (std::size_t i = 0; i < N; ++i) s += a[i] * b[i];
    return s;
}

template <typename T, std::size_t N>
Vec<T, N> scale(const Vec<T, N>& a, T k)
{
    Vec<T, N> r;
    for (std::size_t i = 0; i < N; ++i) r[i] = a[i] * k;
    return r;
}

}  // namespace vm
"""

_VEC_LIGHTING = """\
#include "vecmath.hpp"

#include <algorithm>

namespace shade {

using Normal = vm::Vec<float, 3>;
using Direction = vm::Vec<double, 3>;

float lambert(const Normal& n, const Direction& light)
{
    return std::max(0.0f, vm::dot(n, light));
}

float half_lambert(const Normal& n, const Direction& light)
{
    const float d = lambert(n, light);
    return d * 0.5f + 0.5f;
}

}  // namespace shade
"""

_VEC_MAIN = """\
#include <cstdio>

namespace shade {
float lambert(const vm::Vec<float, 3>& n, const vm::Vec<double, 3>& light);
}

int main()
{
    std::puts("vecmath demo");
    return 0;
}
"""

_VEC_MAKEFILE = """\
CXX = g++
CXXFLAGS = -std=c++17 -Wall -Wextra -O2
CPPFLAGS = -Iinclude
OBJS = build/lighting.o

all: build/libvecmath.a

build:
\tmkdir -p build

build/%.o: src/%.cpp include/vecmath.hpp | build
\t$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

build/libvecmath.a: $(OBJS)
\tar rcs $@ $^

.PHONY: all
"""

_TH_H = """\
#ifndef TINYHASH_H
#define TINYHASH_H

#include <stddef.h>
#include <stdint.h>

/* 32-bit FNV-1a of n bytes */
uint32_t th_hash32(const void *data, size_t n);

/* 64-bit FNV-1a of n bytes */
uint64_t th_hash64(const void *data, size_t n);

#endif
"""

_TH_C = """\
#include "tinyhash.h"

uint32_t th_fnv1a32(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

uint64_t th_hash64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
"""

_TH_MAIN = """\
#include <stdio.h>
#include <string.h>

#include "tinyhash.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        printf("%08x  %016llx  %s\\n", (unsigned)th_hash32(argv[i], n),
               (unsigned long long)th_hash64(argv[i], n), argv[i]);
    }
    return 0;
}
"""

_TH_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O2
CPPFLAGS = -Iinclude
OBJS = build/main.o build/hash.o

all: build/thsum

build:
\tmkdir -p build

build/%.o: src/%.c include/tinyhash.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/thsum: $(OBJS)
\t$(CC) $(LDFLAGS) $^ -o $@

.PHONY: all
"""

_LOGROT_C = """\
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "app.log";
    char rotated[4096];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    if (rename(path, rotated) != 0) {
        perror(path);
        return 1;
    }
    printf("rotated %s -> %s\\n", path, rotated);
    return 0;
}
"""

# the recipe lines are indented with four spaces, not a tab
_LOGROT_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O2
PREFIX ?= /usr/local

all: logrotate-lite

logrotate-lite: src/main.c
    $(CC) $(CFLAGS) $< -o $@

install: logrotate-lite
    install -m 0755 logrotate-lite $(PREFIX)/bin/

.PHONY: all install
"""

_SENSOR_CMAKE = """\
cmake_minimum_required(VERSION 3.16)
project(sensorhub VERSION 1.2.0 LANGUAGES C)

set(CMAKE_C_STANDARD 11)

add_executable(sensorhub src/main.c src/bus.c)
target_include_directories(sensor_hub PRIVATE include)
target_link_libraries(sensorhub PRIVATE m)

install(TARGETS sensorhub RUNTIME DESTINATION bin)
"""

_SENSOR_BUS_H = """\
#ifndef BUS_H
#define BUS_H
double bus_read_celsius(int channel);
#endif
"""

_SENSOR_BUS_C = """\
#include <math.h>
#include "bus.h"

double bus_read_celsius(int channel)
{
    return 21.5 + sin((double)channel);
}
"""

_SENSOR_MAIN = """\
#include <stdio.h>
#include "bus.h"

int main(void)
{
    for (int ch = 0; ch < 4; ch++)
        printf("ch%d %.2f C\\n", ch, bus_read_celsius(ch));
    return 0;
}
"""

_JSONLOG_C = """\
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "jsonlog.h"

void jsonlog_write(FILE *out, const char *level, const char *msg)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddNumberToObject(obj, "ts", (double)time(NULL));
    cJSON_AddStringToObject(obj, "level", level);
    cJSON_AddStringToObject(obj, "msg", msg);
    char *text = cJSON_PrintUnformatted(obj);
    fprintf(out, "%s\\n", text);
    cJSON_free(text);
    cJSON_Delete(obj);
}
"""

_JSONLOG_H = """\
#ifndef JSONLOG_H
#define JSONLOG_H
#include <stdio.h>
void jsonlog_write(FILE *out, const char *level, const char *msg);
#endif
"""

_JSONLOG_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O2
CPPFLAGS = -Iinclude
LDLIBS = -lcjson

all: build/libjsonlog.a

build:
\tmkdir -p build

build/jsonlog.o: src/jsonlog.c include/jsonlog.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/libjsonlog.a: build/jsonlog.o
\tar rcs $@ $^

.PHONY: all
"""

_TRACE_CMAKE = """\
cmake_minimum_required(VERSION 3.16)
project(tracelog VERSION 0.2.0 LANGUAGES CXX)

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)

add_library(tracelog src/tracelog.cpp)
target_include_directories(tracelog PUBLIC include)
"""

_TRACE_HPP = """\
#pragma once

#include <string_view>

namespace tracelog {

void span(std::string_view name, double millis);

}  // namespace tracelog
"""

_TRACE_CPP = """\
#include "tracelog.hpp"

#include <cstdio>

#include <fmt/core.h>

namespace tracelog {

void span(std::string_view name, double millis)
{
    fmt::print(stderr, "[trace] {:<24} {:8.3f} ms\\n", name, millis);
}

}  // namespace tracelog
"""

_FIXED_HPP = """\
#pragma once

#include <cstdint>

namespace fp {

using q16 = std::int32_t;  // Q16.16 fixed point

constexpr q16 from_int(int v) { return static_cast<q16>(static_cast<std::uint32_t>(v) << 16); }
inline q16 from_double(double v) { return static_cast<q16>(v * 65536.0 + (v >= 0 ? 0.5 : -0.5)); }
inline double to_double(q16 v) { return v / 65536.0; }

q16 mul(q16 a, q16 b);
q16 div(q16 a, q16 b);

}  // namespace fp
"""

_FIXED_CPP = """\
#include "fixed.hpp"

namespace fp {

q16 mul(q16 a, q16 b)
{
    return static_cast<q16>((static_cast<std::int64_t>(a) * b) >> 16);
}

q16 div(q16 a, q16 b)
{
    // shift first so the quotient keeps its fraction
    return static_cast<q16>(static_cast<std::uint32_t>(a) << 16) / b;
}

}  // namespace fp
"""

_FIXED_TEST = """\
#include <cmath>
#include <cstdio>
#include <cstring>

#include "fixed.hpp"

static int expect(const char* what, double got, double want)
{
    if (std::fabs(got - want) > 1e-4) {
        std::printf("FAIL %s: expected %g, got %g\\n", what, want, got);
        return 1;
    }
    std::printf("ok   %s = %g\\n", what, got);
    return 0;
}

int main(int argc, char** argv)
{
    const char* which = argc > 1 ? argv[1] : "";
    int failed = 0;
    if (!std::strcmp(which, "convert")) {
        failed += expect("to_double(from_double(1.25))", fp::to_double(fp::from_double(1.25)), 1.25);
        failed += expect("to_double(from_int(-3))", fp::to_double(fp::from_int(-3)), -3.0);
    } else if (!std::strcmp(which, "mul")) {
        failed += expect("mul(1.5, 2.25)", fp::to_double(fp::mul(fp::from_double(1.5), fp::from_double(2.25))), 3.375);
        failed += expect("mul(-2, 0.5)", fp::to_double(fp::mul(fp::from_int(-2), fp::from_double(0.5))), -1.0);
    } else if (!std::strcmp(which, "div")) {
        failed += expect("div(3, 2)", fp::to_double(fp::div(fp::from_int(3), fp::from_int(2))), 1.5);
        failed += expect("div(1, 4)", fp::to_double(fp::div(fp::from_int(1), fp::from_int(4))), 0.25);
    } else {
        std::printf("unknown test group '%s'\\n", which);
        return 2;
    }
    return failed ? 1 : 0;
}
"""

_FIXED_CMAKE = """\
cmake_minimum_required(VERSION 3.16)
project(fixedpoint VERSION 0.4.1 LANGUAGES CXX)

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)

add_library(fixedpoint src/fixed.cpp)
target_include_directories(fixedpoint PUBLIC include)

enable_testing()
add_executable(test_fixed tests/test_fixed.cpp)
target_link_libraries(test_fixed PRIVATE fixedpoint)
add_test(NAME fixed_convert COMMAND test_fixed convert)
add_test(NAME fixed_mul COMMAND test_fixed mul)
add_test(NAME fixed_div COMMAND test_fixed div)
"""

_STRPOOL_H = """\
#ifndef STRPOOL_H
#define STRPOOL_H

#include <stddef.h>

typedef struct {
    char **items;
    size_t len;
    size_t cap;
} strpool;

void sp_init(strpool *p);
const char *sp_intern(strpool *p, const char *s);
const char *sp_get(const strpool *p, size_t i);
size_t sp_len(const strpool *p);
void sp_clear(strpool *p);

#endif
"""

_STRPOOL_C = """\
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "strpool.h"

void sp_init(strpool *p)
{
    p->items = NULL;
    p->len = p->cap = 0;
}

const char *sp_intern(strpool *p, const char *s)
{
    for (size_t i = 0; i < p->len; i++)
        if (strcmp(p->items[i], s) == 0)
            return p->items[i];
    if (p->len == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->items = realloc(p->items, p->cap * sizeof *p->items);
    }
    p->items[p->len] = strdup(s);
    return p->items[p->len++];
}

const char *sp_get(const strpool *p, size_t i)
{
    return p->items[i];
}

size_t sp_len(const strpool *p)
{
    return p->len;
}

void sp_clear(strpool *p)
{
    for (size_t i = 0; i < p->len; i++)
        free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->cap = 0;
}
"""

_STRPOOL_TEST_BASIC = """\
#include <stdio.h>
#include <string.h>

#include "strpool.h"

int main(void)
{
    strpool p;
    sp_init(&p);
    const char *a = sp_intern(&p, "alpha");
    const char *b = sp_intern(&p, "alpha");
    if (a != b || sp_len(&p) != 1) {
        printf("FAIL intern dedup\\n");
        return 1;
    }
    printf("ok intern dedup\\n");
    sp_clear(&p);
    return 0;
}
"""

_STRPOOL_TEST_CLEAR = """\
#include <stdio.h>
#include <string.h>

#include "strpool.h"

int main(void)
{
    strpool p;
    sp_init(&p);
    sp_intern(&p, "red");
    sp_intern(&p, "green");
    sp_clear(&p);
    for (size_t i = 0; i < sp_len(&p); i++)
        printf("leftover %zu: %s\\n", i, sp_get(&p, i));
    printf("ok clear\\n");
    return 0;
}
"""

_STRPOOL_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O0 -g
CPPFLAGS = -Iinclude
TESTS = build/test_basic build/test_clear

all: $(TESTS)

build:
\tmkdir -p build

build/strpool.o: src/strpool.c include/strpool.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/test_%: tests/test_%.c build/strpool.o
\t$(CC) $(CPPFLAGS) $(CFLAGS) $^ -o $@

.PHONY: all
"""

_STRPOOL_RUN = """\
#!/usr/bin/env bash
# run every test binary; keep core files of crashing tests for the artifacts upload
ulimit -c unlimited
status=0
for t in build/test_*; do
    echo "== $t"
    "$t" || status=1
done
exit $status
"""

_LZ_H = """\
#ifndef LZMINI_H
#define LZMINI_H

#include <stddef.h>

/* run-length decode: pairs of (count, byte); returns a malloc'd buffer of *out_len bytes */
unsigned char *rle_decode(const unsigned char *in, size_t n, size_t *out_len);

#endif
"""

_LZ_C = """\
#include <stdlib.h>

#include "lzmini.h"

unsigned char *rle_decode(const unsigned char *in, size_t n, size_t *out_len)
{
    size_t total = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        total += in[i];
    unsigned char *out = malloc(total);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        for (size_t j = 0; j <= in[i]; j++)
            out[k++] = in[i + 1];
    *out_len = total;
    return out;
}
"""

_LZ_TEST = """\
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lzmini.h"

int main(void)
{
    const unsigned char packed[] = {3, 'a', 2, 'b', 1, 'c'};
    size_t n = 0;
    unsigned char *out = rle_decode(packed, sizeof packed, &n);
    if (n != 6 || memcmp(out, "aaabbc", 6) != 0) {
        printf("FAIL rle_decode\\n");
        return 1;
    }
    printf("ok rle_decode\\n");
    free(out);
    return 0;
}
"""

_LZ_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O1 -g -fno-omit-frame-pointer
SAN = -fsanitize=address,undefined
CPPFLAGS = -Iinclude

all: build/test_rle

build:
\tmkdir -p build

build/test_rle: tests/test_rle.c src/rle.c include/lzmini.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) tests/test_rle.c src/rle.c -o $@

test: build/test_rle
\t./build/test_rle

.PHONY: all test
"""

_CFG_C = """\
#include <stdio.h>
#include <string.h>

#include "cfg.h"

int cfg_parse_line(const char *line, char *key, size_t keysz, char *val, size_t valsz)
{
    int lineno = 0;
    const char *eq = strchr(line, '=');
    if (!eq)
        return -1;
    int klen = (int)(eq - line);
    if (klen >= keysz)
        return -2;
    memcpy(key, line, (size_t)klen);
    key[klen] = '\\0';
    snprintf(val, valsz, "%s", eq + 1);
    return 0;
}
"""

_CFG_H = """\
#ifndef CFG_H
#define CFG_H
#include <stddef.h>
int cfg_parse_line(const char *line, char *key, size_t keysz, char *val, size_t valsz);
#endif
"""

_CFG_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -Wextra -Werror -O2
CPPFLAGS = -Iinclude

all: build/libcfg.a

build:
\tmkdir -p build

build/cfg.o: src/cfg.c include/cfg.h | build
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/libcfg.a: build/cfg.o
\tar rcs $@ $^

.PHONY: all
"""


def _native_cases() -> list[Case]:
    ringbuf_compile = Case(
        name="c-gcc-expected-semicolon", ecosystem="c", category="compilation_error", project="ringbuf-c",
        files=_ringbuf(semi=""),
        steps=(Step("Build", "make"),),
    )
    ringbuf_assert = Case(
        name="c-make-check-assertion", ecosystem="c", category="test_failure", project="ringbuf-c",
        files=_ringbuf(dec=""),
        steps=(Step("Build", "make"), Step("Test", "make check")),
        note="assert() aborts the test binary; make reports the abort, but the test's assertion is what failed",
    )
    pkt_member = Case(
        name="c-cmake-no-member-named", ecosystem="c", category="compilation_error", project="pktparse",
        files={"CMakeLists.txt": _PKT_CMAKE, "include/pkt.h": _PKT_H, "src/pkt.c": _PKT_C,
               "src/main.c": _PKT_MAIN},
        steps=(Step("Configure", "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release"),
               Step("Build", "cmake --build build")),
    )
    vec_template = Case(
        name="cpp-gxx-no-matching-function-template", ecosystem="cpp", category="compilation_error",
        project="vecmath-cpp",
        files={"Makefile": _VEC_MAKEFILE, "include/vecmath.hpp": _VEC_HPP, "src/lighting.cpp": _VEC_LIGHTING,
               "examples/demo.cpp": _VEC_MAIN},
        steps=(Step("Build", "make"),),
    )
    th_link = Case(
        name="c-ld-undefined-reference", ecosystem="c", category="compilation_error", project="tinyhash",
        files={"Makefile": _TH_MAKEFILE, "include/tinyhash.h": _TH_H, "src/hash.c": _TH_C, "src/main.c": _TH_MAIN},
        steps=(Step("Build", "make"),),
        note="a link error, labelled compilation_error: the function the header declares was renamed in hash.c "
             "(th_hash32 -> th_fnv1a32), so the fix is in the code; a missing -l flag or source file in the "
             "build files would be build_config",
    )
    logrot_sep = Case(
        name="c-make-missing-separator", ecosystem="c", category="build_config", project="logrotate-lite",
        files={"Makefile": _LOGROT_MAKEFILE, "src/main.c": _LOGROT_C},
        steps=(Step("Build", "make"),),
    )
    sensor_cmake = Case(
        name="c-cmake-configure-unknown-target", ecosystem="c", category="build_config", project="sensorhub",
        files={"CMakeLists.txt": _SENSOR_CMAKE, "include/bus.h": _SENSOR_BUS_H, "src/bus.c": _SENSOR_BUS_C,
               "src/main.c": _SENSOR_MAIN},
        steps=(Step("Configure", "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release"),),
        note="the CMakeLists names a target that does not exist (sensor_hub for sensorhub): configure fails",
    )
    jsonlog_header = Case(
        name="c-gcc-missing-header", ecosystem="c", category="dependency_missing", project="jsonlog-c",
        files={"Makefile": _JSONLOG_MAKEFILE, "include/jsonlog.h": _JSONLOG_H, "src/jsonlog.c": _JSONLOG_C},
        steps=(Step("Build", "make"),),
        note="cJSON's development package (libcjson-dev) is not installed on the runner",
    )
    trace_header = Case(
        name="cpp-gxx-missing-header", ecosystem="cpp", category="dependency_missing", project="tracelog-cpp",
        files={"CMakeLists.txt": _TRACE_CMAKE, "include/tracelog.hpp": _TRACE_HPP, "src/tracelog.cpp": _TRACE_CPP},
        steps=(Step("Configure", "cmake -S . -B build"), Step("Build", "cmake --build build")),
        note="the {fmt} library's headers (libfmt-dev) are not installed on the runner",
    )
    fixed_ctest = Case(
        name="cpp-ctest-failed", ecosystem="cpp", category="test_failure", project="fixedpoint-cpp",
        files={"CMakeLists.txt": _FIXED_CMAKE, "include/fixed.hpp": _FIXED_HPP, "src/fixed.cpp": _FIXED_CPP,
               "tests/test_fixed.cpp": _FIXED_TEST},
        steps=(Step("Configure", "cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug"),
               Step("Build", "cmake --build build"),
               Step("Test", "ctest --test-dir build --output-on-failure")),
    )
    strpool_segv = Case(
        name="c-test-segfault", ecosystem="c", category="crash", project="strpool",
        files={"Makefile": _STRPOOL_MAKEFILE, "include/strpool.h": _STRPOOL_H, "src/strpool.c": _STRPOOL_C,
               "tests/test_basic.c": _STRPOOL_TEST_BASIC, "tests/test_clear.c": _STRPOOL_TEST_CLEAR,
               "run_tests.sh": _STRPOOL_RUN},
        steps=(Step("Build", "make"), Step("Test", "./run_tests.sh")),
        note="sp_clear frees the items but leaves len, so test_clear reads through a NULL pointer; bash reports "
             "the signal",
    )
    lz_asan = Case(
        name="c-asan-heap-buffer-overflow", ecosystem="c", category="crash", project="lz-mini",
        files={"Makefile": _LZ_MAKEFILE, "include/lzmini.h": _LZ_H, "src/rle.c": _LZ_C,
               "tests/test_rle.c": _LZ_TEST},
        steps=(Step("Build", "make"), Step("Test", "make test")),
        note="an off-by-one (j <= count) writes past the malloc'd buffer; AddressSanitizer aborts the test",
    )
    cfg_werror = Case(
        name="c-gcc-werror", ecosystem="c", category="compilation_error", project="cfgparse-c",
        files={"Makefile": _CFG_MAKEFILE, "include/cfg.h": _CFG_H, "src/cfg.c": _CFG_C},
        steps=(Step("Build", "make"),),
        note="-Wall -Wextra -Werror: an unused variable and a signed/unsigned comparison become errors",
    )
    return [ringbuf_compile, ringbuf_assert, pkt_member, vec_template, th_link, logrot_sep, sensor_cmake,
            jsonlog_header, trace_header, fixed_ctest, strpool_segv, lz_asan, cfg_werror]


# --------------------------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------------------------

_DEPLOY_SH = """\
#!/usr/bin/env bash
set -euo pipefail
env_name="${1:-staging}"
version="$(cat VERSION)"
echo "Deploying deploybot ${version} to ${env_name}"
echo "Uploading release manifest..."
curl -sS --fail --retry 2 --retry-connrefused --retry-delay 1 \\
    -X POST "https://deploy-api.example.com/api/v1/deployments" \\
    -H "Content-Type: application/json" \\
    --data @deploy/manifest.json
echo "Deployment to ${env_name} requested."
"""

_DEPLOY_MANIFEST = """\
{"service": "deploybot", "environment": "staging", "image": "deploybot:2.8.0", "replicas": 2}
"""

_EDGE_INSTALL = """\
#!/usr/bin/env bash
set -euo pipefail
TOOL_VERSION=0.14.2
echo "Fetching edgectl ${TOOL_VERSION}"
mkdir -p .tools
curl -fsSL "https://registry.example.invalid/edgectl/v${TOOL_VERSION}/edgectl-linux-amd64.tar.gz" \\
    -o .tools/edgectl.tar.gz
tar -xzf .tools/edgectl.tar.gz -C .tools
"""

_EDGE_CONF = """\
upstreams:
  - name: api
    servers: [10.0.0.11:8080, 10.0.0.12:8080]
routes:
  - match: /api/
    upstream: api
"""

_MIRROR_SYNC = """\
#!/usr/bin/env bash
set -euo pipefail
echo "Syncing shared configuration"
rm -rf vendor/shared-config
git clone --depth 1 "https://git.example.com/platform/shared-config.git" vendor/shared-config
echo "shared-config at $(git -C vendor/shared-config rev-parse --short HEAD)"
"""

_INVOICE_PY = """\
from decimal import Decimal


def total(lines):
    return sum((Decimal(str(q)) * Decimal(str(p)) for q, p in lines), Decimal(0))
"""


def _pip_env(cache: str = ".pip-cache") -> dict[str, str]:
    """pip as a CI runner has it: no find-links directory of this machine, a cache of its own."""
    return {"PIP_FIND_LINKS": "", "PIP_CACHE_DIR": cache, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1"}


def _npm_env() -> dict[str, str]:
    return {"npm_config_cache": ".npm-cache", "npm_config_update_notifier": "false", "npm_config_audit": "false",
            "npm_config_fund": "false", "npm_config_loglevel": "notice"}


def _network_cases() -> list[Case]:
    curl_refused = Case(
        name="shell-curl-connection-refused-deploy", ecosystem="shell", category="network", project="deploybot",
        files={"deploy.sh": _DEPLOY_SH, "VERSION": "2.8.0\n", "deploy/manifest.json": _DEPLOY_MANIFEST},
        steps=(Step("Deploy to staging", "./deploy.sh staging"),),
        around=resolve_to_loopback("deploy-api.example.com"),
        note="the deploy API (deploy-api.example.com:443) refuses connections: curl retries twice, then gives up",
        expect=r"Failed to connect to deploy-api\.example\.com port 443",
    )
    curl_dns = Case(
        name="shell-curl-could-not-resolve-host", ecosystem="shell", category="network", project="edge-proxy-conf",
        files={"scripts/install-edgectl.sh": _EDGE_INSTALL, "conf/edge.yml": _EDGE_CONF},
        steps=(Step("Install edgectl", "./scripts/install-edgectl.sh"),),
        note="registry.example.invalid never resolves (.invalid is reserved)",
    )
    git_refused = Case(
        name="shell-git-clone-connection-refused", ecosystem="shell", category="network", project="mirror-sync",
        files={"scripts/sync.sh": _MIRROR_SYNC, "README.md": "# mirror-sync\n\nPulls the shared config repo.\n"},
        steps=(Step("Sync shared config", "./scripts/sync.sh"),),
        around=resolve_to_loopback("git.example.com"),
        note="the company git server (git.example.com:443) refuses connections",
        expect=r"unable to access 'https://git\.example\.com/.*Failed to connect to git\.example\.com port 443",
    )
    pip_refused = Case(
        name="python-pip-index-connection-refused", ecosystem="python", category="network", project="invoice-api",
        files={"requirements.txt": "ledgerkit-core==1.2.0\nmoneyfmt==0.9.3\n", "invoice/__init__.py": "",
               "invoice/totals.py": _INVOICE_PY},
        steps=(Step("Install dependencies",
                    "pip install --index-url https://nexus.example.com/repository/pypi/simple -r requirements.txt",
                    env=_pip_env()),),
        around=proxy_down(_PORTS["pip-proxy"]),
        note=("the runner's HTTP proxy (https_proxy, not shown) refuses connections, so pip never reaches the "
              "company mirror nexus.example.com: it retries, then finds no version"),
        expect=r"Cannot connect to proxy",
    )
    return [curl_refused, curl_dns, git_refused, pip_refused]


# --------------------------------------------------------------------------------------------------------------
# rate limits (a local server answering 429 with Retry-After and a GitHub-like body)
# --------------------------------------------------------------------------------------------------------------

_NOTES_SH = """\
#!/usr/bin/env bash
set -euo pipefail
repo="lanternworks/brightpath"
echo "Collecting merged pull requests for ${repo} since $(cat LAST_RELEASE)"
curl -sS --fail-with-body \\
    -H "Accept: application/vnd.github+json" \\
    -H "X-GitHub-Api-Version: 2022-11-28" \\
    "${GITHUB_API_URL}/repos/${repo}/pulls?state=closed&base=main&per_page=100"
"""

_WIDGET_PACKAGE_JSON = """\
{
  "name": "widget-shelf",
  "version": "0.7.0",
  "private": true,
  "description": "Drag-and-drop widget shelf for dashboards",
  "main": "src/index.js",
  "scripts": {
    "test": "node --test"
  },
  "dependencies": {
    "tiny-color-fmt": "^2.0.1",
    "shelf-layout": "^1.3.0"
  }
}
"""

_WIDGET_INDEX = """\
'use strict';
const fmt = require('tiny-color-fmt');
const layout = require('shelf-layout');

module.exports = function render(widgets) {
  return layout.pack(widgets).map((w) => fmt.hex(w.color));
};
"""

_QUOTA_PY = """\
import time


class TokenBucket:
    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self, n=1):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
"""


@contextlib.contextmanager
def _rate_limited_files_index(_: Path) -> Iterator[Mapping[str, str]]:
    """A package index whose pages load but whose file downloads answer 429 (a CDN front's rate limit)."""
    filename, whl = _wheel("tokenbucket-utils", "2.1.0", {"tokenbucket_utils/__init__.py": _QUOTA_PY.encode()})
    pages = _index({"tokenbucket-utils": (filename, whl, hashlib.sha256(whl).hexdigest())})
    limited = _rate_limited(1)

    def respond(method: str, path: str) -> tuple[int, Mapping[str, str], bytes]:
        return limited(method, path) if path.startswith("/packages/") else pages(method, path)

    with _serve(respond, _PORTS["pip-429"]) as port:
        yield {"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple"}


def _rate_limit_cases() -> list[Case]:
    curl_429 = Case(
        name="shell-curl-429-api-rate-limit", ecosystem="shell", category="rate_limit", project="release-notes-bot",
        files={"scripts/collect-prs.sh": _NOTES_SH, "LAST_RELEASE": "v3.1.0\n"},
        steps=(Step("Collect pull requests", "./scripts/collect-prs.sh"),),
        around=_rate_limit_server(lambda port: {"GITHUB_API_URL": f"http://127.0.0.1:{port}"}, _PORTS["curl-429"]),
        note="a GitHub-like API on 127.0.0.1 answers 429 with Retry-After and 'API rate limit exceeded'",
    )
    pip_429 = Case(
        name="python-pip-index-429", ecosystem="python", category="rate_limit", project="quota-client",
        files={"requirements.txt": "tokenbucket-utils==2.1.0\n", "quota/__init__.py": "",
               "quota/bucket.py": _QUOTA_PY},
        steps=(Step("Install dependencies", "pip install -r requirements.txt", env=_pip_env()),),
        around=_rate_limited_files_index,
        note="the package index's pages load but its file downloads answer 429 Too Many Requests (Retry-After: 1, "
             "which pip honours before giving up)",
    )
    npm_429 = Case(
        name="node-npm-install-429", ecosystem="node", category="rate_limit", project="widget-shelf",
        files={"package.json": _WIDGET_PACKAGE_JSON, "src/index.js": _WIDGET_INDEX},
        steps=(Step("Install dependencies", 'npm install --registry "$NPM_REGISTRY"',
                    env={**_npm_env(), "npm_config_fetch_retries": "1", "npm_config_fetch_retry_mintimeout": "1000",
                         "npm_config_fetch_retry_maxtimeout": "2000"}),),
        around=_rate_limit_server(lambda port: {"NPM_REGISTRY": f"http://127.0.0.1:{port}/"}, _PORTS["npm-429"]),
        note="the npm registry on 127.0.0.1 answers every request 429 Too Many Requests",
    )
    git_429 = Case(
        name="shell-git-clone-429", ecosystem="shell", category="rate_limit", project="docs-mirror",
        files={"README.md": "# docs-mirror\n\nBuilds the handbook site from the docs repository.\n",
               "mkdocs.yml": "site_name: Handbook\ndocs_dir: handbook/docs\n"},
        steps=(Step("Fetch handbook", 'git clone --depth 1 "$HANDBOOK_REPO" handbook'),),
        around=_rate_limit_server(lambda port: {"HANDBOOK_REPO": f"http://127.0.0.1:{port}/lanternworks/handbook.git"},
                                  _PORTS["git-429"]),
        note="the git host on 127.0.0.1 answers 429 Too Many Requests",
    )
    return [curl_429, pip_429, npm_429, git_429]


# --------------------------------------------------------------------------------------------------------------
# corrupt caches: a package whose bytes do not match the index's sha256, a truncated cache archive
# --------------------------------------------------------------------------------------------------------------

_LEDGER_FMT_PY = b'''\
"""Format ledger amounts."""

from decimal import Decimal


def amount(value, currency="EUR"):
    return f"{Decimal(value):,.2f} {currency}"
'''


def _corrupt(data: bytes) -> bytes:
    """The same length with a run of bytes in the middle overwritten, as a bad disk or a broken proxy does."""
    mid = len(data) // 2
    return data[:mid] + bytes(64) + data[mid + 64:]


@contextlib.contextmanager
def _corrupt_wheel_index(_: Path) -> Iterator[Mapping[str, str]]:
    filename, good = _wheel("ledger-fmt", "0.3.1", {"ledger_fmt/__init__.py": _LEDGER_FMT_PY * 40})
    sha = hashlib.sha256(good).hexdigest()
    with _serve(_index({"ledger-fmt": (filename, _corrupt(good), sha)}), _PORTS["pip-hash"]) as port:
        yield {"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple"}


_NODE_CACHE_KEY = "node-modules-linux-x64-9c41e07b2d"


@contextlib.contextmanager
def _truncated_cache_archive(project: Path) -> Iterator[Mapping[str, str]]:
    """A node_modules cache archive (.tar.gz) cut off part-way, as an interrupted cache upload leaves it."""
    rnd = random.Random(20240611)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for pkg in ("left-trim", "kiosk-router", "color-wheel", "tiny-intl", "date-shim"):
            for name, size in (("package.json", 400), ("index.js", 90_000), ("dist/bundle.min.js", 160_000)):
                text = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz(){};=.,\n ") for _ in range(size)).encode()
                info = tarfile.TarInfo(f"node_modules/{pkg}/{name}")
                info.size, info.mtime, info.mode = len(text), 1718000000, 0o644
                tf.addfile(info, io.BytesIO(text))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    cache = project / ".ci-cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{_NODE_CACHE_KEY}.tar.gz").write_bytes(data[: len(data) // 2 + 4321])
    yield {"CACHE_DIR": ".ci-cache"}


_FRONTDESK_PACKAGE_JSON = """\
{
  "name": "frontdesk-ui",
  "version": "1.9.2",
  "private": true,
  "scripts": {
    "build": "node build.js"
  }
}
"""


def _npm_tarball(files: Mapping[str, str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{rel}")
            info.size, info.mtime, info.mode = len(data), 499162500, 0o644
            tf.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


@contextlib.contextmanager
def _corrupt_npm_registry(_: Path) -> Iterator[Mapping[str, str]]:
    """An npm registry whose tarball does not match the integrity its packument gives (a corrupt mirror cache)."""
    name, version = "kiosk-clock", "1.4.0"
    body = "".join(f"exports.tick{i} = (d) => d.toISOString().slice(11, 19);\n" for i in range(400))
    good = _npm_tarball({"package.json": f'{{"name": "{name}", "version": "{version}", '
                                                        f'"main": "index.js"}}\n', "index.js": body})
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(good).digest()).decode()
    shasum = hashlib.sha1(good).hexdigest()  # noqa: S324 - npm's legacy shasum field
    bad = _corrupt(good)
    state: dict[str, int] = {}

    def respond(_: str, path: str) -> tuple[int, Mapping[str, str], bytes]:
        base = f"http://127.0.0.1:{state['port']}"
        if path.rstrip("/") == f"/{name}":
            doc = {"name": name, "dist-tags": {"latest": version},
                   "versions": {version: {"name": name, "version": version, "main": "index.js",
                                          "dist": {"tarball": f"{base}/{name}/-/{name}-{version}.tgz",
                                                   "integrity": integrity, "shasum": shasum}}}}
            return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()
        if path == f"/{name}/-/{name}-{version}.tgz":
            return 200, {"Content-Type": "application/octet-stream"}, bad
        return 404, {"Content-Type": "application/json"}, b'{"error":"Not found"}'

    with _serve(respond, _PORTS["npm-hash"]) as port:
        state["port"] = port
        yield {"NPM_REGISTRY": f"http://127.0.0.1:{port}/"}


_KIOSK_PACKAGE_JSON = """\
{
  "name": "kiosk-panel",
  "version": "0.3.0",
  "private": true,
  "main": "main.js",
  "dependencies": {
    "kiosk-clock": "^1.4.0"
  }
}
"""


def _cache_cases() -> list[Case]:
    pip_hash = Case(
        name="python-pip-hash-mismatch-corrupt-wheel", ecosystem="python", category="cache_corruption",
        project="ledgerlite",
        files={"requirements.txt": "ledger-fmt==0.3.1\n", "ledgerlite/__init__.py": "",
               "ledgerlite/report.py": "from ledger_fmt import amount\n\n\ndef line(v):\n    return amount(v)\n"},
        steps=(Step("Install dependencies", "pip install -r requirements.txt", env=_pip_env()),),
        around=_corrupt_wheel_index,
        note="the mirror serves a wheel whose bytes were damaged in its cache: the index's sha256 is right, "
             "the file is not",
    )
    tar_cache = Case(
        name="shell-tar-cache-restore-unexpected-eof", ecosystem="shell", category="cache_corruption",
        project="frontdesk-ui",
        files={"package.json": _FRONTDESK_PACKAGE_JSON, "build.js": "console.log('built');\n"},
        steps=(Step("Restore node_modules cache",
                    f'echo "Cache hit for key {_NODE_CACHE_KEY}"; '
                    f'tar -xzf "$CACHE_DIR/{_NODE_CACHE_KEY}.tar.gz"'),),
        around=_truncated_cache_archive,
        note="the cache archive was cut off part-way (an interrupted upload): gzip and tar hit its end early",
    )
    npm_integrity = Case(
        name="node-npm-eintegrity-local-registry", ecosystem="node", category="cache_corruption", project="kiosk-panel",
        files={"package.json": _KIOSK_PACKAGE_JSON, "main.js": "require('kiosk-clock');\n"},
        steps=(Step("Install dependencies", 'npm install --registry "$NPM_REGISTRY"',
                    env={**_npm_env(), "npm_config_fetch_retries": "0"}),),
        around=_corrupt_npm_registry,
        note="the registry mirror serves a tarball damaged in its cache: the packument's integrity is right, "
             "the file is not",
    )
    return [pip_hash, tar_cache, npm_integrity]


# --------------------------------------------------------------------------------------------------------------
# out of memory: real allocators under ulimit -v, and the OOM killer's SIGKILL
# --------------------------------------------------------------------------------------------------------------

_CRUNCH_PY = """\
import argparse


def render(zoom):
    side = 256 << zoom
    print(f"zoom {zoom}: allocating {side}x{side} RGBA canvas ({side * side * 4 / 2**20:.0f} MiB)", flush=True)
    canvas = bytearray(side * side * 4)
    return canvas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-zoom", type=int, default=6)
    args = ap.parse_args()
    for zoom in range(args.max_zoom + 1):
        canvas = render(zoom)
        print(f"zoom {zoom}: rendered {len(canvas)} bytes", flush=True)


if __name__ == "__main__":
    main()
"""

_CRUNCH_SH = """\
#!/usr/bin/env bash
# the tile job gets 768 MiB of address space, as on the production workers
set -euo pipefail
ulimit -v 786432
python crunch.py --max-zoom 6
"""

_METRICSAGG_C = """\
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_SAMPLES (8u << 20) /* 8 Mi samples of 8 bytes each = 64 MiB per shard */

int main(int argc, char **argv)
{
    unsigned shards = argc > 1 ? (unsigned)atoi(argv[1]) : 16;
    double **buf = calloc(shards, sizeof *buf);
    if (!buf)
        return 1;
    for (unsigned i = 0; i < shards; i++) {
        buf[i] = malloc(SHARD_SAMPLES * sizeof(double));
        if (!buf[i]) {
            fprintf(stderr, "metricsagg: malloc(%zu) failed for shard %u of %u: %s\\n",
                    (size_t)SHARD_SAMPLES * sizeof(double), i + 1, shards, strerror(errno));
            fprintf(stderr, "metricsagg: out of memory\\n");
            return 2;
        }
        printf("shard %u/%u: buffer ready\\n", i + 1, shards);
        fflush(stdout);
    }
    printf("aggregated %u shards\\n", shards);
    return 0;
}
"""

_METRICSAGG_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -Wall -O2

all: build/metricsagg

build:
\tmkdir -p build

build/metricsagg: src/metricsagg.c | build
\t$(CC) $(CFLAGS) $< -o $@

.PHONY: all
"""

_METRICSAGG_RUN = """\
#!/usr/bin/env bash
# nightly rollup; the job container has 256 MiB
set -euo pipefail
ulimit -v 262144
./build/metricsagg 16
"""

_LOGSORT_SH = """\
#!/usr/bin/env bash
# dedupe the day's events; the sorter runs with 48 MiB of address space
set -euo pipefail
mkdir -p out
echo "sorting $(wc -l < logs/events.ndjson) events ($(du -h logs/events.ndjson | cut -f1))"
ulimit -v 49152
sort -u logs/events.ndjson > out/events.sorted
echo "done"
"""

_LOGSORT_GEN = """\
#!/usr/bin/env bash
# collect the day's events: many small records and one huge snapshot record
set -euo pipefail
mkdir -p logs
{
    for i in $(seq 1 2000); do echo "{\\"id\\": $i, \\"kind\\": \\"click\\"}"; done
    printf '{"id": 0, "kind": "snapshot", "blob": "'
    head -c 40000000 /dev/zero | tr '\\0' 'x'
    printf '"}\\n'
} > logs/events.ndjson
"""

_RANKER_PY = """\
import os
import signal
import sys


def main():
    print("loading feature store: 48 shards", flush=True)
    for shard in range(1, 6):
        print(f"  shard {shard:02d}/48 loaded (resident {shard * 2.7:.1f} GiB)", flush=True)
    print("building candidate matrix (estimated 131.0 GiB) ...", flush=True)
    # the kernel's OOM killer ends the process here with SIGKILL, as it does when the job's memory runs out
    os.kill(os.getpid(), signal.SIGKILL)
    print("never reached", file=sys.stderr)


if __name__ == "__main__":
    main()
"""


def _oom_cases() -> list[Case]:
    py_memory = Case(
        name="python-memoryerror-ulimit", ecosystem="python", category="oom", project="tilecruncher",
        files={"crunch.py": _CRUNCH_PY, "scripts/render-tiles.sh": _CRUNCH_SH},
        steps=(Step("Render tiles", "./scripts/render-tiles.sh"),),
        note="a 1 GiB canvas under a 768 MiB address-space limit: Python raises MemoryError",
    )
    c_malloc = Case(
        name="c-malloc-failed-ulimit", ecosystem="c", category="oom", project="metricsagg",
        files={"Makefile": _METRICSAGG_MAKEFILE, "src/metricsagg.c": _METRICSAGG_C,
               "scripts/rollup.sh": _METRICSAGG_RUN},
        steps=(Step("Build", "make"), Step("Nightly rollup", "./scripts/rollup.sh")),
        note="16 x 64 MiB buffers under a 256 MiB address-space limit: malloc returns NULL",
    )
    sort_oom = Case(
        name="shell-sort-memory-exhausted", ecosystem="shell", category="oom", project="logsorter",
        files={"scripts/collect.sh": _LOGSORT_GEN, "scripts/dedupe.sh": _LOGSORT_SH},
        steps=(Step("Collect events", "./scripts/collect.sh"), Step("Dedupe events", "./scripts/dedupe.sh")),
        note="one 40 MB record must be held whole; sort cannot under a 48 MiB address-space limit",
    )
    killed = Case(
        name="python-killed-137-oom-killer", ecosystem="python", category="oom", project="ranker-train",
        files={"train.py": _RANKER_PY, "requirements.txt": ""},
        steps=(Step("Train ranker", 'python train.py && echo "model written to out/ranker.bin"'),),
        note="simulates the kernel OOM killer: the process SIGKILLs itself, bash reports 'Killed', exit 137",
    )
    return [py_memory, c_malloc, sort_oom, killed]


# --------------------------------------------------------------------------------------------------------------
# full disks: /dev/full behind the path a build writes to, and real 1 MiB tmpfs mounts
# --------------------------------------------------------------------------------------------------------------

_SITE_INDEX = "<!doctype html><title>Brightpath</title><h1>Brightpath</h1>\n" + "<p>lorem ipsum</p>\n" * 200

_FW_MAKEFILE = """\
IMG = out/flash.img

all: $(IMG)

out:
\tmkdir -p out

$(IMG): boot/loader.cfg | out
\t@echo "creating 4 MiB flash image $@"
\tdd if=/dev/zero of=$@ bs=64k count=64 status=none
\t@echo "writing boot config"
\tdd if=boot/loader.cfg of=$@ conv=notrunc status=none

.PHONY: all
"""

_REPORT_PY = """\
import json
import pathlib


def main():
    results = [{"suite": f"suite-{i}", "passed": 40 + i, "failed": i % 3} for i in range(500)]
    out = pathlib.Path("reports/summary.json")
    print(f"writing {len(results)} suite results to {out}")
    with out.open("w") as fh:
        json.dump(results, fh, indent=2)
    print("report written")


if __name__ == "__main__":
    main()
"""

_DSP_GEN = """\
import math

N = 600000
print(f"/* generated: {N}-tap windowed sinc */")
print(f"const float dsp_coeffs[{N}] = {{")
for i in range(0, N, 8):
    print("    " + ", ".join(f"{math.sin(0.001 * (i + k) + 0.5):.6f}f" for k in range(8)) + ",")
print("};")
"""

_DSP_MAKEFILE = """\
CC = gcc
CFLAGS = -std=c11 -O2

all: build/libdsp.a

gen/coeffs.c: tools/gen_coeffs.py
\tmkdir -p gen
\tpython tools/gen_coeffs.py > $@

build/coeffs.o: gen/coeffs.c
\t$(CC) $(CFLAGS) -c $< -o $@

build/filter.o: src/filter.c
\t$(CC) $(CFLAGS) -c $< -o $@

build/libdsp.a: build/filter.o build/coeffs.o
\tar rcs $@ $^

.PHONY: all
"""

_DSP_FILTER = """\
extern const float dsp_coeffs[];

float dsp_fir(const float *x, int n)
{
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += x[i] * dsp_coeffs[i];
    return acc;
}
"""


@contextlib.contextmanager
def _tmpfs_build_dir(project: Path) -> Iterator[Mapping[str, str]]:
    with _tmpfs(project / "build", "1m"):
        yield {}


@contextlib.contextmanager
def _tmpfs_wheelhouse(project: Path) -> Iterator[Mapping[str, str]]:
    rnd = random.Random(424242)
    blob = rnd.randbytes(3 * 2**20)
    filename, whl = _wheel("mapfont-bundle", "2.0.0", {"mapfont_bundle/__init__.py": b"FONTS = 'fonts.bin'\n",
                                                       "mapfont_bundle/fonts.bin": blob})
    sha = hashlib.sha256(whl).hexdigest()
    with _tmpfs(project / "wheelhouse", "1m"), \
            _serve(_index({"mapfont-bundle": (filename, whl, sha)}), _PORTS["pip-tmpfs"]) as port:
        yield {"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple"}


def _disk_cases(tmpfs: bool) -> list[Case]:
    out = [
        Case(
            name="shell-tar-no-space-left", ecosystem="shell", category="disk_full", project="static-site-kit",
            files={"public/index.html": _SITE_INDEX, "public/about.html": _SITE_INDEX,
                   "public/css/site.css": "body { font-family: sans-serif; }\n" * 300},
            steps=(Step("Package site", "tar -cf dist/site.tar public && ls -l dist"),),
            around=_symlinks_to_dev_full("dist/site.tar"),
            note="dist/site.tar is /dev/full: every write fails with ENOSPC, as on a full disk",
        ),
        Case(
            name="shell-dd-no-space-left", ecosystem="shell", category="disk_full", project="firmware-img",
            files={"Makefile": _FW_MAKEFILE, "boot/loader.cfg": "kernel=zImage\nroot=/dev/mmcblk0p2\nquiet\n"},
            steps=(Step("Build flash image", "make"),),
            around=_symlinks_to_dev_full("out/flash.img"),
            note="out/flash.img is /dev/full: every write fails with ENOSPC, as on a full disk",
        ),
        Case(
            name="python-oserror-no-space-left", ecosystem="python", category="disk_full", project="report-gen",
            files={"gen_report.py": _REPORT_PY},
            steps=(Step("Write test report", "python gen_report.py"),),
            around=_symlinks_to_dev_full("reports/summary.json"),
            note="reports/summary.json is /dev/full: the write fails with ENOSPC, as on a full disk",
        ),
        Case(
            name="shell-cp-dev-full", ecosystem="shell", category="disk_full", project="static-site-kit",
            files={"public/index.html": _SITE_INDEX, "public/app.js": "console.log('site');\n" * 4000},
            steps=(Step("Stage artifacts", "mkdir -p staging && cp -v public/app.js staging/ && "
                                           "cp -v public/app.js /dev/full"),),
            note="cp straight to /dev/full, the device that is always full",
        ),
    ]
    if tmpfs:
        out += [
            Case(
                name="c-gcc-tmpfs-no-space-left", ecosystem="c", category="disk_full", project="dsp-filters",
                files={"Makefile": _DSP_MAKEFILE, "tools/gen_coeffs.py": _DSP_GEN, "src/filter.c": _DSP_FILTER},
                steps=(Step("Build", "make"),),
                around=_tmpfs_build_dir,
                note="build/ is a real 1 MiB tmpfs; the object file of the 2.4 MB coefficient table does not fit",
            ),
            Case(
                name="python-pip-download-tmpfs-no-space-left", ecosystem="python", category="disk_full",
                project="wheelhouse-sync",
                files={"requirements.txt": "mapfont-bundle==2.0.0\n",
                       "README.md": "# wheelhouse-sync\n\nPre-downloads wheels for the offline installers.\n"},
                steps=(Step("Download wheels", "pip download --no-deps -d wheelhouse -r requirements.txt",
                            env=_pip_env()),),
                around=_tmpfs_wheelhouse,
                note="wheelhouse/ is a real 1 MiB tmpfs; the 3 MiB wheel does not fit",
            ),
        ]
    return out


# --------------------------------------------------------------------------------------------------------------
# the platform's time limit, a lost runner, a hung test script, failures that say nothing
# --------------------------------------------------------------------------------------------------------------

_BUNDLE_SH = """\
#!/usr/bin/env bash
set -euo pipefail
echo "==> nightly-bundle build $(cat VERSION)"
echo "[1/4] resolving asset manifest ... 1,284 assets"
echo "[2/4] transcoding video previews"
for i in $(seq 1 30); do
    echo "      preview ${i}/1284 ok"
    sleep 1
done
echo "[3/4] packing bundle"
echo "[4/4] done"
"""

_DOCS_RENDER = """\
#!/usr/bin/env bash
set -euo pipefail
echo "Rendering API reference (412 pages)"
for page in $(seq 1 30); do
    printf 'rendered page %03d/412\\n' "$page"
    sleep 1
done
echo "Rendering done"
"""

_GEO_BUILD = """\
#!/usr/bin/env bash
set -euo pipefail
mkdir -p build
srcs=(src/*.c)
n=${#srcs[@]}
i=0
echo "-- Build files have been written to: $(pwd)/build"
for src in "${srcs[@]}"; do
    i=$((i + 1))
    printf '[%3d%%] Building C object %s.o\\n' $((i * 100 / (n + 2))) "$src"
    gcc -std=c11 -O2 -c "$src" -o "build/$(basename "$src" .c).o"
done
printf '[%3d%%] Linking C static library libgeotiles.a\\n' $((n * 100 / (n + 2) + 5))
sleep 0.5
# the runner's machine goes away here: the process is killed where it stands
kill -9 $$
"""

_GEO_SRCS = {
    f"src/{name}.c": f"double geo_{name}(double x) {{ return x * {i + 1}.5; }}\n"
    for i, name in enumerate(("mercator", "tilecoord", "bbox", "simplify"))
}

_ETL_PY = """\
import os
import signal
import time


def main():
    print("featurestore-etl 3.2.0: backfill 2024-06-01..2024-06-30", flush=True)
    for day in range(1, 5):
        print(f"[2024-06-{day:02d}] extracted 1,482,{day * 37:03d} rows; loaded", flush=True)
        time.sleep(0.2)
    print("[2024-06-05] extracting ...", flush=True)
    # the runner goes away mid-step: the process dies with no word of its own
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
"""

_SHELLKIT_TESTS = """\
#!/usr/bin/env bash
# TAP output for the shellkit helpers
echo "1..4"
echo "ok 1 - trim strips leading and trailing blanks"
echo "ok 2 - join with a custom separator"
# test 3 waits for a lock file that nothing ever releases
while [ ! -e .lock-released ]; do sleep 0.2; done
echo "ok 3 - with_lock runs the command once"
echo "ok 4 - retry gives up after N attempts"
"""

_SHELLKIT_LIB = """\
trim() { local s="$*"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
join_by() { local IFS="$1"; shift; printf '%s' "$*"; }
"""

_SYNCD_TESTS = """\
#!/usr/bin/env bash
set -u
echo "sync-daemon integration tests"
echo "  test_initial_sync ... ok"
echo "  test_conflict_resolution ... ok"
echo -n "  test_reconnect_after_drop ... "
# waits for the daemon's reconnect event, which never comes
read -r _ < <(sleep 30; echo)
echo ok
"""

_PUBLISH_SH = """\
#!/usr/bin/env bash
echo "Collecting release notes ... ok"
echo "Tagging v1.4.2 ... ok"
echo "Uploading artifacts (3) ... ok"
echo "Done."
exit 3
"""

_DATASYNC_TOOL = """\
#!/usr/bin/env bash
echo "sync-tool 0.9.1"
echo "processed 42 records"
exit 1
"""

_DATASYNC_MAKEFILE = """\
sync:
\t./bin/sync-tool --all --since yesterday

.PHONY: sync
"""


def _platform_cases() -> list[Case]:
    return [
        Case(
            name="shell-job-timeout-build", ecosystem="shell", category="infra_timeout", project="nightly-bundle",
            files={"build.sh": _BUNDLE_SH, "VERSION": "2024.06.11\n"},
            steps=(Step("Build bundle", "./build.sh", timeout=3),),
            ends="job_timeout",
            note="the step is still running when the platform's job time limit stops it (3 s here)",
        ),
        Case(
            name="shell-job-timeout-docs", ecosystem="shell", category="infra_timeout", project="docs-portal",
            files={"scripts/render-docs.sh": _DOCS_RENDER, "docs/index.md": "# API\n"},
            steps=(Step("Render docs", "./scripts/render-docs.sh", timeout=3),),
            ends="job_timeout",
            note="the step is still running when the platform's job time limit stops it (3 s here)",
        ),
        Case(
            name="c-runner-lost-mid-build", ecosystem="c", category="infra_runner_lost", project="geo-tiles",
            files={"ci/build.sh": _GEO_BUILD, **_GEO_SRCS},
            steps=(Step("Build", "./ci/build.sh"),),
            ends="runner_lost",
            note="the build process is SIGKILLed mid-way, as when the runner's machine vanishes: the output just "
                 "stops (exit 137 here, and nothing reports the kill)",
        ),
        Case(
            name="python-runner-lost-mid-etl", ecosystem="python", category="infra_runner_lost",
            project="featurestore-etl",
            files={"etl.py": _ETL_PY},
            steps=(Step("Backfill features", "python etl.py"),),
            ends="runner_lost",
            note="the process is SIGKILLed mid-way, as when the runner's machine vanishes: the output just stops "
                 "(exit 137 here, and nothing reports the kill)",
        ),
        Case(
            name="shell-timeout-test-script-hangs", ecosystem="shell", category="test_timeout", project="shellkit",
            files={"run-tests.sh": _SHELLKIT_TESTS, "lib/shellkit.sh": _SHELLKIT_LIB},
            steps=(Step("Run tests", "timeout 2 ./run-tests.sh"),),
            note="the test script hangs in test 3; `timeout` ends it after 2 s with exit 124 (the job's own test "
                 "time limit, not the platform's)",
        ),
        Case(
            name="shell-timeout-integration-tests", ecosystem="shell", category="test_timeout",
            project="sync-daemon",
            files={"tests/integration.sh": _SYNCD_TESTS},
            steps=(Step("Integration tests",
                        'timeout 2 ./tests/integration.sh || { rc=$?; [ "$rc" -eq 124 ] && '
                        'echo "integration tests timed out after 2s"; exit "$rc"; }'),),
            note="a test waits for an event that never comes; `timeout` ends the suite after 2 s with exit 124",
        ),
        Case(
            name="shell-exit-3-after-done", ecosystem="shell", category="unknown", project="release-tools",
            files={"scripts/publish.sh": _PUBLISH_SH},
            steps=(Step("Publish", "./scripts/publish.sh"),),
            note="the script says Done. and exits 3: nothing in the log says why",
        ),
        Case(
            name="shell-make-error-1-silent", ecosystem="shell", category="unknown", project="datasync",
            files={"Makefile": _DATASYNC_MAKEFILE, "bin/sync-tool": _DATASYNC_TOOL},
            steps=(Step("Sync", "make sync"),),
            note="the tool exits 1 without a word; make reports Error 1 and nothing says why",
        ),
    ]


def cases(tools: Tools) -> list[Case]:  # noqa: ARG001 - the tools are on PATH when the cases run
    """C/C++ and infrastructure cases; the tmpfs ones only where ``mount -t tmpfs`` works."""
    return [*_native_cases(), *_network_cases(), *_rate_limit_cases(), *_cache_cases(), *_oom_cases(),
            *_disk_cases(_tmpfs_works()), *_platform_cases()]
