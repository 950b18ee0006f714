"""Java cases: Maven (JUnit 5 via Surefire, javac via maven-compiler-plugin, enforcer, checkstyle) and plain
``javac``/``java``, run with the machine's JDK 17 and Maven against Maven Central.

Three made-up projects: ``quillfern`` (a small ledger library, Maven), ``tidewick`` (a tiny job scheduler,
Maven) and ``cobblemint`` (command-line tools built with plain ``javac``). Every Maven build pins the plugins
it uses, so the default lifecycle's ancient defaults (Surefire 2.12, which cannot see JUnit 5) never run.
Gradle is not on this machine, so no Gradle case is built.
"""

from __future__ import annotations

from textwrap import dedent

from ..case import Case, Step, Tools

__all__ = ["cases"]

MVN_BUILD = "mvn -B -ntp package"
MVN_TEST = "mvn -B -ntp test"

_JUNIT = "5.10.2"
_PLUGINS = {
    "maven-resources-plugin": "3.3.1",
    "maven-compiler-plugin": "3.13.0",
    "maven-surefire-plugin": "3.2.5",
    "maven-jar-plugin": "3.4.1",
    "maven-enforcer-plugin": "3.4.1",
    "maven-checkstyle-plugin": "3.3.1",
}


def _plugin(artifact: str, body: str = "") -> str:
    return (f"      <plugin>\n        <groupId>org.apache.maven.plugins</groupId>\n"
            f"        <artifactId>{artifact}</artifactId>\n        <version>{_PLUGINS[artifact]}</version>\n"
            + (body if body.endswith("\n") or not body else body + "\n") + "      </plugin>\n")


def _pom(project: str, *, deps: str = "", plugins: str = "", compiler: str = "") -> str:
    """A small, ordinary Maven pom: JDK 17, JUnit 5, the default lifecycle's plugins pinned."""
    managed = "".join(_plugin(a) for a in ("maven-resources-plugin", "maven-jar-plugin", "maven-surefire-plugin"))
    compiler_plugin = _plugin("maven-compiler-plugin", compiler)
    return dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <project xmlns="http://maven.apache.org/POM/4.0.0"
                 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                 xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
          <modelVersion>4.0.0</modelVersion>

          <groupId>org.example.{project}</groupId>
          <artifactId>{project}</artifactId>
          <version>1.0.0</version>
          <packaging>jar</packaging>

          <properties>
            <maven.compiler.release>17</maven.compiler.release>
            <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
          </properties>

          <dependencies>
        """) + deps + dedent(f"""\
            <dependency>
              <groupId>org.junit.jupiter</groupId>
              <artifactId>junit-jupiter</artifactId>
              <version>{_JUNIT}</version>
              <scope>test</scope>
            </dependency>
          </dependencies>

          <build>
            <pluginManagement>
              <plugins>
        """) + managed + dedent("""\
              </plugins>
            </pluginManagement>
            <plugins>
        """) + compiler_plugin + plugins + dedent("""\
            </plugins>
          </build>
        </project>
        """)


# --------------------------------------------------------------------------------------------- quillfern

_QF = "src/main/java/org/example/quillfern"
_QF_TEST = "src/test/java/org/example/quillfern"

_QF_ENTRY = dedent("""\
    package org.example.quillfern;

    /** One posting: a signed amount in cents against an account. */
    public record Entry(String account, long cents, String memo) {
        public Entry {
            if (account == null || account.isBlank()) {
                throw new IllegalArgumentException("account must not be blank");
            }
        }

        public static Entry credit(String account, long cents, String memo) {
            return new Entry(account, cents, memo);
        }

        public static Entry debit(String account, long cents, String memo) {
            return new Entry(account, -cents, memo);
        }
    }
    """)


def _qf_ledger(balance_body: str) -> str:
    return dedent("""\
        package org.example.quillfern;

        import java.util.ArrayList;
        import java.util.Collections;
        import java.util.List;

        /** An append-only list of postings with per-account balances. */
        public final class Ledger {
            private final List<Entry> entries = new ArrayList<>();

            public Ledger post(Entry entry) {
                entries.add(entry);
                return this;
            }

            public List<Entry> entries() {
                return Collections.unmodifiableList(entries);
            }

            public long balance(String account) {
        """) + balance_body + dedent("""\
            }

            public int size() {
                return entries.size();
            }
        }
        """)


_QF_BALANCE_OK = dedent("""\
            long total = 0;
            for (Entry e : entries) {
                if (e.account().equals(account)) {
                    total += e.cents();
                }
            }
            return total;
""")

# the bug: debits are stored negative already, and are subtracted again
_QF_BALANCE_BUG = dedent("""\
            long total = 0;
            for (Entry e : entries) {
                if (e.account().equals(account)) {
                    total += e.cents() < 0 ? e.cents() * 2 : e.cents();
                }
            }
            return total;
""")

# the bug: Entry is a record (cents()), the code still calls the old getter
_QF_BALANCE_OLD_GETTER = dedent("""\
            long total = 0;
            for (Entry e : entries) {
                if (e.account().equals(account)) {
                    total += e.getCents();
                }
            }
            return total;
""")

_QF_LEDGER_TEST = dedent("""\
    package org.example.quillfern;

    import static org.junit.jupiter.api.Assertions.assertEquals;
    import static org.junit.jupiter.api.Assertions.assertThrows;

    import org.junit.jupiter.api.Test;

    class LedgerTest {
        @Test
        void emptyLedgerHasZeroBalance() {
            assertEquals(0L, new Ledger().balance("cash"));
        }

        @Test
        void creditsAndDebitsNetOut() {
            Ledger ledger = new Ledger()
                    .post(Entry.credit("cash", 20_000, "opening"))
                    .post(Entry.debit("cash", 5_000, "stationery"));
            assertEquals(15_000L, ledger.balance("cash"), "balance of cash after one debit");
        }

        @Test
        void blankAccountIsRejected() {
            assertThrows(IllegalArgumentException.class, () -> Entry.credit(" ", 1, "x"));
        }
    }
    """)


def _quillfern(balance_body: str = _QF_BALANCE_OK, **pom: str) -> dict[str, str]:
    return {
        "pom.xml": _pom("quillfern", **pom),
        f"{_QF}/Entry.java": _QF_ENTRY,
        f"{_QF}/Ledger.java": _qf_ledger(balance_body),
        f"{_QF_TEST}/LedgerTest.java": _QF_LEDGER_TEST,
    }


_COMMONS_LANG = dedent("""\
        <dependency>
          <groupId>org.apache.commons</groupId>
          <artifactId>commons-lang3</artifactId>
          <version>{version}</version>
        </dependency>
""")

_QF_REPORT = dedent("""\
    package org.example.quillfern;

    import org.apache.commons.lang3.StringUtils;

    /** Prints a fixed-width balance report: `java -cp quillfern.jar org.example.quillfern.Report`. */
    public final class Report {
        private Report() {
        }

        static String line(String account, long cents) {
            return StringUtils.rightPad(account, 12, '.') + StringUtils.leftPad(Long.toString(cents), 10);
        }

        public static void main(String[] args) {
            Ledger ledger = new Ledger()
                    .post(Entry.credit("cash", 20_000, "opening"))
                    .post(Entry.debit("cash", 5_000, "stationery"))
                    .post(Entry.credit("sales", 7_500, "invoice 12"));
            for (String account : new String[] {"cash", "sales"}) {
                System.out.println(line(account, ledger.balance(account)));
            }
        }
    }
    """)

_ENFORCER_JAVA_99 = _plugin("maven-enforcer-plugin", dedent("""\
        <executions>
          <execution>
            <id>enforce-toolchain</id>
            <goals>
              <goal>enforce</goal>
            </goals>
            <configuration>
              <rules>
                <requireJavaVersion>
                  <version>[99,)</version>
                </requireJavaVersion>
                <requireMavenVersion>
                  <version>[3.6,)</version>
                </requireMavenVersion>
              </rules>
            </configuration>
          </execution>
        </executions>
"""))


# --------------------------------------------------------------------------------------------- tidewick

_TW = "src/main/java/org/example/tidewick"
_TW_TEST = "src/test/java/org/example/tidewick"

_TW_INTERVAL = dedent("""\
    package org.example.tidewick;

    import java.time.Duration;

    /** Parses job intervals such as "90s", "15m", "2h" or "1d". */
    public final class Interval {
        private Interval() {
        }

        public static Duration parse(String text) {
            String t = text.trim();
            if (t.length() < 2) {
                throw new IllegalArgumentException("bad interval: " + text);
            }
            long n = Long.parseLong(t.substring(0, t.length() - 1));
            return switch (t.charAt(t.length() - 1)) {
                case 's' -> Duration.ofSeconds(n);
                case 'm' -> Duration.ofMinutes(n);
                case 'h' -> Duration.ofHours(n);
                case 'd' -> Duration.ofHours(n * 24);
                default -> throw new IllegalArgumentException("bad unit in interval: " + text);
            };
        }
    }
    """)

# the bug: a day is taken as 12 hours
_TW_INTERVAL_BUG = _TW_INTERVAL.replace("Duration.ofHours(n * 24)", "Duration.ofHours(n * 12)")

_TW_INTERVAL_TEST = dedent("""\
    package org.example.tidewick;

    import static org.junit.jupiter.api.Assertions.assertEquals;

    import org.junit.jupiter.params.ParameterizedTest;
    import org.junit.jupiter.params.provider.CsvSource;

    class IntervalTest {
        @ParameterizedTest(name = "{0} is {1} seconds")
        @CsvSource({
            "90s, 90",
            "15m, 900",
            "2h, 7200",
            "1d, 86400",
        })
        void parsesUnits(String text, long seconds) {
            assertEquals(seconds, Interval.parse(text).toSeconds());
        }
    }
    """)

_TW_QUEUE = dedent("""\
    package org.example.tidewick;

    import java.util.ArrayDeque;
    import java.util.Deque;
    import java.util.HashMap;
    import java.util.Map;

    /** Jobs waiting to run, and the name of each job that has been claimed by a worker. */
    public final class JobQueue {
        private final Deque<String> waiting = new ArrayDeque<>();
        private final Map<String, String> claimedBy = new HashMap<>();

        public synchronized void submit(String job) {
            waiting.addLast(job);
            notifyAll();
        }

        public synchronized String claim(String worker) {
            String job = waiting.pollFirst();
            claimedBy.put(job, worker);
            return job;
        }

        /** Blocks until a job is waiting. */
        public synchronized String take(String worker) throws InterruptedException {
            while (waiting.isEmpty()) {
                wait();
            }
            return claim(worker);
        }

        public synchronized String owner(String job) {
            String worker = claimedBy.get(job);
            if (worker == null) {
                throw new IllegalStateException("job " + job + " was never claimed");
            }
            return worker;
        }

        public synchronized int waiting() {
            return waiting.size();
        }
    }
    """)

_TW_QUEUE_TEST = dedent("""\
    package org.example.tidewick;

    import static org.junit.jupiter.api.Assertions.assertEquals;
    import static org.junit.jupiter.api.Assertions.assertNull;

    import org.junit.jupiter.api.Test;

    class JobQueueTest {
        @Test
        void claimsInSubmissionOrder() {
            JobQueue q = new JobQueue();
            q.submit("reindex");
            q.submit("vacuum");
            assertEquals("reindex", q.claim("w1"));
            assertEquals("w1", q.owner("reindex"));
            assertEquals(1, q.waiting());
        }

        @Test
        void claimOnEmptyQueueReturnsNothing() {
            JobQueue q = new JobQueue();
            assertNull(q.claim("w1"));
            assertEquals("w1", q.owner("reindex"));
        }
    }
    """)

_TW_WORKER_TEST = dedent("""\
    package org.example.tidewick;

    import static org.junit.jupiter.api.Assertions.assertEquals;

    import java.util.concurrent.TimeUnit;
    import org.junit.jupiter.api.Test;
    import org.junit.jupiter.api.Timeout;

    class WorkerTest {
        @Test
        @Timeout(value = 3, unit = TimeUnit.SECONDS)
        void workerTakesSubmittedJob() throws Exception {
            JobQueue q = new JobQueue();
            Thread producer = new Thread(() -> q.submit("compact"));
            // the producer is never started, so take() waits for a job that never comes
            assertEquals("compact", q.take("w1"));
        }

        @Test
        @Timeout(value = 3, unit = TimeUnit.SECONDS)
        void takeReturnsWaitingJobImmediately() throws Exception {
            JobQueue q = new JobQueue();
            q.submit("compact");
            assertEquals("compact", q.take("w1"));
        }
    }
    """)

_TW_SCHEDULE = dedent("""\
    package org.example.tidewick;

    import java.time.Duration;
    import java.util.ArrayList;
    import java.util.Collections;
    import java.util.List;

    /** The jobs of a schedule, each with its interval. */
    public final class Schedule {
        private final List names = new ArrayList();
        private final List<Duration> every = new ArrayList<>();

        public Schedule add(String name, String interval) {
            names.add(name);
            every.add(Interval.parse(interval));
            return this;
        }

        public List<String> names() {
            return Collections.unmodifiableList(names);
        }

        public Duration every(int i) {
            return every.get(i);
        }
    }
    """)

_TW_WERROR = dedent("""\
        <configuration>
          <compilerArgs>
            <arg>-Xlint:all</arg>
            <arg>-Werror</arg>
          </compilerArgs>
        </configuration>
""")

_TW_CHECKSTYLE_XML = dedent("""\
    <?xml version="1.0"?>
    <!DOCTYPE module PUBLIC
        "-//Checkstyle//DTD Checkstyle Configuration 1.3//EN"
        "https://checkstyle.org/dtds/configuration_1_3.dtd">
    <module name="Checker">
      <property name="severity" value="error"/>
      <module name="FileTabCharacter"/>
      <module name="LineLength">
        <property name="max" value="120"/>
      </module>
      <module name="TreeWalker">
        <module name="UnusedImports"/>
        <module name="AvoidStarImport"/>
        <module name="NeedBraces"/>
        <module name="ConstantName"/>
      </module>
    </module>
    """)

_TW_CHECKSTYLE_PLUGIN = _plugin("maven-checkstyle-plugin", dedent("""\
        <configuration>
          <configLocation>checkstyle.xml</configLocation>
          <consoleOutput>true</consoleOutput>
          <failOnViolation>true</failOnViolation>
          <violationSeverity>warning</violationSeverity>
          <includeTestSourceDirectory>true</includeTestSourceDirectory>
        </configuration>
"""))

# a formatting slip the style check catches: star import, unused import, if without braces, a lower-case constant
_TW_RETRY = dedent("""\
    package org.example.tidewick;

    import java.time.*;
    import java.util.List;

    /** Exponential back-off for failed jobs. */
    public final class Retry {
        private static final int maxAttempts = 5;

        private Retry() {
        }

        public static Duration delay(int attempt) {
            if (attempt >= maxAttempts) return Duration.ZERO;
            return Duration.ofSeconds(1L << attempt);
        }
    }
    """)


def _tidewick(**extra: str) -> dict[str, str]:
    files = {
        "pom.xml": _pom("tidewick"),
        f"{_TW}/Interval.java": _TW_INTERVAL,
        f"{_TW}/JobQueue.java": _TW_QUEUE,
        f"{_TW_TEST}/IntervalTest.java": _TW_INTERVAL_TEST,
    }
    files.update(extra)
    return files


# --------------------------------------------------------------------------------------------- cobblemint

_CM = "src/org/example/cobblemint"
_JAVAC = "javac -d out $(find src -name '*.java')"

_CM_TALLY = dedent("""\
    package org.example.cobblemint;

    import java.util.Map;
    import java.util.TreeMap;

    /** Counts words read from the arguments and prints them in order. */
    public final class Tally {
        private Tally() {
        }

        public static Map<String, Integer> count(String[] words) {
            Map<String, Integer> counts = new TreeMap<>();
            for (String w : words) {
                counts.merge(w.toLowerCase(), 1, Integer::sum);
            }
            return counts;
        }

        public static void main(String[] args) {
            Map<String, Integer> counts = count(args);
            int total = 0;
            for (Map.Entry<String, Integer> e : counts.entrySet()) {
                System.out.println(e.getKey() + " " + e.getValue());
                total += e.getValue();
            }
            System.out.println("total " + total);
        }
    }
    """)

_CM_TALLY_BAD = _CM_TALLY.replace(
    'int total = 0;', 'int total = "0";').replace(
    'System.out.println("total " + total);', 'String width = total;\n        System.out.println("total " + width);')

# keeps every block it reads, as a naive "read the whole file into memory" tool would
_CM_SLURP = dedent("""\
    package org.example.cobblemint;

    import java.util.ArrayList;
    import java.util.List;

    /** Builds an in-memory index of synthetic log blocks. */
    public final class Slurp {
        private Slurp() {
        }

        public static void main(String[] args) {
            int blocks = args.length > 0 ? Integer.parseInt(args[0]) : 1_000_000;
            List<byte[]> kept = new ArrayList<>();
            long bytes = 0;
            for (int i = 0; i < blocks; i++) {
                byte[] block = new byte[64 * 1024];
                block[i % block.length] = (byte) i;
                kept.add(block);
                bytes += block.length;
                if (i % 64 == 0) {
                    System.out.println("indexed " + (bytes >> 20) + " MiB");
                }
            }
            System.out.println("done: " + kept.size() + " blocks");
        }
    }
    """)

# an off-heap buffer written through a stale (zero) address
_CM_RAWBUF = dedent("""\
    package org.example.cobblemint;

    import java.lang.reflect.Field;
    import sun.misc.Unsafe;

    /** A tiny off-heap ring buffer for counters. */
    public final class RawBuffer {
        private static final Unsafe UNSAFE = unsafe();
        private long address;

        private static Unsafe unsafe() {
            try {
                Field f = Unsafe.class.getDeclaredField("theUnsafe");
                f.setAccessible(true);
                return (Unsafe) f.get(null);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        public void open(int slots) {
            address = UNSAFE.allocateMemory(8L * slots);
        }

        public void close() {
            UNSAFE.freeMemory(address);
            address = 0;
        }

        public void put(int slot, long value) {
            UNSAFE.putLong(address + 8L * slot, value);
        }

        public static void main(String[] args) {
            RawBuffer buf = new RawBuffer();
            buf.open(16);
            buf.put(0, 42);
            buf.close();
            System.out.println("buffer closed, flushing counters");
            buf.put(1, 7);  // use after close: writes to address 8
            System.out.println("unreachable");
        }
    }
    """)


# --------------------------------------------------------------------------------------------- the cases

def cases(tools: Tools) -> list[Case]:
    del tools  # java, javac and mvn come from the machine's PATH
    build = Step("Build", MVN_BUILD)
    test = Step("Test", MVN_TEST)
    compile_ = Step("Compile", _JAVAC)
    return [
        # ---- quillfern (Maven, JUnit 5)
        Case(
            name="java-maven-junit-assertion", ecosystem="java", category="test_failure", project="quillfern",
            files=_quillfern(_QF_BALANCE_BUG),
            steps=(Step("Compile", "mvn -B -ntp compile"), test),
            note="LedgerTest.creditsAndDebitsNetOut: debits are subtracted twice (expected 15000, was 10000)",
        ),
        Case(
            name="java-maven-cannot-find-symbol", ecosystem="java", category="compilation_error",
            project="quillfern", files=_quillfern(_QF_BALANCE_OLD_GETTER),
            steps=(build,),
            note="Entry became a record; Ledger still calls the removed getCents() getter",
        ),
        Case(
            name="java-maven-missing-version", ecosystem="java", category="dependency_resolution",
            project="quillfern",
            files={**_quillfern(deps=_COMMONS_LANG.format(version="3.99.1")), f"{_QF}/Report.java": _QF_REPORT},
            # -U: a repeated run asks Central again instead of reporting the cached miss, so the log repeats
            steps=(Step("Build", "mvn -B -ntp -U package"),),
            note="commons-lang3 3.99.1 was never published",
        ),
        Case(
            name="java-maven-enforcer-java-version", ecosystem="java", category="build_config",
            project="quillfern", files=_quillfern(plugins=_ENFORCER_JAVA_99),
            steps=(Step("Verify", "mvn -B -ntp verify"),),
            note="maven-enforcer requireJavaVersion [99,) on a JDK 17 runner",
        ),
        Case(
            name="java-jar-noclassdeffound", ecosystem="java", category="dependency_missing",
            project="quillfern",
            files={**_quillfern(deps=_COMMONS_LANG.format(version="3.14.0")), f"{_QF}/Report.java": _QF_REPORT},
            steps=(Step("Build", "mvn -B -ntp -q package"),
                   Step("Report", "java -cp target/quillfern-1.0.0.jar org.example.quillfern.Report")),
            note="the thin jar is run without commons-lang3 on the class path",
        ),
        # ---- tidewick (Maven, JUnit 5)
        Case(
            name="java-maven-junit-parameterized", ecosystem="java", category="test_failure",
            project="tidewick", files=_tidewick(**{f"{_TW}/Interval.java": _TW_INTERVAL_BUG}),
            steps=(test,),
            note="IntervalTest.parsesUnits [4] 1d: a day is parsed as 12 hours",
        ),
        Case(
            name="java-maven-junit-exception", ecosystem="java", category="test_failure", project="tidewick",
            files=_tidewick(**{f"{_TW_TEST}/JobQueueTest.java": _TW_QUEUE_TEST}),
            steps=(test,),
            note="JobQueueTest.claimOnEmptyQueueReturnsNothing throws IllegalStateException (Surefire: Errors: 1)",
        ),
        Case(
            name="java-maven-junit-timeout", ecosystem="java", category="test_timeout", project="tidewick",
            files=_tidewick(**{f"{_TW_TEST}/WorkerTest.java": _TW_WORKER_TEST}),
            steps=(test,),
            note="WorkerTest.workerTakesSubmittedJob blocks in take(); JUnit's @Timeout(3 s) stops it",
        ),
        Case(
            name="java-maven-werror-rawtypes", ecosystem="java", category="compilation_error",
            project="tidewick",
            files={**_tidewick(), "pom.xml": _pom("tidewick", compiler=_TW_WERROR),
                   f"{_TW}/Schedule.java": _TW_SCHEDULE},
            steps=(build,),
            note="-Xlint:all -Werror: a raw List in Schedule turns warnings into a failed compile",
        ),
        Case(
            name="java-maven-invalid-pom", ecosystem="java", category="build_config", project="tidewick",
            files={**_tidewick(),
                   "pom.xml": _pom("tidewick").replace("<version>1.0.0</version>", "<version>1.0.0</verison>", 1)},
            steps=(build,),
            note="a misspelt closing tag makes pom.xml unparseable",
        ),
        Case(
            name="java-maven-checkstyle", ecosystem="java", category="lint_style", project="tidewick",
            files={**_tidewick(), "pom.xml": _pom("tidewick", plugins=_TW_CHECKSTYLE_PLUGIN),
                   "checkstyle.xml": _TW_CHECKSTYLE_XML, f"{_TW}/Retry.java": _TW_RETRY},
            steps=(Step("Checkstyle", "mvn -B -ntp checkstyle:check"),),
            note="maven-checkstyle-plugin check: star import, unused import, if without braces, constant name",
        ),
        # ---- cobblemint (plain javac / java)
        Case(
            name="java-javac-incompatible-types", ecosystem="java", category="compilation_error",
            project="cobblemint", files={f"{_CM}/Tally.java": _CM_TALLY_BAD, f"{_CM}/Slurp.java": _CM_SLURP},
            steps=(compile_,),
            note="plain javac: String assigned to int and int to String",
        ),
        Case(
            name="java-heap-oom", ecosystem="java", category="oom", project="cobblemint",
            files={f"{_CM}/Tally.java": _CM_TALLY, f"{_CM}/Slurp.java": _CM_SLURP},
            steps=(compile_, Step("Index", "java -Xmx16m -cp out org.example.cobblemint.Slurp")),
            note="keeps every 64 KiB block under a 16 MiB heap",
        ),
        Case(
            name="java-jvm-crash-sigsegv", ecosystem="java", category="crash", project="cobblemint",
            files={f"{_CM}/Tally.java": _CM_TALLY, f"{_CM}/RawBuffer.java": _CM_RAWBUF},
            steps=(compile_, Step("Run", "java -cp out org.example.cobblemint.RawBuffer")),
            note="Unsafe.putLong through an address zeroed by close(): SIGSEGV, hs_err report, exit 134",
        ),
    ]
