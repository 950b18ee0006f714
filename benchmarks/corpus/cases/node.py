"""Node.js (JavaScript and TypeScript) cases, run with the machine's ``node``/``npm`` and the corpus's shared
``node_modules`` (jest, mocha, eslint 8, typescript), found through ``PATH`` and ``NODE_PATH``.

Projects (all made up): ``ledgerkite`` (an invoice-totals library tested with jest and linted with eslint),
``brambleroute`` (a small HTTP service tested with mocha, with a deploy script) and ``cobaltwren`` (a
TypeScript SDK compiled with ``tsc``, with a search-index build and a native smoke test).

The test and lint tools are not listed in the projects' ``devDependencies``: they come from the shared
``node_modules`` as if preinstalled on the runner image, so the "Install dependencies" steps that must pass
have nothing to download. The npm failures (``ETARGET``, ``ERESOLVE``, ``EINTEGRITY``) ask the real registry
and fail within a second or two; only small packages (``ms``, ``chai``, ``chai-as-promised``) are involved.
``npx`` is not used: npm 11's ``npx`` does not look on ``PATH`` and would try to download; the tools are run
through ``npm test``/``npm run`` or by name.

Labelling notes. A refused connection is labelled ``network`` in the deploy step (the release agent,
``release-agent.example.com``, is unreachable: node is told by a ``--require`` preload that the name is
127.0.0.1, where nothing listens on 443, see ``_remote.py``; the deploy script reports the host and the error
code) and ``test_failure`` in a test that starts its own server and dials the wrong port
(``connect ECONNREFUSED 127.0.0.1``, which the guard's ``ci.local_service_unreachable`` pattern rightly calls
a local service, not the network; the label here is by construction). The wrong lockfile integrity is
a hash of no tarball at all: npm's cache is content-addressed, so the integrity of another cached package
would silently install that package instead. The native crash runs under ``ulimit -c 64`` so bash says
``Aborted (core dumped)`` (with a file ``core_pattern``, a core of at most 64 KiB is left in the case
directory); where cores are disabled outright it says ``Aborted``, with exit 134 either way.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from textwrap import dedent

from ..case import Case, Step, Tools
from ._remote import resolve_to_loopback

__all__ = ["cases"]

ECOSYSTEM = "node"

#: local ports nothing listens on (checked before the case runs, see :func:`_around_refused`)
WRONG_TEST_PORT = 47327  # the port a broken brambleroute test dials instead of its own server's

#: a sha512 that is no tarball's (and so in no npm cache): sha512 of b"ledgerkite-corrupt"
BAD_INTEGRITY = "sha512-uEJ0zBsZDHvp0bGsDa9ljrVHMxodq5cgV1ZwwC2ySg8M0Ijhp395l2799Saz9KNCdQJ0nqCw9UO6Rp8SbRDp/w=="

INSTALL = Step("Install dependencies", "npm install --no-audit --no-fund", timeout=120.0)
INSTALL_CI = Step("Install dependencies", "npm ci --no-audit --no-fund", timeout=120.0)


def _d(text: str) -> str:
    return dedent(text).lstrip("\n")


def _around_refused(*ports: int) -> Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]:
    """An ``around`` that fails loudly (rather than mislabel) if something here listens on a port meant to refuse."""

    @contextlib.contextmanager
    def around(_: Path) -> Iterator[Mapping[str, str]]:
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                code = s.connect_ex(("127.0.0.1", port))
            if code != errno.ECONNREFUSED:
                raise RuntimeError(f"127.0.0.1:{port} does not refuse connections (connect_ex -> {code})")
        yield {}

    return around


def _pkg(name: str, version: str, scripts: Mapping[str, str], extra: str = "") -> str:
    lines = [f'    "{k}": "{v}"' for k, v in scripts.items()]
    body = ",\n".join(lines)
    return (
        "{\n"
        f'  "name": "{name}",\n'
        f'  "version": "{version}",\n'
        '  "private": true,\n'
        '  "license": "MIT",\n'
        f'  "scripts": {{\n{body}\n  }}{extra}\n'
        "}\n"
    )


# --------------------------------------------------------------------------------------------- ledgerkite

LK_SCRIPTS = {"test": "jest --ci", "lint": "eslint src test"}

LK_JEST = _d("""
    module.exports = {
      testEnvironment: 'node',
      roots: ['<rootDir>/test'],
      cacheDirectory: '<rootDir>/node_modules/.cache/jest',
    };
""")

LK_ESLINTRC = _d("""
    {
      "root": true,
      "env": { "node": true, "es2022": true, "jest": true },
      "extends": "eslint:recommended",
      "rules": {
        "semi": ["error", "always"],
        "eqeqeq": "error",
        "prefer-const": "error"
      }
    }
""")

LK_ROUND = _d("""
    'use strict';

    /** Round a fractional amount of cents half away from zero. */
    function roundCents(value) {
      return Math.sign(value) * Math.round(Math.abs(value));
    }

    module.exports = { roundCents };
""")

LK_TOTALS_OK = _d("""
    'use strict';

    const { roundCents } = require('./round');

    function lineTotal(line) {
      return roundCents(line.unitCents * line.quantity);
    }

    /** Net, tax and gross of an invoice; the discount applies to the net before tax. */
    function invoiceTotals(invoice) {
      const net = invoice.lines.reduce((sum, line) => sum + lineTotal(line), 0);
      const discounted = roundCents(net * (1 - (invoice.discountPct || 0) / 100));
      const tax = roundCents(discounted * invoice.taxRate);
      return { net: discounted, tax, gross: discounted + tax };
    }

    module.exports = { lineTotal, invoiceTotals };
""")

# the bug: the discount is applied after tax, so tax is computed on the undiscounted net
LK_TOTALS_BUG = _d("""
    'use strict';

    const { roundCents } = require('./round');

    function lineTotal(line) {
      return roundCents(line.unitCents * line.quantity);
    }

    /** Net, tax and gross of an invoice; the discount applies to the net before tax. */
    function invoiceTotals(invoice) {
      const net = invoice.lines.reduce((sum, line) => sum + lineTotal(line), 0);
      const tax = roundCents(net * invoice.taxRate);
      const discounted = roundCents(net * (1 - (invoice.discountPct || 0) / 100));
      return { net: discounted, tax, gross: discounted + tax };
    }

    module.exports = { lineTotal, invoiceTotals };
""")

LK_TOTALS_TEST = _d("""
    const { invoiceTotals, lineTotal } = require('../src/totals');

    describe('lineTotal', () => {
      test('multiplies unit price by quantity', () => {
        expect(lineTotal({ unitCents: 1250, quantity: 3 })).toBe(3750);
      });
    });

    describe('invoiceTotals', () => {
      test('without discount', () => {
        const invoice = { lines: [{ unitCents: 1000, quantity: 2 }], taxRate: 0.2 };
        expect(invoiceTotals(invoice)).toEqual({ net: 2000, tax: 400, gross: 2400 });
      });

      test('discount applies before tax', () => {
        const invoice = {
          lines: [{ unitCents: 1000, quantity: 2 }, { unitCents: 500, quantity: 1 }],
          discountPct: 10,
          taxRate: 0.2,
        };
        expect(invoiceTotals(invoice)).toEqual({ net: 2250, tax: 450, gross: 2700 });
      });
    });
""")

# the suite the other ledgerkite cases carry: it passes with either totals.js (no discount involved)
LK_TOTALS_TEST_NO_DISCOUNT = (LK_TOTALS_TEST
                              .replace("discount applies before tax", "a zero discount changes nothing")
                              .replace("discountPct: 10", "discountPct: 0")
                              .replace("{ net: 2250, tax: 450, gross: 2700 }", "{ net: 2500, tax: 500, gross: 3000 }"))

LK_ROUND_TEST = _d("""
    const { roundCents } = require('../src/round');

    test('rounds half away from zero', () => {
      expect(roundCents(2.5)).toBe(3);
      expect(roundCents(-2.5)).toBe(-3);
    });
""")

LK_EXPORT = _d("""
    'use strict';

    const { invoiceTotals } = require('./totals');

    /** Send invoices to the ledger in batches; resolves once the queue reports it has drained. */
    class LedgerExporter {
      constructor(queue) {
        this.queue = queue;
      }

      async exportAll(invoices) {
        for (const invoice of invoices) {
          this.queue.push({ id: invoice.id, totals: invoiceTotals(invoice) });
        }
        await new Promise((resolve) => this.queue.once('drain', resolve));
        return invoices.length;
      }
    }

    module.exports = { LedgerExporter };
""")

# the fake queue never emits 'drain' (it emits 'drained'), so exportAll never settles
LK_EXPORT_TEST = _d("""
    const { EventEmitter } = require('events');
    const { LedgerExporter } = require('../src/export');

    class FakeQueue extends EventEmitter {
      constructor() {
        super();
        this.items = [];
      }

      push(item) {
        this.items.push(item);
        if (this.items.length >= 2) {
          setImmediate(() => this.emit('drained'));
        }
      }
    }

    describe('LedgerExporter', () => {
      test('exports every invoice and waits for the queue to drain', async () => {
        const queue = new FakeQueue();
        const exporter = new LedgerExporter(queue);
        const invoices = [
          { id: 'INV-1', lines: [{ unitCents: 100, quantity: 1 }], taxRate: 0 },
          { id: 'INV-2', lines: [{ unitCents: 200, quantity: 2 }], taxRate: 0 },
        ];
        await expect(exporter.exportAll(invoices)).resolves.toBe(2);
        expect(queue.items).toHaveLength(2);
      }, 2000);
    });
""")

# eslint: an unused import, `let` never reassigned, `==`, missing semicolons, an undefined name
LK_CURRENCY_LINT = _d("""
    'use strict';

    const { roundCents } = require('./round');
    const { lineTotal } = require('./totals')

    const SYMBOLS = { EUR: '\\u20ac', USD: '$', GBP: '\\u00a3' };

    function formatAmount(cents, currency) {
      let symbol = SYMBOLS[currency];
      if (symbol == undefined) {
        throw new Error(`unknown currency ${currency}`)
      }
      const whole = Math.trunc(cents / 100);
      const frac = String(Math.abs(cents) % 100).padStart(2, '0');
      return `${symbol}${whole}.${frac}${supressZero ? '' : ''}`;
    }

    module.exports = { formatAmount, roundCents };
""")

# needs a package the project never declared (and nothing provides)
LK_PDF = _d("""
    'use strict';

    const PDFDocument = require('pdfkit-lite');
    const { invoiceTotals } = require('./totals');

    function renderInvoice(invoice) {
      const doc = new PDFDocument({ size: 'A4' });
      const totals = invoiceTotals(invoice);
      doc.text(`Invoice ${invoice.id}`);
      doc.text(`Total: ${totals.gross}`);
      return doc;
    }

    module.exports = { renderInvoice };
""")

LK_PDF_TEST = _d("""
    const { renderInvoice } = require('../src/pdf');

    test('renders an invoice', () => {
      const doc = renderInvoice({ id: 'INV-9', lines: [{ unitCents: 100, quantity: 1 }], taxRate: 0 });
      expect(doc).toBeDefined();
    });
""")


def _ledgerkite(**extra_files: str) -> dict[str, str]:
    files = {
        "package.json": _pkg("ledgerkite", "1.4.2", LK_SCRIPTS, ',\n  "main": "src/totals.js"'),
        "jest.config.js": LK_JEST,
        ".eslintrc.json": LK_ESLINTRC,
        "src/round.js": LK_ROUND,
        "src/totals.js": LK_TOTALS_OK,
        "test/round.test.js": LK_ROUND_TEST,
        "test/totals.test.js": LK_TOTALS_TEST_NO_DISCOUNT,
    }
    files.update(extra_files)
    return files


# -------------------------------------------------------------------------------------------- brambleroute

BR_SCRIPTS = {
    "start": "node src/server.js",
    "test": "mocha --reporter spec 'test/**/*.spec.js'",
    "lint": "eslint src test",
    "deploy": "node scripts/deploy.js",
}

BR_MOCHARC = _d("""
    {
      "timeout": 4000,
      "exit": true
    }
""")

BR_ESLINTRC = _d("""
    {
      "root": true,
      "env": { "node": true, "es2022": true, "mocha": true },
      "parserOptions": { "ecmaVersion": 2022 },
      "extends": "eslint:recommended",
      "rules": {
        "no-console": "off",
        "quotes": ["error", "single"],
        "curly": "error"
      }
    }
""")

BR_ROUTES = _d("""
    'use strict';

    /** Route legs are "from>to:km"; a route is legs joined by commas. */
    function parseRoute(text) {
      return text.split(',').map((leg) => {
        const [ends, km] = leg.trim().split(':');
        const [from, to] = ends.split('>');
        return { from, to, km: Number(km) };
      });
    }

    function routeLength(legs) {
      return legs.reduce((sum, leg) => sum + leg.km, 0);
    }

    /** The stops in order: the first leg's start, then every leg's end. */
    function stops(legs) {
      return legs.map((leg) => leg.to);
    }

    module.exports = { parseRoute, routeLength, stops };
""")

BR_ROUTES_SPEC = _d("""
    const assert = require('assert');
    const { parseRoute, routeLength, stops } = require('../src/routes');

    describe('routes', () => {
      const legs = parseRoute('Ash>Birch:12.5, Birch>Cedar:7, Cedar>Dale:3.25');

      it('parses legs', () => {
        assert.deepStrictEqual(legs[1], { from: 'Birch', to: 'Cedar', km: 7 });
      });

      it('sums leg lengths', () => {
        assert.strictEqual(routeLength(legs), 22.75);
      });

      it('lists stops from the first start to the last end', () => {
        assert.deepStrictEqual(stops(legs), ['Ash', 'Birch', 'Cedar', 'Dale']);
      });
    });
""")

BR_APP = _d("""
    'use strict';

    const http = require('http');
    const { parseRoute, routeLength } = require('./routes');

    function createServer() {
      return http.createServer((req, res) => {
        const url = new URL(req.url, 'http://localhost');
        if (url.pathname === '/health') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true }));
          return;
        }
        if (url.pathname === '/length') {
          const legs = parseRoute(url.searchParams.get('route') || '');
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ km: routeLength(legs) }));
          return;
        }
        res.writeHead(404);
        res.end();
      });
    }

    module.exports = { createServer };
""")

# a missing closing parenthesis: `};` where `});` closes the createServer(...) call
BR_APP_SYNTAX = BR_APP.replace("    res.end();\n  });\n}\n", "    res.end();\n  };\n}\n")
assert BR_APP_SYNTAX != BR_APP

BR_SERVER = _d("""
    'use strict';

    const { createServer } = require('./app');

    const port = Number(process.env.PORT || 8080);
    if (process.argv.includes('--check')) {
      console.log('brambleroute: configuration ok');
      process.exit(0);
    }
    createServer().listen(port, () => console.log(`brambleroute listening on ${port}`));
""")

# the test starts its own server on an ephemeral port, then dials a hard-coded one
BR_HTTP_SPEC = _d("""
    const assert = require('assert');
    const http = require('http');
    const { createServer } = require('../src/app');

    const BASE = 'http://127.0.0.1:%PORT%';

    function getJson(url) {
      return new Promise((resolve, reject) => {
        http.get(url, (res) => {
          let body = '';
          res.on('data', (chunk) => { body += chunk; });
          res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body || 'null') }));
        }).on('error', reject);
      });
    }

    describe('http api', () => {
      let server;

      before((done) => {
        server = createServer().listen(0, '127.0.0.1', done);
      });

      after((done) => {
        server.close(done);
      });

      it('answers /health', async () => {
        const res = await getJson(`${BASE}/health`);
        assert.strictEqual(res.status, 200);
        assert.deepStrictEqual(res.body, { ok: true });
      });
    });
""").replace("%PORT%", str(WRONG_TEST_PORT))

BR_DEPLOY = _d("""
    'use strict';

    const { version, name } = require('../package.json');

    const AGENT = process.env.RELEASE_AGENT_URL || 'https://release-agent.example.com';

    async function post(path, body, attempts = 3) {
      for (let i = 1; ; i++) {
        try {
          const res = await fetch(`${AGENT}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          if (!res.ok) {
            throw new Error(`release agent answered ${res.status}`);
          }
          return res.json();
        } catch (err) {
          const reason = err.cause ? err.cause.code : err.message;
          if (i >= attempts) {
            throw new Error(`POST ${AGENT}${path} failed after ${attempts} attempts: ${reason}`);
          }
          console.log(`attempt ${i} failed (${reason}), retrying`);
          await new Promise((r) => setTimeout(r, 200 * i));
        }
      }
    }

    async function main() {
      console.log(`Deploying ${name}@${version} via ${AGENT}`);
      const release = await post('/api/releases', { name, version, channel: 'staging' });
      console.log(`released ${release.id}`);
    }

    main().catch((err) => {
      console.error(err.stack);
      process.exit(1);
    });
""")

# eslint: double quotes, an `if` without braces, an unused variable, a constant condition
BR_LIMITS_LINT = _d("""
    'use strict';

    const DEFAULT_LIMIT = 100;

    function clampLimit(raw) {
      const parsed = parseInt(raw, 10);
      const unusedMax = 1000;
      if (Number.isNaN(parsed)) return DEFAULT_LIMIT;
      while (true) {
        if (parsed > 0) return Math.min(parsed, DEFAULT_LIMIT);
        return DEFAULT_LIMIT;
      }
    }

    module.exports = { clampLimit, name: "limits" };
""")


def _brambleroute(**extra_files: str) -> dict[str, str]:
    files = {
        "package.json": _pkg("brambleroute", "0.9.0", BR_SCRIPTS, ',\n  "main": "src/app.js"'),
        ".mocharc.json": BR_MOCHARC,
        ".eslintrc.json": BR_ESLINTRC,
        "src/routes.js": BR_ROUTES.replace(
            "return legs.map((leg) => leg.to);",
            "return legs.length ? [legs[0].from, ...legs.map((leg) => leg.to)] : [];"),
        "src/app.js": BR_APP,
        "src/server.js": BR_SERVER,
        "test/routes.spec.js": BR_ROUTES_SPEC,
    }
    files.update(extra_files)
    return files


# ---------------------------------------------------------------------------------------------- cobaltwren

CW_SCRIPTS = {
    "build": "tsc -p tsconfig.json",
    "typecheck": "tsc -p tsconfig.json --noEmit",
    "build:search-index": "node --max-old-space-size=32 scripts/build-search-index.js",
}

CW_TSCONFIG = _d("""
    {
      "compilerOptions": {
        "target": "ES2022",
        "module": "commonjs",
        "strict": true,
        "declaration": true,
        "outDir": "dist",
        "rootDir": "src",
        "types": []
      },
      "include": ["src"]
    }
""")

CW_TYPES = _d("""
    export interface Paging {
      cursor?: string;
      limit: number;
    }

    export interface Page<T> {
      items: T[];
      next: string | null;
    }

    export interface Track {
      id: string;
      title: string;
      durationMs: number;
    }
""")

CW_CLIENT = _d("""
    import { Page, Paging, Track } from './types';

    export type Transport = (path: string, query: Record<string, string>) => Promise<unknown>;

    export class CatalogClient {
      constructor(private readonly transport: Transport) {}

      async listTracks(paging: Paging): Promise<Page<Track>> {
        const query: Record<string, string> = { limit: String(paging.limit) };
        if (paging.cursor) {
          query.cursor = paging.cursor;
        }
        const raw = (await this.transport('/tracks', query)) as Page<Track>;
        return { items: raw.items, next: raw.next };
      }

      async totalDuration(paging: Paging): Promise<number> {
        const page = await this.listTracks(paging);
        return page.items.reduce((sum, t) => sum + t.durationMs, 0);
      }
    }
""")

# type errors: a number where the query wants a string, a possibly-null cursor, a misspelt property
CW_CLIENT_TYPES = _d("""
    import { Page, Paging, Track } from './types';

    export type Transport = (path: string, query: Record<string, string>) => Promise<unknown>;

    export class CatalogClient {
      constructor(private readonly transport: Transport) {}

      async listTracks(paging: Paging): Promise<Page<Track>> {
        const query: Record<string, string> = { limit: paging.limit };
        if (paging.cursor) {
          query.cursor = paging.cursor;
        }
        const raw = (await this.transport('/tracks', query)) as Page<Track>;
        return { items: raw.items, next: raw.next };
      }

      async nextCursor(paging: Paging): Promise<string> {
        const page = await this.listTracks(paging);
        return page.next;
      }

      async totalDuration(paging: Paging): Promise<number> {
        const page = await this.listTracks(paging);
        return page.items.reduce((sum, t) => sum + t.durationMS, 0);
      }
    }
""")

CW_PAGER = _d("""
    import { CatalogClient } from './client';
    import { Track } from './types';

    export async function* allTracks(client: CatalogClient, limit = 50): AsyncGenerator<Track> {
      let cursor: string | undefined;
      do {
        const page = await client.listTracks({ cursor, limit });
        for (const track of page.items) {
          yield track;
        }
        cursor = page.next ?? undefined;
      } while (cursor);
    }
""")

# a syntax error: the call's `)` is missing before the `;`
CW_PAGER_SYNTAX = CW_PAGER.replace("listTracks({ cursor, limit });", "listTracks({ cursor, limit };")
assert CW_PAGER_SYNTAX != CW_PAGER

CW_INDEX = _d("""
    export * from './types';
    export { CatalogClient } from './client';
    export { allTracks } from './pager';
""")

# builds an in-memory n-gram index of a synthetic catalogue far larger than the heap it is given
CW_SEARCH_INDEX = _d("""
    'use strict';

    const TRACKS = 400000;

    function ngrams(word, n = 3) {
      const out = [];
      for (let i = 0; i + n <= word.length; i++) {
        out.push(word.slice(i, i + n));
      }
      return out;
    }

    const index = new Map();
    console.log(`indexing ${TRACKS} catalogue entries`);
    for (let id = 0; id < TRACKS; id++) {
      const title = `track ${id} of the cobaltwren demo catalogue volume ${id % 977}`;
      for (const word of title.split(' ')) {
        for (const gram of ngrams(word)) {
          let postings = index.get(gram);
          if (!postings) {
            postings = [];
            index.set(gram, postings);
          }
          postings.push({ id, title, word });
        }
      }
      if (id % 50000 === 0) {
        console.log(`  ${id} entries, ${index.size} grams`);
      }
    }
    console.log(`index ready: ${index.size} grams`);
""")

# the smoke test of the native decoder binding: the binding's self-check fails and it aborts the process
CW_SMOKE_JS = _d("""
    'use strict';

    // Stand-in for the native waveform decoder: a failed internal check aborts, as a C++ assert would.
    function decoderSelfCheck() {
      const frame = new Float32Array(1024);
      const expected = 1024 * 4;
      if (frame.byteLength + 1 !== expected) {
        console.error('cobaltwren-decoder: src/decode.cc:212: frame_bytes == expected_bytes: Assertion failed.');
        process.abort();
      }
    }

    console.log('cobaltwren native smoke test');
    console.log('loading decoder binding...');
    decoderSelfCheck();
    console.log('decoder ok');
""")

CW_SMOKE_SH = _d("""
    #!/usr/bin/env bash
    # Run the decoder smoke test with core dumps on, so a crash leaves a (small) core for the artifact step.
    set -u
    ulimit -c 64
    node scripts/native-smoke.js
""")


def _cobaltwren(**extra_files: str) -> dict[str, str]:
    files = {
        "package.json": _pkg("cobaltwren", "2.1.0", CW_SCRIPTS,
                             ',\n  "main": "dist/index.js",\n  "types": "dist/index.d.ts"'),
        "tsconfig.json": CW_TSCONFIG,
        "src/types.ts": CW_TYPES,
        "src/client.ts": CW_CLIENT,
        "src/pager.ts": CW_PAGER,
        "src/index.ts": CW_INDEX,
    }
    files.update(extra_files)
    return files


# ------------------------------------------------------------------------------------------ npm manifests

# `ms` 2.1.33 does not exist (2.1.3 does): a typo in a pinned version
LK_PKG_NOTARGET = _d("""
    {
      "name": "ledgerkite",
      "version": "1.4.2",
      "private": true,
      "license": "MIT",
      "main": "src/totals.js",
      "scripts": {
        "test": "jest --ci",
        "lint": "eslint src test"
      },
      "dependencies": {
        "ms": "2.1.33"
      }
    }
""")

# chai-as-promised 7 declares peer chai ">= 2.1.2 < 6"; the project moved to chai 6
BR_PKG_ERESOLVE = _d("""
    {
      "name": "brambleroute",
      "version": "0.9.0",
      "private": true,
      "license": "MIT",
      "main": "src/app.js",
      "scripts": {
        "start": "node src/server.js",
        "test": "mocha --reporter spec 'test/**/*.spec.js'"
      },
      "devDependencies": {
        "chai": "^6.0.0",
        "chai-as-promised": "^7.1.1"
      }
    }
""")

# a trailing comma after the last script (package.json must be JSON, not JavaScript)
BR_PKG_INVALID = _d("""
    {
      "name": "brambleroute",
      "version": "0.9.1",
      "private": true,
      "license": "MIT",
      "main": "src/app.js",
      "scripts": {
        "start": "node src/server.js",
        "test": "mocha --reporter spec 'test/**/*.spec.js'",
        "lint": "eslint src test",
      }
    }
""")

CW_PKG_WITH_MS = _d("""
    {
      "name": "cobaltwren",
      "version": "2.1.0",
      "private": true,
      "license": "MIT",
      "main": "dist/index.js",
      "types": "dist/index.d.ts",
      "scripts": {
        "build": "tsc -p tsconfig.json"
      },
      "dependencies": {
        "ms": "2.1.3"
      }
    }
""")

# the lockfile's integrity for ms-2.1.3.tgz is not the tarball's
CW_LOCK_BAD_INTEGRITY = _d("""
    {
      "name": "cobaltwren",
      "version": "2.1.0",
      "lockfileVersion": 3,
      "requires": true,
      "packages": {
        "": {
          "name": "cobaltwren",
          "version": "2.1.0",
          "license": "MIT",
          "dependencies": {
            "ms": "2.1.3"
          }
        },
        "node_modules/ms": {
          "version": "2.1.3",
          "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
          "integrity": "%INTEGRITY%",
          "license": "MIT"
        }
      }
    }
""").replace("%INTEGRITY%", BAD_INTEGRITY)

# npm retries a corrupt tarball with backoff (10 s to 60 s by default); keep the case short
CW_NPMRC = _d("""
    fetch-retries=1
    fetch-retry-mintimeout=500
    fetch-retry-maxtimeout=1000
""")


# ------------------------------------------------------------------------------------------------- cases

def cases(tools: Tools) -> list[Case]:  # noqa: ARG001 - the tools are found through PATH and NODE_PATH
    test = Step("Run tests", "npm test")
    lint = Step("Lint", "npm run lint")
    return [
        # ---- test_failure
        Case(
            name="node-jest-assertion",
            ecosystem=ECOSYSTEM,
            category="test_failure",
            project="ledgerkite",
            files=_ledgerkite(**{"src/totals.js": LK_TOTALS_BUG, "test/totals.test.js": LK_TOTALS_TEST}),
            steps=(INSTALL, test),
            note="tax is computed on the undiscounted net; jest's toEqual fails",
        ),
        Case(
            name="node-mocha-assertion",
            ecosystem=ECOSYSTEM,
            category="test_failure",
            project="brambleroute",
            files=_brambleroute(**{"src/routes.js": BR_ROUTES}),
            steps=(INSTALL, test),
            note="stops() drops the first leg's start; mocha's deepStrictEqual fails",
        ),
        Case(
            name="node-mocha-econnrefused-own-server",
            ecosystem=ECOSYSTEM,
            category="test_failure",
            project="brambleroute",
            files=_brambleroute(**{"test/http.spec.js": BR_HTTP_SPEC}),
            steps=(INSTALL, test),
            around=_around_refused(WRONG_TEST_PORT),
            note=("the test starts its own server on an ephemeral port but dials a hard-coded one: "
                  "connect ECONNREFUSED 127.0.0.1 is the test's bug, not the network"),
        ),
        # ---- test_timeout
        Case(
            name="node-jest-test-timeout",
            ecosystem=ECOSYSTEM,
            category="test_timeout",
            project="ledgerkite",
            files=_ledgerkite(**{"src/export.js": LK_EXPORT, "test/export.test.js": LK_EXPORT_TEST}),
            steps=(INSTALL, test),
            note="the exporter waits for a 'drain' event the fake queue never emits: jest's per-test timeout",
        ),
        # ---- compilation_error
        Case(
            name="node-tsc-type-errors",
            ecosystem=ECOSYSTEM,
            category="compilation_error",
            project="cobaltwren",
            files=_cobaltwren(**{"src/client.ts": CW_CLIENT_TYPES}),
            steps=(INSTALL, Step("Build", "npm run build")),
            note="tsc: TS2322 (number to string, string | null to string) and TS2551 (misspelt property)",
        ),
        Case(
            name="node-tsc-syntax-error",
            ecosystem=ECOSYSTEM,
            category="compilation_error",
            project="cobaltwren",
            files=_cobaltwren(**{"src/pager.ts": CW_PAGER_SYNTAX}),
            steps=(INSTALL, Step("Type check", "npm run typecheck")),
            note="tsc: TS1005 ')' expected, from a call missing its closing parenthesis",
        ),
        Case(
            name="node-syntaxerror-at-startup",
            ecosystem=ECOSYSTEM,
            category="compilation_error",
            project="brambleroute",
            files=_brambleroute(**{"src/app.js": BR_APP_SYNTAX}),
            steps=(INSTALL, Step("Check server starts", "node src/server.js --check")),
            note=("node's SyntaxError while loading a module is the interpreted-language compile error "
                  "(like Python's SyntaxError at import): labelled compilation_error, not crash"),
        ),
        # ---- lint_style
        Case(
            name="node-eslint-errors",
            ecosystem=ECOSYSTEM,
            category="lint_style",
            project="ledgerkite",
            files=_ledgerkite(**{"src/currency.js": LK_CURRENCY_LINT}),
            steps=(INSTALL, lint),
            note="eslint:recommended plus semi/eqeqeq/prefer-const; includes a no-undef error",
        ),
        Case(
            name="node-eslint-style",
            ecosystem=ECOSYSTEM,
            category="lint_style",
            project="brambleroute",
            files=_brambleroute(**{"src/limits.js": BR_LIMITS_LINT}),
            steps=(INSTALL, lint),
            note="quotes/curly style rules plus no-unused-vars and no-constant-condition",
        ),
        # ---- dependency_resolution
        Case(
            name="node-npm-etarget",
            ecosystem=ECOSYSTEM,
            category="dependency_resolution",
            project="ledgerkite",
            files=_ledgerkite(**{"package.json": LK_PKG_NOTARGET}),
            steps=(Step("Install dependencies", "npm install --no-audit --no-fund", timeout=120.0),),
            note="a pinned version that was never published (2.1.33 for 2.1.3): npm error notarget / ETARGET",
        ),
        Case(
            name="node-npm-eresolve-peer",
            ecosystem=ECOSYSTEM,
            category="dependency_resolution",
            project="brambleroute",
            files=_brambleroute(**{"package.json": BR_PKG_ERESOLVE}),
            steps=(Step("Install dependencies", "npm install --no-audit --no-fund", timeout=120.0),),
            note="chai-as-promised 7 wants peer chai < 6 while the project asks for chai ^6: ERESOLVE",
        ),
        # ---- dependency_missing
        Case(
            name="node-jest-cannot-find-module",
            ecosystem=ECOSYSTEM,
            category="dependency_missing",
            project="ledgerkite",
            files=_ledgerkite(**{"src/pdf.js": LK_PDF, "test/pdf.test.js": LK_PDF_TEST}),
            steps=(INSTALL, test),
            note="src/pdf.js requires a package never added to package.json: jest's Cannot find module",
        ),
        Case(
            name="node-runtime-cannot-find-module",
            ecosystem=ECOSYSTEM,
            category="dependency_missing",
            project="cobaltwren",
            files=_cobaltwren(**{
                "scripts/changelog.js": _d("""
                    'use strict';

                    const semverDiff = require('semver-diff-lite');
                    const { version } = require('../package.json');

                    console.log(`changes since ${version}:`, semverDiff(version, '2.2.0'));
                """),
            }),
            steps=(INSTALL, Step("Build", "npm run build"), Step("Changelog", "node scripts/changelog.js")),
            note="a release script requires a package the project never declared: node's MODULE_NOT_FOUND",
        ),
        # ---- cache_corruption
        Case(
            name="node-npm-eintegrity",
            ecosystem=ECOSYSTEM,
            category="cache_corruption",
            project="cobaltwren",
            files=_cobaltwren(**{
                "package.json": CW_PKG_WITH_MS,
                "package-lock.json": CW_LOCK_BAD_INTEGRITY,
                ".npmrc": CW_NPMRC,
            }),
            steps=(INSTALL_CI,),
            note=("package-lock.json records an integrity hash the tarball does not have (a corrupted lock or "
                  "cache entry): npm warns 'seems to be corrupted', retries, then EINTEGRITY"),
        ),
        # ---- oom
        Case(
            name="node-heap-out-of-memory",
            ecosystem=ECOSYSTEM,
            category="oom",
            project="cobaltwren",
            files=_cobaltwren(**{"scripts/build-search-index.js": CW_SEARCH_INDEX}),
            steps=(INSTALL, Step("Build", "npm run build"), Step("Build search index", "npm run build:search-index")),
            note=("--max-old-space-size=32: FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap "
                  "out of memory (SIGABRT, exit 134): the message, not the signal, makes it oom"),
        ),
        # ---- network
        Case(
            name="node-deploy-econnrefused",
            ecosystem=ECOSYSTEM,
            category="network",
            project="brambleroute",
            files=_brambleroute(**{"scripts/deploy.js": BR_DEPLOY}),
            steps=(INSTALL, test, Step("Deploy to staging", "npm run deploy")),
            around=resolve_to_loopback("release-agent.example.com"),
            note=("the deploy step cannot reach the release agent release-agent.example.com (fetch failed, "
                  "ECONNREFUSED): a CI network fault, where a refusal from 127.0.0.1 inside a test that starts "
                  "its own service is a test failure (node-mocha-econnrefused-own-server)"),
            expect=r"POST https://release-agent\.example\.com/api/releases failed after 3 attempts: ECONNREFUSED",
        ),
        # ---- build_config
        Case(
            name="node-invalid-package-json",
            ecosystem=ECOSYSTEM,
            category="build_config",
            project="brambleroute",
            files=_brambleroute(**{"package.json": BR_PKG_INVALID}),
            steps=(Step("Install dependencies", "npm install --no-audit --no-fund", timeout=120.0),),
            note="a trailing comma in package.json: npm error code EJSONPARSE",
        ),
        # ---- crash
        Case(
            name="node-native-abort",
            ecosystem=ECOSYSTEM,
            category="crash",
            project="cobaltwren",
            files=_cobaltwren(**{"scripts/native-smoke.js": CW_SMOKE_JS, "scripts/native-smoke.sh": CW_SMOKE_SH}),
            steps=(INSTALL, Step("Native smoke test", "./scripts/native-smoke.sh")),
            note=("a failed native assertion aborts node (SIGABRT, exit 134); the script enables a small core "
                  "so bash reports 'Aborted (core dumped)' where the kernel writes cores to a file"),
        ),
    ]
