"""Go and Rust cases, run with the machine's Go toolchain (``go``, ``gofmt``, ``go vet``, the race detector)
and Rust toolchain (``cargo``, ``clippy``, ``rustfmt``), against the Go module proxy and crates.io.

Go projects (all made up): ``coinsift`` (splits ledger amounts into shares, with a snapshot importer),
``waypointer`` (route legs and distances) and ``pulsewren`` (a health-check pinger with a small CLI).
Rust projects (all made up): ``brinetide`` (tide-table arithmetic, with a small CLI), ``lexiheap`` (a
word sorter and on-disk word index) and ``logmoth`` (a log-line parser).

Every case runs in its own directory: Go's module cache (``GOMODCACHE``, made writable with
``-modcacherw``) and, for the cases that reach crates.io, ``CARGO_HOME`` live inside it, so every run
fetches afresh and prints the same thing. Cargo's target directory is the crate's own ``target/``. The Go
build cache is the machine's; steps that pass before the failing one never run tests, so no ``(cached)``
result shows up in a log. Some text still differs from run to run, as it does in real CI: goroutine and
pointer addresses in Go tracebacks, thread ids in Rust panic messages, process ids in bash's
"Segmentation fault"/"Aborted" lines. Binaries that die of a signal run from a small script in the
project, so bash (not an exec'd process) reports the signal, as a CI step's shell script does.
"""

from __future__ import annotations

import os
from pathlib import Path
from textwrap import dedent

from ..case import Case, Step, Tools

__all__ = ["cases"]

GO_BIN = "/usr/local/go/bin"
CARGO_BIN = str(Path.home() / ".cargo" / "bin")

GO_MOD_GO = "1.22"  # the `go` line of every go.mod: older than the toolchain, so no toolchain switch
UUID_VERSION = "v1.6.0"  # a small real module without dependencies, fetched from the proxy
UUID_GO_MOD_SUM = "h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo="
# the real zip hash is h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0= ; one character changed:
UUID_BAD_SUM = "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F4="
MEMCHR_VERSION = "2.7.4"  # a small real crate without required dependencies
# the real checksum ends in ...e112e3a3; the last character is changed
MEMCHR_BAD_CHECKSUM = "78ca9ab1a0babb1e7d5695e3530886289c18cf2f87ec19a575a0abdce112e3a4"


def _path(tools: Tools) -> str:
    """PATH for every step: the corpus tools, then Go and Cargo, then the machine's PATH."""
    return os.pathsep.join([tools.bin_path, GO_BIN, CARGO_BIN, os.environ.get("PATH", "/usr/bin:/bin")])


def _go_env(tools: Tools, name: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": _path(tools),
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false -modcacherw",
        "GOMODCACHE": str(tools.work / name / ".cache" / "gomod"),
        "CGO_ENABLED": "1",  # the race detector needs it
        **extra,
    }


def _rust_env(tools: Tools, name: str, *, own_home: bool = False, **extra: str) -> dict[str, str]:
    env = {
        "PATH": _path(tools),
        "CARGO_TERM_COLOR": "never",
        "CARGO_TERM_PROGRESS_WHEN": "never",
        "CARGO_INCREMENTAL": "0",
        "RUST_BACKTRACE": "0",
        "CARGO_TARGET_DIR": str(tools.work / name / "target"),
    }
    if own_home:  # a fresh CARGO_HOME, so "Updating crates.io index" / "Downloaded ..." print every run
        env["CARGO_HOME"] = str(tools.work / name / ".cargo-home")
    env.update(extra)
    return env


def _d(text: str) -> str:
    return dedent(text).lstrip("\n")


def _go_mod(module: str, require: str = "") -> str:
    text = f"module example.com/{module}\n\ngo {GO_MOD_GO}\n"
    if require:
        text += f"\nrequire {require}\n"
    return text


# --------------------------------------------------------------------------------------------- Go projects

COINSIFT_SPLIT = _d("""
    // Package coinsift splits ledger amounts into shares.
    package coinsift

    // SplitCents divides total cents into n shares that differ by at most one cent
    // and add up to total.
    func SplitCents(total int64, n int) []int64 {
    \tif n <= 0 {
    \t\treturn nil
    \t}
    \tshare := total / int64(n)
    \tout := make([]int64, n)
    \tfor i := range out {
    \t\tout[i] = share
    \t}
    \treturn out
    }
    """)

COINSIFT_SPLIT_FIXED = _d("""
    // Package coinsift splits ledger amounts into shares.
    package coinsift

    // SplitCents divides total cents into n shares that differ by at most one cent
    // and add up to total.
    func SplitCents(total int64, n int) []int64 {
    \tif n <= 0 {
    \t\treturn nil
    \t}
    \tshare, rest := total/int64(n), total%int64(n)
    \tout := make([]int64, n)
    \tfor i := range out {
    \t\tout[i] = share
    \t\tif int64(i) < rest {
    \t\t\tout[i]++
    \t\t}
    \t}
    \treturn out
    }
    """)

COINSIFT_SPLIT_TEST = _d("""
    package coinsift

    import (
    \t"reflect"
    \t"testing"
    )

    func TestSplitCents(t *testing.T) {
    \tcases := []struct {
    \t\ttotal int64
    \t\tn     int
    \t\twant  []int64
    \t}{
    \t\t{total: 900, n: 3, want: []int64{300, 300, 300}},
    \t\t{total: 1000, n: 3, want: []int64{334, 333, 333}},
    \t\t{total: 5, n: 2, want: []int64{3, 2}},
    \t}
    \tfor _, c := range cases {
    \t\tgot := SplitCents(c.total, c.n)
    \t\tif !reflect.DeepEqual(got, c.want) {
    \t\t\tt.Errorf("SplitCents(%d, %d) = %v, want %v", c.total, c.n, got, c.want)
    \t\t}
    \t}
    }

    func TestSplitCentsZeroShares(t *testing.T) {
    \tif got := SplitCents(100, 0); got != nil {
    \t\tt.Errorf("SplitCents(100, 0) = %v, want nil", got)
    \t}
    }
    """)

COINSIFT_ROUND = _d("""
    package coinsift

    // ToCents converts an amount in currency units to whole cents.
    func ToCents(amount float64) int64 {
    \treturn int64(roundHalfEven(amount * 100))
    }

    // FromCents converts whole cents back to currency units.
    func FromCents(cents int64) float64 {
    \treturn float64(cents) / 100
    }
    """)

COINSIFT_FMT = _d("""
    package coinsift

    import "fmt"

    // Format renders cents as a currency string such as "12.05".
    func Format(cents int64) string {
    \tsign := ""
    \tif cents < 0 {
    \t\tsign, cents = "-", -cents
    \t}
    \treturn fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
    }
    """)

# gofmt-broken: spaces instead of tabs, misaligned struct fields, a one-line if body
COINSIFT_LEDGER_UNFORMATTED = (
    "package coinsift\n\n"
    "// Entry is one line of a ledger.\n"
    "type Entry struct {\n"
    "    Account string\n"
    "    Cents int64\n"
    "    Memo string\n"
    "}\n\n"
    "// Balance sums the entries of one account.\n"
    "func Balance(entries []Entry, account string) int64 {\n"
    "    var total int64\n"
    "    for _, e := range entries {\n"
    "        if e.Account == account { total += e.Cents }\n"
    "    }\n"
    "    return total\n"
    "}\n"
)

CHECK_GOFMT = _d("""
    #!/usr/bin/env bash
    # Fails when any Go file is not gofmt-formatted.
    set -euo pipefail
    unformatted=$(gofmt -l .)
    if [ -n "$unformatted" ]; then
      echo "These files are not formatted with gofmt:"
      echo "$unformatted"
      echo
      gofmt -d .
      echo "Run 'gofmt -w .' and commit the result."
      exit 1
    fi
    echo "gofmt: all files formatted"
    """)

COINSIFT_IMPORT = _d("""
    // Command coinsift-import loads a ledger snapshot and prints its balance.
    package main

    import (
    \t"bufio"
    \t"fmt"
    \t"os"
    \t"strconv"
    \t"strings"

    \t"example.com/coinsift"
    )

    func main() {
    \tif len(os.Args) != 2 {
    \t\tfmt.Fprintln(os.Stderr, "usage: coinsift-import SNAPSHOT")
    \t\tos.Exit(2)
    \t}
    \tf, err := os.Open(os.Args[1])
    \tif err != nil {
    \t\tfmt.Fprintln(os.Stderr, err)
    \t\tos.Exit(1)
    \t}
    \tdefer f.Close()
    \tsc := bufio.NewScanner(f)
    \tsc.Scan()
    \t// header: "entries: N" -- the importer trusts it and preallocates
    \tcount, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(sc.Text(), "entries:")), 10, 64)
    \tif err != nil {
    \t\tfmt.Fprintln(os.Stderr, "bad header:", err)
    \t\tos.Exit(1)
    \t}
    \tfmt.Printf("loading %d entries from %s\\n", count, os.Args[1])
    \tentries := make([]coinsift.Entry, 0, count)
    \tfor sc.Scan() {
    \t\tparts := strings.Split(sc.Text(), ",")
    \t\tif len(parts) != 3 {
    \t\t\tcontinue
    \t\t}
    \t\tcents, _ := strconv.ParseInt(parts[1], 10, 64)
    \t\tentries = append(entries, coinsift.Entry{Account: parts[0], Cents: cents, Memo: parts[2]})
    \t}
    \tfmt.Println("cash balance:", coinsift.Balance(entries, "cash"))
    }
    """)

COINSIFT_LEDGER = _d("""
    package coinsift

    // Entry is one line of a ledger.
    type Entry struct {
    \tAccount string
    \tCents   int64
    \tMemo    string
    }

    // Balance sums the entries of one account.
    func Balance(entries []Entry, account string) int64 {
    \tvar total int64
    \tfor _, e := range entries {
    \t\tif e.Account == account {
    \t\t\ttotal += e.Cents
    \t\t}
    \t}
    \treturn total
    }
    """)

COINSIFT_ID = _d("""
    package coinsift

    import "github.com/google/uuid"

    // NewEntryID returns a fresh identifier for a ledger entry.
    func NewEntryID() string {
    \treturn uuid.NewString()
    }
    """)

WAYPOINTER_ROUTE = _d("""
    // Package waypointer computes the legs of a route.
    package waypointer

    // Stop is a point on a route, KM kilometres from the start.
    type Stop struct {
    \tName string
    \tKM   float64
    }

    // Legs returns the distance of each leg between consecutive stops.
    func Legs(stops []Stop) []float64 {
    \tlegs := make([]float64, 0, len(stops))
    \tfor i := 0; i < len(stops); i++ {
    \t\tlegs = append(legs, stops[i+1].KM-stops[i].KM)
    \t}
    \treturn legs
    }

    // Total is the length of the whole route.
    func Total(stops []Stop) float64 {
    \tvar sum float64
    \tfor _, leg := range Legs(stops) {
    \t\tsum += leg
    \t}
    \treturn sum
    }
    """)

WAYPOINTER_ROUTE_TEST = _d("""
    package waypointer

    import "testing"

    var coastal = []Stop{
    \t{Name: "Harbour", KM: 0},
    \t{Name: "Lighthouse", KM: 12.5},
    \t{Name: "Cove", KM: 20},
    }

    func TestLegs(t *testing.T) {
    \tlegs := Legs(coastal)
    \tif len(legs) != 2 {
    \t\tt.Fatalf("got %d legs, want 2", len(legs))
    \t}
    \tif legs[0] != 12.5 || legs[1] != 7.5 {
    \t\tt.Errorf("legs = %v, want [12.5 7.5]", legs)
    \t}
    }

    func TestTotal(t *testing.T) {
    \tif got := Total(coastal); got != 20 {
    \t\tt.Errorf("Total = %v, want 20", got)
    \t}
    }
    """)

WAYPOINTER_SUMMARY_MISMATCH = _d("""
    package waypointer

    import "fmt"

    func sumKM(stops []Stop) float64 {
    \tif len(stops) == 0 {
    \t\treturn 0
    \t}
    \treturn stops[len(stops)-1].KM - stops[0].KM
    }

    // Summary describes a route in one line.
    func Summary(stops []Stop) string {
    \tvar km int = sumKM(stops)
    \treturn fmt.Sprintf("%d stops, %d km", len(stops), km)
    }
    """)

WAYPOINTER_ROUTE_OK = WAYPOINTER_ROUTE.replace("i < len(stops); i++", "i+1 < len(stops); i++")

WAYPOINTER_STATS = _d("""
    package waypointer

    import "sync"

    // Stats counts how often routes are planned.
    type Stats struct {
    \tPlanned int
    }

    // PlanAll computes the total of each route concurrently and records each one in stats.
    func PlanAll(routes [][]Stop, stats *Stats) []float64 {
    \ttotals := make([]float64, len(routes))
    \tvar wg sync.WaitGroup
    \tfor i, r := range routes {
    \t\twg.Add(1)
    \t\tgo func(i int, r []Stop) {
    \t\t\tdefer wg.Done()
    \t\t\ttotals[i] = Total(r)
    \t\t\tstats.Planned++
    \t\t}(i, r)
    \t}
    \twg.Wait()
    \treturn totals
    }
    """)

WAYPOINTER_STATS_TEST = _d("""
    package waypointer

    import "testing"

    func TestPlanAll(t *testing.T) {
    \troutes := [][]Stop{
    \t\tcoastal,
    \t\t{{Name: "Mill", KM: 0}, {Name: "Ford", KM: 3}},
    \t\t{{Name: "Quay", KM: 0}, {Name: "Bridge", KM: 1.5}, {Name: "Market", KM: 4}},
    \t}
    \tvar stats Stats
    \ttotals := PlanAll(routes, &stats)
    \tif totals[0] != 20 || totals[1] != 3 || totals[2] != 4 {
    \t\tt.Errorf("totals = %v", totals)
    \t}
    \tif stats.Planned == 0 {
    \t\tt.Errorf("no route recorded")
    \t}
    }
    """)

WAYPOINTER_ID = _d("""
    package waypointer

    import "github.com/google/uuid"

    // RouteID returns a fresh identifier for a planned route.
    func RouteID() string {
    \treturn "route-" + uuid.NewString()
    }
    """)

PULSEWREN_PROBE = _d("""
    // Package pulsewren probes a set of health-check targets.
    package pulsewren

    import (
    \t"sync"
    \t"time"
    )

    // Result is the outcome of probing one target.
    type Result struct {
    \tTarget string
    \tOK     bool
    \tTook   time.Duration
    }

    // Checker reports whether one target is healthy.
    type Checker func(target string) bool

    // ProbeAll checks every target concurrently and returns the results in order.
    func ProbeAll(targets []string, check Checker) []Result {
    \tresults := make([]Result, len(targets))
    \tvar wg sync.WaitGroup
    \twg.Add(len(targets) + 1)
    \tfor i, target := range targets {
    \t\tgo func(i int, target string) {
    \t\t\tdefer wg.Done()
    \t\t\tstart := time.Now()
    \t\t\tok := check(target)
    \t\t\tresults[i] = Result{Target: target, OK: ok, Took: time.Since(start)}
    \t\t}(i, target)
    \t}
    \twg.Wait()
    \treturn results
    }
    """)

PULSEWREN_PROBE_TEST = _d("""
    package pulsewren

    import "testing"

    func TestProbeAll(t *testing.T) {
    \tup := map[string]bool{"db:5432": true, "cache:6379": false}
    \tresults := ProbeAll([]string{"db:5432", "cache:6379"}, func(target string) bool { return up[target] })
    \tif len(results) != 2 || !results[0].OK || results[1].OK {
    \t\tt.Errorf("results = %+v", results)
    \t}
    }
    """)

PULSEWREN_REPORT_VET = _d("""
    package pulsewren

    import "fmt"

    // Report summarises a probe run in one line.
    func Report(results []Result) string {
    \tvar down []string
    \tfor _, r := range results {
    \t\tif !r.OK {
    \t\t\tdown = append(down, r.Target)
    \t\t}
    \t}
    \treturn fmt.Sprintf("%d targets probed, %d down", len(results), down)
    }
    """)

PULSEWREN_CONFIG = _d("""
    package pulsewren

    import (
    \t"bufio"
    \t"os"
    \t"strings"
    )

    // Config lists the targets to probe.
    type Config struct {
    \tTargets []string
    }

    // LoadConfig reads one target per line; it returns nil when the file cannot be read.
    func LoadConfig(path string) *Config {
    \tf, err := os.Open(path)
    \tif err != nil {
    \t\treturn nil
    \t}
    \tdefer f.Close()
    \tcfg := &Config{}
    \tsc := bufio.NewScanner(f)
    \tfor sc.Scan() {
    \t\tif line := strings.TrimSpace(sc.Text()); line != "" {
    \t\t\tcfg.Targets = append(cfg.Targets, line)
    \t\t}
    \t}
    \treturn cfg
    }
    """)

PULSEWREN_MAIN = _d("""
    // Command pulsewren probes the targets listed in its config file.
    package main

    import (
    \t"fmt"
    \t"net"
    \t"time"

    \t"example.com/pulsewren"
    )

    func main() {
    \tcfg := pulsewren.LoadConfig("config/targets.txt")
    \tfmt.Printf("probing %d targets\\n", len(cfg.Targets))
    \tresults := pulsewren.ProbeAll(cfg.Targets, func(target string) bool {
    \t\tconn, err := net.DialTimeout("tcp", target, time.Second)
    \t\tif err != nil {
    \t\t\treturn false
    \t\t}
    \t\tconn.Close()
    \t\treturn true
    \t})
    \tfor _, r := range results {
    \t\tfmt.Println(r.Target, r.OK)
    \t}
    }
    """)

# a local module proxy holding example.com/ringlet v1.0.0 and v1.1.0 only (see the dependency_resolution case)
RINGLET_INFO = '{{"Version":"{v}","Time":"2024-0{m}-11T09:30:00Z"}}\n'
RINGLET_MOD = "module example.com/ringlet\n\ngo 1.21\n"

# ------------------------------------------------------------------------------------------- Rust projects


def _cargo_toml(name: str, deps: str = "", extra: str = "") -> str:
    return (f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n'
            + extra + "\n[dependencies]\n" + deps)


BRINETIDE_LIB = _d("""
    //! Tide-table arithmetic.

    /// Minutes between two high tides (a semi-diurnal tide cycle, 12 h 25 min).
    pub const CYCLE_MINUTES: u32 = 745;

    /// Minutes after midnight of the next high tide after `now`, given one known high tide.
    pub fn next_high_tide(known: u32, now: u32) -> u32 {
        if now <= known {
            return known;
        }
        let cycles = (now - known) / CYCLE_MINUTES;
        known + cycles * CYCLE_MINUTES
    }

    /// Formats minutes after midnight as `HH:MM`, wrapping past midnight.
    pub fn clock(minutes: u32) -> String {
        let m = minutes % (24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn high_tide_later_the_same_day() {
            // known high tide at 03:10, asked at 09:00: the next one is 15:35
            assert_eq!(next_high_tide(190, 540), 935);
        }

        #[test]
        fn high_tide_before_known() {
            assert_eq!(next_high_tide(190, 100), 190);
        }

        #[test]
        fn clock_wraps_past_midnight() {
            assert_eq!(clock(1500), "01:00");
        }
    }
    """)

BRINETIDE_LIB_FIXED = BRINETIDE_LIB.replace(
    "        let cycles = (now - known) / CYCLE_MINUTES;\n",
    "        let cycles = (now - known).div_ceil(CYCLE_MINUTES);\n")

BRINETIDE_LIB_E0425 = _d("""
    //! Tide-table arithmetic.

    /// Minutes between two high tides (a semi-diurnal tide cycle, 12 h 25 min).
    pub const CYCLE_MINUTES: u32 = 745;

    /// Minutes after midnight of the next high tide after `now`, given one known high tide.
    pub fn next_high_tide(known: u32, now: u32) -> u32 {
        if now <= known {
            return known;
        }
        let cycles = (now - known).div_ceil(CYCLE_MINUTES);
        known + cycles * CYCLE_MINUTES
    }

    /// The same, for a port whose tides run `offset` minutes after the reference port.
    pub fn next_high_tide_at(known: u32, now: u32, offset: u32) -> u32 {
        next_high_tide(known + offset_minutes, now)
    }
    """)

# rustfmt-broken: cramped spacing, a long one-line match, a badly indented block
BRINETIDE_LIB_UNFORMATTED = (
    "//! Tide-table arithmetic.\n\n"
    "/// Minutes between two high tides (a semi-diurnal tide cycle, 12 h 25 min).\n"
    "pub const CYCLE_MINUTES:u32=745;\n\n"
    "/// Minutes after midnight of the next high tide after `now`, given one known high tide.\n"
    "pub fn next_high_tide(known: u32, now: u32) -> u32 {\n"
    "    if now<=known { return known; }\n"
    "    let cycles = (now - known).div_ceil(CYCLE_MINUTES);\n"
    "      known + cycles*CYCLE_MINUTES\n"
    "}\n\n"
    "/// A rough name for the tide range in centimetres.\n"
    "pub fn range_name(cm: u32) -> &'static str {\n"
    "    match cm { 0..=150 => \"neap\", 151..=400 => \"moderate\", _ => \"spring\" }\n"
    "}\n"
)

BRINETIDE_CLI = _d("""
    //! brinetide-cli: prints the next high tide for the harbour station.
    use brinetide::{clock, next_high_tide};

    /// The station record the tide gauge driver fills in.
    #[repr(C)]
    struct Station {
        id: u32,
        known_high_tide: u32,
    }

    /// Stand-in for the gauge driver's lookup: returns a pointer into the driver's table,
    /// which is not mapped when the driver has not been initialised.
    fn driver_station(id: u32) -> *const Station {
        // the table lives at a fixed address in the driver's shared segment
        let table = 0x1000 as *const Station;
        table.wrapping_add(id as usize)
    }

    fn main() {
        println!("reading station 3 from the gauge driver");
        let station = driver_station(3);
        let known = unsafe { std::ptr::read_volatile(station).known_high_tide };
        let now = 9 * 60;
        println!("next high tide: {}", clock(next_high_tide(known, now)));
    }
    """)

BRINETIDE_CLI_ABORT = _d("""
    //! brinetide-cli: prints the next high tide for the harbour station.
    use brinetide::{clock, next_high_tide};

    fn station_table() -> Vec<(u32, u32)> {
        vec![(1, 190), (2, 215)]
    }

    fn main() {
        let station = 3;
        let known = match station_table().iter().find(|(id, _)| *id == station) {
            Some((_, known)) => *known,
            None => {
                eprintln!("station {station} missing from the tide table; aborting");
                std::process::abort();
            }
        };
        println!("next high tide: {}", clock(next_high_tide(known, 9 * 60)));
    }
    """)

BRINETIDE_SMOKE = _d("""
    #!/usr/bin/env bash
    # Smoke test: the CLI must print the next high tide for the harbour station.
    set -euo pipefail
    echo "== brinetide-cli smoke test"
    cargo run --quiet --bin brinetide-cli
    echo "== smoke test passed"
    """)

LEXIHEAP_LOAD = _d("""
    #!/usr/bin/env bash
    # Loads the shipped word index with the release binary, under the runner's memory limit.
    set -euo pipefail
    ulimit -v 4194304
    echo "address-space limit: $(ulimit -v) KiB"
    ./target/release/lexiheap-index "$@"
    """)


LEXIHEAP_LIB = _d("""
    //! Word sorting and a tiny on-disk word index.

    /// Splits `text` into words and returns them sorted, case-insensitively, without duplicates.
    pub fn sorted_words(text: &str) -> Vec<String> {
        let mut words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        words.sort();
        words.dedup();
        words
    }

    /// Parses an index header line such as `words=42`.
    pub fn parse_header(line: &str) -> Result<u64, std::num::ParseIntError> {
        line.trim().trim_start_matches("words=").parse()
    }
    """)

LEXIHEAP_TEST = _d("""
    use lexiheap::{parse_header, sorted_words};

    #[test]
    fn sorts_and_dedups() {
        assert_eq!(sorted_words("pear Apple pear, fig"), vec!["apple", "fig", "pear"]);
    }

    #[test]
    fn reads_header_with_spaces_around_the_equals_sign() {
        let count = parse_header("words = 42").unwrap();
        assert_eq!(count, 42);
    }
    """)

LEXIHEAP_LIB_BORROW = _d("""
    //! Word sorting and a tiny on-disk word index.

    /// Splits `text` into words and returns them sorted, case-insensitively, without duplicates,
    /// together with the word that came first in the text.
    pub fn sorted_words(text: &str) -> (Vec<String>, String) {
        let mut words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let first = &words[0];
        words.sort();
        let first = first.clone();
        words.dedup();
        (words, first)
    }
    """)

LEXIHEAP_INDEX_MAIN = _d("""
    //! lexiheap-index: loads a word index and prints how many words it holds.
    use std::fs;

    fn main() {
        let path = std::env::args().nth(1).expect("usage: lexiheap-index FILE");
        let text = fs::read_to_string(&path).expect("cannot read the index");
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("words=0");
        // the header says how many offsets follow; reserve room for all of them up front
        let count = lexiheap::parse_header(header).expect("bad header") as usize;
        println!("loading {count} offsets from {path}");
        let mut offsets: Vec<u64> = Vec::with_capacity(count);
        for line in lines {
            if let Ok(off) = line.trim().parse() {
                offsets.push(off);
            }
        }
        println!("loaded {} offsets", offsets.len());
    }
    """)

LOGMOTH_LIB = _d("""
    //! Parses log lines of the form `LEVEL message`.

    /// The known log levels, most severe first.
    pub const LEVELS: [&str; 4] = ["ERROR", "WARN", "INFO", "DEBUG"];

    /// Splits a log line into its level and message.
    pub fn parse(line: &str) -> Option<(&str, &str)> {
        let (level, message) = line.split_once(' ')?;
        if LEVELS.contains(&level) {
            Some((level, message.trim()))
        } else {
            None
        }
    }

    /// Counts the lines at each level, in the order of `LEVELS`.
    pub fn count_levels(lines: &[&str]) -> Vec<usize> {
        let mut counts = vec![0; LEVELS.len()];
        if lines.len() == 0 {
            return counts;
        }
        for line in lines {
            if let Some((level, _)) = parse(line) {
                let idx = LEVELS.iter().position(|l| *l == level).unwrap();
                counts[idx] += 1;
            }
        }
        return counts;
    }
    """)

LOGMOTH_LIB_MEMCHR = _d("""
    //! Parses log lines of the form `LEVEL message`.

    /// Counts the lines of a log buffer.
    pub fn count_lines(buf: &[u8]) -> usize {
        memchr::memchr_iter(b'\\n', buf).count()
    }
    """)

LOGMOTH_LOCK = _d(f"""
    # This file is automatically @generated by Cargo.
    # It is not intended for manual editing.
    version = 4

    [[package]]
    name = "logmoth"
    version = "0.1.0"
    dependencies = [
     "memchr",
    ]

    [[package]]
    name = "memchr"
    version = "{MEMCHR_VERSION}"
    source = "registry+https://github.com/rust-lang/crates.io-index"
    checksum = "{MEMCHR_BAD_CHECKSUM}"
    """)

LOGMOTH_BAD_MANIFEST = _d("""
    [package]
    name = "logmoth"
    version = "0.1.0"
    edition = "2021"
    publish = false

    [dependencies]
    memchr = { version = "2.7", default-features = false

    [dev-dependencies]
    """)


# ------------------------------------------------------------------------------------------------ cases


def cases(tools: Tools) -> list[Case]:  # noqa: PLR0915 - one flat list of cases reads best
    out: list[Case] = []

    def go(name: str, category: str, project: str, files: dict[str, str], steps: list[tuple[str, str]],
           note: str = "", env: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        e = _go_env(tools, name, **(env or {}))
        out.append(Case(name=name, ecosystem="go", category=category, project=project, files=files,
                        steps=tuple(Step(n, r, timeout=timeout, env=e) for n, r in steps), note=note))

    def rust(name: str, category: str, project: str, files: dict[str, str], steps: list[tuple[str, str]],
             note: str = "", own_home: bool = False, timeout: float = 180.0) -> None:
        e = _rust_env(tools, name, own_home=own_home)
        files = {".gitignore": "/target\n", **files}
        out.append(Case(name=name, ecosystem="rust", category=category, project=project, files=files,
                        steps=tuple(Step(n, r, timeout=timeout, env=e) for n, r in steps), note=note))

    go_version = ("Show Go version", "go version")
    rust_version = ("Show toolchain", "rustc --version && cargo --version")

    # ---------------------------------------------------------------- Go: tests
    go("go-test-errorf", "test_failure", "coinsift",
       {"go.mod": _go_mod("coinsift"), "split.go": COINSIFT_SPLIT, "split_test.go": COINSIFT_SPLIT_TEST,
        "format.go": COINSIFT_FMT},
       [go_version, ("Build", "go build ./..."), ("Test", "go test -v ./...")])

    go("go-test-panic", "test_failure", "waypointer",
       {"go.mod": _go_mod("waypointer"), "route.go": WAYPOINTER_ROUTE, "route_test.go": WAYPOINTER_ROUTE_TEST},
       [go_version, ("Build", "go build ./..."), ("Test", "go test ./...")],
       note="an index-out-of-range panic inside the code under test fails `go test` (FAIL ... panic:)")

    go("go-test-timeout", "test_timeout", "pulsewren",
       {"go.mod": _go_mod("pulsewren"), "probe.go": PULSEWREN_PROBE, "probe_test.go": PULSEWREN_PROBE_TEST},
       [go_version, ("Build", "go build ./..."), ("Test", "go test -timeout 2s ./...")],
       note="a WaitGroup counted one too high blocks forever; go test's own -timeout 2s kills the test binary")

    go("go-test-race", "test_failure", "waypointer",
       {"go.mod": _go_mod("waypointer"), "route.go": WAYPOINTER_ROUTE_OK, "route_test.go": WAYPOINTER_ROUTE_TEST,
        "stats.go": WAYPOINTER_STATS, "stats_test.go": WAYPOINTER_STATS_TEST},
       [go_version, ("Build", "go build ./..."), ("Test (race detector)", "go test -race ./...")],
       note="the assertions pass; the race detector reports WARNING: DATA RACE and fails the test with "
            "'race detected during execution of test' -- a test failure, not a crash")

    # ---------------------------------------------------------------- Go: build
    go("go-build-undefined", "compilation_error", "coinsift",
       {"go.mod": _go_mod("coinsift"), "split.go": COINSIFT_SPLIT_FIXED, "round.go": COINSIFT_ROUND,
        "format.go": COINSIFT_FMT},
       [go_version, ("Download modules", "go mod download"), ("Build", "go build ./...")])

    go("go-build-type-mismatch", "compilation_error", "waypointer",
       {"go.mod": _go_mod("waypointer"), "route.go": WAYPOINTER_ROUTE_OK, "summary.go": WAYPOINTER_SUMMARY_MISMATCH},
       [go_version, ("Download modules", "go mod download"), ("Build", "go build ./...")])

    # ---------------------------------------------------------------- Go: lint
    go("go-vet-printf", "lint_style", "pulsewren",
       {"go.mod": _go_mod("pulsewren"), "probe.go": PULSEWREN_PROBE.replace("len(targets) + 1", "len(targets)"),
        "report.go": PULSEWREN_REPORT_VET},
       [go_version, ("Build", "go build ./..."), ("Vet", "go vet ./...")],
       note="the code compiles; go vet's printf check rejects a %d verb given a []string")

    go("go-gofmt-check", "lint_style", "coinsift",
       {"go.mod": _go_mod("coinsift"), "split.go": COINSIFT_SPLIT_FIXED, "ledger.go": COINSIFT_LEDGER_UNFORMATTED,
        "format.go": COINSIFT_FMT, "scripts/check-gofmt.sh": CHECK_GOFMT},
       [go_version, ("Build", "go build ./..."), ("Check formatting", "./scripts/check-gofmt.sh")])

    # ---------------------------------------------------------------- Go: dependencies
    go("go-module-missing", "dependency_missing", "waypointer",
       {"go.mod": _go_mod("waypointer"), "route.go": WAYPOINTER_ROUTE_OK, "id.go": WAYPOINTER_ID},
       [go_version, ("Build", "go build ./...")],
       note="the package is imported but go.mod has no require for it; nothing is fetched")

    proxy = tools.work / "go-module-version-unknown" / "goproxy"
    ringlet = "goproxy/example.com/ringlet/@v/"
    go("go-module-version-unknown", "dependency_resolution", "pulsewren",
       {"go.mod": _go_mod("pulsewren"),
        "probe.go": PULSEWREN_PROBE.replace("len(targets) + 1", "len(targets)"),
        ringlet + "list": "v1.0.0\nv1.1.0\n",
        ringlet + "v1.0.0.info": RINGLET_INFO.format(v="v1.0.0", m=2),
        ringlet + "v1.0.0.mod": RINGLET_MOD,
        ringlet + "v1.1.0.info": RINGLET_INFO.format(v="v1.1.0", m=5),
        ringlet + "v1.1.0.mod": RINGLET_MOD},
       [go_version, ("Build", "go build ./..."), ("Upgrade ringlet", "go get example.com/ringlet@v1.4")],
       env={"GOPROXY": f"file://{proxy}", "GONOSUMDB": "example.com"},
       note="asks for example.com/ringlet v1.4.x; the module proxy lists only v1.0.0 and v1.1.0. The proxy is "
            "a file:// GOPROXY in the case directory (a made-up module can only be served locally; this "
            "machine's path to proxy.golang.org also answers 403, not the real proxy's 404, for unknown "
            "versions)")

    go("go-sum-mismatch", "cache_corruption", "coinsift",
       {"go.mod": _go_mod("coinsift", f"github.com/google/uuid {UUID_VERSION}"),
        "go.sum": (f"github.com/google/uuid {UUID_VERSION} {UUID_BAD_SUM}\n"
                   f"github.com/google/uuid {UUID_VERSION}/go.mod {UUID_GO_MOD_SUM}\n"),
        "split.go": COINSIFT_SPLIT_FIXED, "id.go": COINSIFT_ID},
       [go_version, ("Download modules", "go mod download")],
       note="go.sum holds a wrong h1: hash for a real module fetched from the proxy: "
            "'verifying ...: checksum mismatch' and 'SECURITY ERROR'")

    # ---------------------------------------------------------------- Go: run time
    go("go-run-nil-pointer", "crash", "pulsewren",
       {"go.mod": _go_mod("pulsewren"), "probe.go": PULSEWREN_PROBE.replace("len(targets) + 1", "len(targets)"),
        "config.go": PULSEWREN_CONFIG, "cmd/pulsewren/main.go": PULSEWREN_MAIN,
        "config/README.md": "Put one host:port per line in targets.txt.\n"},
       [go_version, ("Build", "go build ./..."), ("Smoke run", "go run ./cmd/pulsewren")],
       note="the config file is missing, LoadConfig returns nil and main dereferences it")

    go("go-run-out-of-memory", "oom", "coinsift",
       {"go.mod": _go_mod("coinsift"), "split.go": COINSIFT_SPLIT_FIXED, "ledger.go": COINSIFT_LEDGER,
        "cmd/coinsift-import/main.go": COINSIFT_IMPORT,
        "testdata/ledger.snap": "entries: 34359738368\ncash,1200,opening\ncash,-350,coffee\nrent,-90000,march\n"},
       [go_version, ("Build", "go build -o bin/coinsift-import ./cmd/coinsift-import"),
        ("Import snapshot", "ulimit -v 4194304 && ./bin/coinsift-import testdata/ledger.snap")],
       note="a corrupt header makes the importer preallocate 32 Gi 40-byte entries (1.25 TiB) under a 4 GiB "
            "address-space limit (the runner's memory limit): the Go runtime's 'fatal error: out of memory'")

    # ---------------------------------------------------------------- Rust: tests
    rust("rust-test-assert-eq", "test_failure", "brinetide",
         {"Cargo.toml": _cargo_toml("brinetide"), "src/lib.rs": BRINETIDE_LIB},
         [rust_version, ("Build", "cargo build --all-targets"), ("Test", "cargo test")])

    rust("rust-test-unwrap-err", "test_failure", "lexiheap",
         {"Cargo.toml": _cargo_toml("lexiheap"), "src/lib.rs": LEXIHEAP_LIB, "tests/words.rs": LEXIHEAP_TEST},
         [rust_version, ("Build", "cargo build --all-targets"), ("Test", "cargo test")],
         note="an integration test panics on Result::unwrap() of an Err")

    # ---------------------------------------------------------------- Rust: build
    rust("rust-build-e0425", "compilation_error", "brinetide",
         {"Cargo.toml": _cargo_toml("brinetide"), "src/lib.rs": BRINETIDE_LIB_E0425},
         [rust_version, ("Build", "cargo build")])

    rust("rust-build-borrowck", "compilation_error", "lexiheap",
         {"Cargo.toml": _cargo_toml("lexiheap"), "src/lib.rs": LEXIHEAP_LIB_BORROW},
         [rust_version, ("Build", "cargo build")],
         note="E0502: a shared borrow of the vector is still alive when it is sorted")

    # ---------------------------------------------------------------- Rust: lint
    rust("rust-clippy-deny-warnings", "lint_style", "logmoth",
         {"Cargo.toml": _cargo_toml("logmoth"), "src/lib.rs": LOGMOTH_LIB},
         [rust_version, ("Build", "cargo build"), ("Clippy", "cargo clippy --all-targets -- -D warnings")],
         note="clippy::len_zero and clippy::needless_return, promoted to errors by -D warnings")

    rust("rust-fmt-check", "lint_style", "brinetide",
         {"Cargo.toml": _cargo_toml("brinetide"), "src/lib.rs": BRINETIDE_LIB_UNFORMATTED},
         [rust_version, ("Build", "cargo build"), ("Check formatting", "cargo fmt --all -- --check")])

    # ---------------------------------------------------------------- Rust: dependencies and manifest
    rust("rust-dep-version-missing", "dependency_resolution", "lexiheap",
         {"Cargo.toml": _cargo_toml("lexiheap", 'unicode-segmentation = "9.1"\n'), "src/lib.rs": LEXIHEAP_LIB},
         [rust_version, ("Build", "cargo build")], own_home=True,
         note="unicode-segmentation exists on crates.io, but no 9.x version does")

    rust("rust-dep-crate-missing", "dependency_resolution", "logmoth",
         {"Cargo.toml": _cargo_toml("logmoth", 'logmoth-levels = "0.3"\n'), "src/lib.rs": LOGMOTH_LIB},
         [rust_version, ("Build", "cargo build")], own_home=True,
         note="a made-up crate name that crates.io does not have: 'no matching package named'")

    rust("rust-lock-checksum", "cache_corruption", "logmoth",
         {"Cargo.toml": _cargo_toml("logmoth", f'memchr = "={MEMCHR_VERSION}"\n'), "Cargo.lock": LOGMOTH_LOCK,
          "src/lib.rs": LOGMOTH_LIB_MEMCHR},
         [rust_version, ("Build", "cargo build --locked")], own_home=True,
         note="Cargo.lock holds a wrong checksum for a real crate: 'checksum for memchr changed between lock files'")

    rust("rust-manifest-invalid", "build_config", "logmoth",
         {"Cargo.toml": LOGMOTH_BAD_MANIFEST, "src/lib.rs": LOGMOTH_LIB_MEMCHR},
         [rust_version, ("Build", "cargo build")],
         note="an inline table in Cargo.toml is not closed: TOML parse error")

    # ---------------------------------------------------------------- Rust: run time
    rust("rust-run-segfault", "crash", "brinetide",
         {"Cargo.toml": _cargo_toml("brinetide"), "src/lib.rs": BRINETIDE_LIB_FIXED,
          "src/bin/brinetide-cli.rs": BRINETIDE_CLI, "scripts/smoke.sh": BRINETIDE_SMOKE},
         [rust_version, ("Build", "cargo build"), ("Smoke test", "./scripts/smoke.sh")],
         note="an unsafe read through a pointer into unmapped memory: SIGSEGV, reported by the script's bash. "
              "Not a null pointer: debug builds of Rust >= 1.86 check null dereferences and panic "
              "('null pointer dereference occurred') then abort instead of faulting")

    rust("rust-run-abort", "crash", "brinetide",
         {"Cargo.toml": _cargo_toml("brinetide"), "src/lib.rs": BRINETIDE_LIB_FIXED,
          "src/bin/brinetide-cli.rs": BRINETIDE_CLI_ABORT, "scripts/smoke.sh": BRINETIDE_SMOKE},
         [rust_version, ("Build", "cargo build"), ("Smoke test", "./scripts/smoke.sh")],
         note="std::process::abort(): SIGABRT")

    rust("rust-run-alloc-failure", "oom", "lexiheap",
         {"Cargo.toml": _cargo_toml("lexiheap"), "src/lib.rs": LEXIHEAP_LIB,
          "src/bin/lexiheap-index.rs": LEXIHEAP_INDEX_MAIN,
          "data/words.idx": "words=68719476736\n0\n17\n42\n", "scripts/load-index.sh": LEXIHEAP_LOAD},
         [rust_version, ("Build", "cargo build --release"), ("Load index", "./scripts/load-index.sh data/words.idx")],
         note="a corrupt header makes the loader reserve 64 Gi u64 offsets (512 GiB) under a 4 GiB "
              "address-space limit: 'memory allocation of N bytes failed', then abort")

    return out
