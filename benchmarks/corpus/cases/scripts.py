"""Shell and Perl jobs that fail for a known reason.

Shell: two made-up projects, ``tarnhook`` (deploy hooks) and ``pebblesync`` (backup sync scripts), run with
bash, curl, tar and cp. Perl: ``wrenparse`` (an INI-ish config parser) and ``lanternlog`` (a log
formatter), checked with ``perl -c`` and tested with ``prove``.

Only loopback is contacted: the network cases' remote names (``tarnhook-staging.example.com``,
``artifacts.example.com``) are resolved to 127.0.0.1 by curl itself (``resolve`` in a ``.curlrc``, see
``_remote.py``), and nothing listens on 127.0.0.1:443, so the connection is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..case import Case, Step, Tools
from ._remote import resolve_to_loopback

__all__ = ["cases"]


def _dev_full(*rels: str) -> Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]:
    """Make ``rels`` symlinks to /dev/full before the job (writes there fail with ENOSPC, as on a full disk)."""

    @contextlib.contextmanager
    def around(where: Path) -> Iterator[Mapping[str, str]]:
        for rel in rels:
            p = where / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to("/dev/full")
        yield {}

    return around


# ------------------------------------------------------------------------------------------------ shell

TARN_HOOKS = {
    "hooks/pre-deploy.sh": '''#!/usr/bin/env bash
# Runs before every deploy: checks the release manifest.
set -euo pipefail
echo "pre-deploy: manifest $(wc -l < manifest.txt) entries"
''',
    "hooks/post-deploy.sh": '''#!/usr/bin/env bash
set -euo pipefail
echo "post-deploy: notifying ${NOTIFY_CHANNEL:-#deploys}"
''',
    "manifest.txt": "hooks/pre-deploy.sh\nhooks/post-deploy.sh\n",
    "README.md": "# tarnhook\n\nDeploy hooks for the web tier.\n",
}


def tarn(**extra: str) -> dict[str, str]:
    return {**TARN_HOOKS, **extra}


PEBBLE_FILES = {
    "bin/pebblesync": '''#!/usr/bin/env bash
# Sync a snapshot directory to the backup target.
set -euo pipefail
src=${1:?usage: pebblesync SRC}
echo "pebblesync: $(find "$src" -type f | wc -l) files in $src"
''',
    "data/snapshot.json": '{"volumes": ["home", "srv"], "taken": "2024-04-30T02:00:00Z"}\n' * 200,
    "data/volumes.txt": "home\nsrv\n",
    "README.md": "# pebblesync\n\nNightly snapshot sync.\n",
}


def pebble(**extra: str) -> dict[str, str]:
    return {**PEBBLE_FILES, **extra}


def shell_cases() -> list[Case]:
    out: list[Case] = []
    add = out.append

    # ---- dependency_missing: a tool the script needs is not installed on the runner
    add(Case("shell-command-not-found-tarnhook", "shell", "dependency_missing", "tarnhook",
             tarn(**{"scripts/lint-charts.sh": '''#!/usr/bin/env bash
set -euo pipefail
echo "linting charts in charts/"
for chart in charts/*/; do
  helm lint "$chart"
done
''', "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.3.1\n"}),
             (Step("Check hooks", "bash -n hooks/*.sh && echo hooks ok"),
              Step("Lint charts", "./scripts/lint-charts.sh")),
             expect=r"helm: command not found"))
    add(Case("shell-command-not-found-pebblesync", "shell", "dependency_missing", "pebblesync",
             pebble(**{"scripts/check-format.sh": '''#!/usr/bin/env bash
set -eo pipefail
files=$(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -o -path ./bin/pebblesync)
echo "checking formatting of: $files"
shfmt -d -i 2 $files
'''}),
             (Step("Check formatting", "bash scripts/check-format.sh"),),
             expect=r"shfmt: command not found"))

    # ---- build_config: the job's configuration lacks a variable the script requires
    note_var = ("the script is fine; the CI job does not set a variable it requires, so the pipeline "
                "configuration is what is broken (build_config)")
    add(Case("shell-unbound-variable-tarnhook", "shell", "build_config", "tarnhook",
             tarn(**{"scripts/deploy.sh": '''#!/usr/bin/env bash
set -euo pipefail
echo "deploying $(git rev-parse --short HEAD 2>/dev/null || echo local) ..."
./hooks/pre-deploy.sh
echo "target: $DEPLOY_TARGET"
rsync -a build/ "$DEPLOY_TARGET"
'''}),
             (Step("Deploy", "./scripts/deploy.sh"),), note=note_var,
             expect=r"DEPLOY_TARGET: unbound variable"))
    add(Case("shell-required-variable-pebblesync", "shell", "build_config", "pebblesync",
             pebble(**{"scripts/upload.sh": '''#!/usr/bin/env bash
set -euo pipefail
: "${BACKUP_BUCKET:?BACKUP_BUCKET must be set in the CI settings}"
./bin/pebblesync data
echo "uploading to $BACKUP_BUCKET"
'''}),
             (Step("Sync snapshot", "./bin/pebblesync data"),
              Step("Upload", "./scripts/upload.sh")), note=note_var,
             expect=r"BACKUP_BUCKET must be set"))

    # ---- compilation_error: the shell cannot parse the script
    note_syntax = "a script that does not parse is the code failing to build (bash -n is the shell's compiler)"
    add(Case("shell-syntax-error-tarnhook", "shell", "compilation_error", "tarnhook",
             tarn(**{"hooks/rollback.sh": '''#!/usr/bin/env bash
set -euo pipefail
release=${1:-previous}
if [ "$release" = "previous" ]; then
  echo "rolling back to the previous release"
  ln -sfn releases/previous current
else
  echo "rolling back to $release"
  ln -sfn "releases/$release" current
fi
done
'''}),
             (Step("Check hooks", "for f in hooks/*.sh; do bash -n \"$f\" || exit 1; done\necho all hooks parse"),),
             note=note_syntax, expect=r"syntax error"))
    add(Case("shell-unterminated-quote-pebblesync", "shell", "compilation_error", "pebblesync",
             pebble(**{"bin/prune": '''#!/usr/bin/env bash
# Keep the newest N snapshots.
set -euo pipefail
keep=${1:-7}
echo "pruning snapshots, keeping $keep
ls -1t snapshots/ | tail -n +$((keep + 1)) | while read -r s; do
  rm -rf "snapshots/$s"
done
'''}),
             (Step("Prune dry run", "./bin/prune 3"),), note=note_syntax,
             expect=r"unexpected EOF while looking for matching"))

    # ---- network
    add(Case("shell-curl-refused-tarnhook", "shell", "network", "tarnhook",
             tarn(**{"scripts/smoke.sh": '''#!/usr/bin/env bash
set -euo pipefail
url=${HEALTH_URL:-https://tarnhook-staging.example.com/healthz}
echo "smoke test against $url"
curl -fsS --retry 2 --retry-delay 1 --retry-connrefused --max-time 10 "$url"
echo "healthy"
'''}),
             (Step("Smoke test", "./scripts/smoke.sh"),),
             around=resolve_to_loopback("tarnhook-staging.example.com"),
             note="the staging host refuses connections on 443: curl retries twice, then gives up",
             expect=r"Failed to connect to tarnhook-staging\.example\.com port 443"))
    add(Case("shell-curl-download-refused-pebblesync", "shell", "network", "pebblesync",
             pebble(**{"scripts/fetch-restic.sh": '''#!/usr/bin/env bash
set -euo pipefail
mkdir -p .tools
echo "downloading restic 0.16.4 from the artifact mirror"
curl -fSL --max-time 30 -o .tools/restic.bz2 https://artifacts.example.com/mirror/restic_0.16.4_linux_amd64.bz2
bunzip2 .tools/restic.bz2
'''}),
             (Step("Install tools", "bash scripts/fetch-restic.sh"),),
             around=resolve_to_loopback("artifacts.example.com"),
             note="the artifact mirror refuses connections on 443",
             expect=r"Failed to connect to artifacts\.example\.com port 443"))

    # ---- disk_full
    add(Case("shell-cp-disk-full-pebblesync", "shell", "disk_full", "pebblesync",
             pebble(**{"scripts/stage.sh": '''#!/usr/bin/env bash
set -euo pipefail
mkdir -p staging
echo "staging snapshot ($(du -k data/snapshot.json | cut -f1) KiB)"
cp data/snapshot.json staging/snapshot.json
echo staged
'''}),
             (Step("Stage snapshot", "./scripts/stage.sh"),),
             around=_dev_full("staging/snapshot.json"),
             note="the staging file is /dev/full behind a symlink: writes fail with ENOSPC as on a full disk",
             expect=r"No space left on device"))
    add(Case("shell-tar-disk-full-tarnhook", "shell", "disk_full", "tarnhook",
             tarn(**{"scripts/bundle.sh": '''#!/usr/bin/env bash
set -euo pipefail
mkdir -p dist
head -c 2000000 /dev/zero > dist/padding.bin
tar -cf dist/hooks.tar hooks manifest.txt dist/padding.bin
echo "bundle: $(du -h dist/hooks.tar | cut -f1)"
'''}),
             (Step("Bundle hooks", "./scripts/bundle.sh"),),
             around=_dev_full("dist/hooks.tar"),
             note="the bundle is /dev/full behind a symlink: writes fail with ENOSPC as on a full disk",
             expect=r"No space left on device"))

    # ---- unknown: a project-specific check fails and says nothing a person could file elsewhere
    note_unknown = "a project-specific gate fails with a message of its own: nothing says what kind of failure it is"
    add(Case("shell-verify-manifest-tarnhook", "shell", "unknown", "tarnhook",
             tarn(**{"scripts/verify-manifest.sh": '''#!/usr/bin/env bash
set -uo pipefail
status=0
echo "==> verifying hook manifest"
for f in hooks/*.sh; do
  grep -qx "$f" manifest.txt || { echo "    not in manifest: $f"; status=3; }
done
[ "$status" -eq 0 ] && echo "==> manifest ok" || echo "==> manifest check returned $status"
exit "$status"
''', "hooks/warm-cache.sh": "#!/usr/bin/env bash\necho warming\n"}),
             (Step("Verify manifest", "./scripts/verify-manifest.sh"),), note=note_unknown))
    add(Case("shell-release-gate-pebblesync", "shell", "unknown", "pebblesync",
             pebble(**{"Makefile": '''VERSION := $(shell cat VERSION)

check:
\t@echo "release gate for $(VERSION)"
\t@test -n "$$(grep -F '$(VERSION)' CHANGES 2>/dev/null)" || { echo "gate: not satisfied"; exit 1; }
''', "VERSION": "2.4.0\n", "CHANGES": "2.3.1 - fix retention\n"}),
             (Step("Release gate", "make check"),), note=note_unknown, expect=r"gate: not satisfied"))

    # ---- infra_timeout / infra_runner_lost
    add(Case("shell-hung-wait-pebblesync", "shell", "infra_timeout", "pebblesync",
             pebble(**{"scripts/wait-for-lock.sh": '''#!/usr/bin/env bash
set -euo pipefail
echo "waiting for the previous sync to release .sync.lock"
while [ ! -e .sync.done ]; do sleep 1; done
'''}),
             (Step("Wait for previous sync", "./scripts/wait-for-lock.sh", timeout=6.0),), ends="job_timeout",
             note="the step waits forever without output: the platform's time limit ends the job"))
    add(Case("shell-runner-lost-tarnhook", "shell", "infra_runner_lost", "tarnhook",
             tarn(**{"scripts/long-sync.sh": '''#!/usr/bin/env bash
set -euo pipefail
for i in 1 2 3 4 5; do
  echo "syncing shard $i/12"
  if [ "$i" = 5 ]; then kill -KILL 0; fi  # the runner's VM is reclaimed here
done
'''}),
             (Step("Sync shards", "./scripts/long-sync.sh"),), ends="runner_lost",
             note="the step's whole process group is SIGKILLed mid-run, as when the runner disappears"))
    return out


# ------------------------------------------------------------------------------------------------- perl

WREN_PM = '''package Wren::Parse;
# Parse INI-ish config: [section] headers, key = value lines, # comments.
use strict;
use warnings;

our $VERSION = '0.7.1';

sub parse {
    my ($text) = @_;
    my %conf;
    my $section = 'main';
    for my $line (split /\\n/, $text) {
        next if $line =~ /^\\s*(#|$)/;
        if ($line =~ /^\\[(\\w+)\\]$/) { $section = $1; next }
        my ($k, $v) = $line =~ /^\\s*(\\w+)\\s*=\\s*(.*?)\\s*$/ or die "bad line: $line\\n";
        $conf{$section}{$k} = $v;
    }
    return \\%conf;
}

1;
'''

WREN_TEST = '''use strict;
use warnings;
use Test::More;
use Wren::Parse;

my $conf = Wren::Parse::parse(<<'EOT');
# service
name = wren
[db]
host = localhost
port = 5432
EOT

is($conf->{main}{name}, 'wren', 'top-level key');
is($conf->{db}{host}, 'localhost', 'section key');
is_deeply([sort keys %{ $conf->{db} }], [qw(host port)], 'db keys');
done_testing();
'''

LANTERN_PM = '''package Lantern::Format;
# Format log records as aligned text.
use strict;
use warnings;

sub line {
    my (%r) = @_;
    return sprintf "%-5s %s %s", uc $r{level}, $r{ts}, $r{msg};
}

sub block {
    my @records = @_;
    return join "\\n", map { line(%$_) } @records;
}

1;
'''

LANTERN_TEST = '''use strict;
use warnings;
use Test::More tests => 3;
use Lantern::Format;

is(Lantern::Format::line(level => 'info', ts => '10:00:00', msg => 'started'),
   'INFO  10:00:00 started', 'info line');
is(Lantern::Format::line(level => 'warn', ts => '10:00:01', msg => 'slow'),
   'WARN  10:00:01 slow', 'warn line');
is(Lantern::Format::block({level => 'error', ts => '10:00:02', msg => 'boom'}),
   'ERROR 10:00:02 boom', 'block of one');
'''


def wren(**extra: str) -> dict[str, str]:
    return {"lib/Wren/Parse.pm": WREN_PM, "t/01-parse.t": WREN_TEST, "cpanfile": "requires 'perl', '5.020';\n",
            **extra}


def lantern(**extra: str) -> dict[str, str]:
    return {"lib/Lantern/Format.pm": LANTERN_PM, "t/format.t": LANTERN_TEST,
            "bin/lantern": '#!/usr/bin/env perl\nuse strict;\nuse warnings;\nuse lib "lib";\nuse Lantern::Format;\n'
                           'while (my $l = <STDIN>) { chomp $l; my ($lv, $ts, $m) = split / /, $l, 3;\n'
                           '  print Lantern::Format::line(level => $lv, ts => $ts, msg => $m), "\\n" }\n',
            "cpanfile": "requires 'perl', '5.020';\n", **extra}


def perl_cases() -> list[Case]:
    out: list[Case] = []
    add = out.append

    # ---- compilation_error
    add(Case("perl-syntax-error-wrenparse", "perl", "compilation_error", "wrenparse",
             wren(**{"lib/Wren/Parse.pm": WREN_PM.replace("        $conf{$section}{$k} = $v;\n",
                                                           "        $conf{$section}{$k} = $v\n"
                                                           "        warn \"dup $k\\n\" if exists $conf{$section}{$k};\n")}),
             (Step("Compile check", "perl -Ilib -c lib/Wren/Parse.pm"),),
             expect=r"syntax error at lib/Wren/Parse\.pm"))
    add(Case("perl-syntax-error-lanternlog", "perl", "compilation_error", "lanternlog",
             lantern(**{"lib/Lantern/Format.pm": LANTERN_PM.replace(
                 'return join "\\n", map { line(%$_) } @records;',
                 'return join "\\n", map { line(%$_) } @records;\n}\n\nsub colour {\n    my ($level = @_;\n'
                 '    return $level eq "error" ? "red" : "plain";')}),
             (Step("Compile check", "for f in lib/Lantern/*.pm bin/lantern; do perl -Ilib -c \"$f\"; done"),),
             expect=r"had compilation errors"))

    # ---- test_failure
    add(Case("perl-prove-failure-wrenparse", "perl", "test_failure", "wrenparse",
             wren(**{"lib/Wren/Parse.pm": WREN_PM.replace("$conf{$section}{$k} = $v;",
                                                           "$conf{$section}{$k} = ucfirst $v;")}),
             (Step("Compile check", "perl -Ilib -c lib/Wren/Parse.pm"),
              Step("Run tests", "prove -l t/")),
             expect=r"^Result: FAIL"))
    add(Case("perl-prove-failure-lanternlog", "perl", "test_failure", "lanternlog",
             lantern(**{"lib/Lantern/Format.pm": LANTERN_PM.replace('"%-5s %s %s"', '"%-4s %s %s"')}),
             (Step("Run tests", "prove -lv t/"),),
             expect=r"^Result: FAIL"))

    # ---- dependency_missing
    add(Case("perl-missing-module-wrenparse", "perl", "dependency_missing", "wrenparse",
             wren(**{"t/02-json.t": '''use strict;
use warnings;
use Test::More;
use JSON::XS;
use Wren::Parse;

my $conf = Wren::Parse::parse("name = wren\\n");
is(JSON::XS->new->canonical->encode($conf), '{"main":{"name":"wren"}}', 'as JSON');
done_testing();
'''}),
             (Step("Run tests", "prove -l t/"),),
             expect=r"Can't locate JSON/XS\.pm in @INC"))
    add(Case("perl-missing-module-lanternlog", "perl", "dependency_missing", "lanternlog",
             lantern(**{"bin/lantern-csv": '''#!/usr/bin/env perl
use strict;
use warnings;
use lib "lib";
use Text::CSV_XS;
use Lantern::Format;

my $csv = Text::CSV_XS->new({ binary => 1 });
while (my $row = $csv->getline(*STDIN)) {
    print Lantern::Format::line(level => $row->[0], ts => $row->[1], msg => $row->[2]), "\\n";
}
''', "samples/app.csv": "info,10:00:00,started\nwarn,10:00:01,slow\n"}),
             (Step("Smoke test", "perl bin/lantern-csv < samples/app.csv"),),
             expect=r"Can't locate Text/CSV_XS\.pm in @INC"))

    # ---- test_timeout: the test's own alarm stops a hung test
    add(Case("perl-test-alarm-timeout-wrenparse", "perl", "test_timeout", "wrenparse",
             wren(**{"t/03-slow.t": '''use strict;
use warnings;
use Test::More;
use Wren::Parse;

alarm 2;  # no test may take longer than 2 seconds
my $big = join "", map { "k$_ = v$_\\n" } 1 .. 5;
my $conf = Wren::Parse::parse($big);
is(scalar keys %{ $conf->{main} }, 5, 'five keys');
sleep 1 while 1;  # waits for a reload signal that never comes
done_testing();
'''}),
             (Step("Run tests", "prove -l t/"),),
             note="the test's own 2-second alarm kills it: the test timed out, not the job",
             expect=r"Signal: ALRM|[Ww]stat:? 14|Alarm clock"))
    return out


def cases(tools: Tools) -> list[Case]:  # noqa: ARG001 - bash, curl, perl and prove are on PATH
    return shell_cases() + perl_cases()
