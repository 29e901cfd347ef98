"""Tests of bench/report.py's verdict rule and outputs (python3 -m unittest discover -s bench)."""

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

TARGETS = """
[[target]]
bench = "demo"
workload = "w"
contender = "folio"
baseline = "base"
target = 0.9
direction = "higher"
label = "Demo row"

[[target]]
bench = "demo"
workload = "lat"
contender = "folio"
baseline = "base"
target = 1.0
direction = "lower"
label = "Latency row"

[bench.demo]
method = "A demo."
"""


def line(commit, date, folio, base, smoke=False, workload="w", higher_is_better=True):
    return {
        "bench": "demo", "commit": commit, "date": date,
        "machine": {"cpu": "x", "cores": 2, "kernel": "k"}, "params": {"smoke": smoke},
        "rows": [
            {"workload": workload, "contender": "folio", "unit": "IOPS",
             "higher_is_better": higher_is_better, "runs": folio},
            {"workload": workload, "contender": "base", "unit": "IOPS",
             "higher_is_better": higher_is_better, "runs": base},
        ],
    }


class VerdictRule(unittest.TestCase):
    def setUp(self):
        self.target = {"bench": "demo", "workload": "w", "contender": "folio",
                       "baseline": "base", "target": 0.9, "direction": "higher"}

    def invs(self, lines):
        return report.invocations_of(self.target, [("demo.jsonl", i + 1, l) for i, l in enumerate(lines)])

    def test_ratio_is_median_over_median_per_invocation(self):
        (inv,) = self.invs([line("a", "2026-01-01", [1, 9, 10], [10, 10, 100])])
        self.assertAlmostEqual(inv["ratio"], 9 / 10)

    def test_fewer_than_five_invocations_is_never_met(self):
        lines = [line("a", f"2026-01-0{i}", [100], [10]) for i in range(1, 5)]
        self.assertEqual(report.verdict(self.target, self.invs(lines))[0], "not enough runs")

    def test_median_of_five_ratios_decides(self):
        ratios = [1.0, 0.8, 0.95, 0.92, 0.85]  # median 0.92
        lines = [line("a", f"2026-01-0{i + 1}", [r * 100], [100]) for i, r in enumerate(ratios)]
        v, used, ratio = report.verdict(self.target, self.invs(lines))
        self.assertEqual((v, len(used)), ("met", 5))
        self.assertAlmostEqual(ratio, 0.92)
        ratios = [1.0, 0.8, 0.85, 0.88, 0.95]  # median 0.88
        lines = [line("a", f"2026-01-0{i + 1}", [r * 100], [100]) for i, r in enumerate(ratios)]
        self.assertEqual(report.verdict(self.target, self.invs(lines))[0], "missed")

    def test_only_the_newest_commit_counts(self):
        old = [line("old", f"2026-01-0{i}", [200], [100]) for i in range(1, 6)]
        new = [line("new", f"2026-02-0{i}", [50], [100]) for i in range(1, 6)]
        v, used, _ = report.verdict(self.target, self.invs(old + new))
        self.assertEqual(v, "missed")
        self.assertTrue(all(u["commit"] == "new" for u in used))

    def test_lower_is_better_direction(self):
        t = dict(self.target, direction="lower", target=1.0)
        lines = [line("a", f"2026-01-0{i}", [90], [100], higher_is_better=False)
                 for i in range(1, 6)]
        invs = report.invocations_of(t, [("demo.jsonl", i, l) for i, l in enumerate(lines)])
        self.assertEqual(report.verdict(t, invs)[0], "met")

    def test_lower_is_better_rows_need_direction_lower(self):
        # e.g. object-store requests per GiB written: at least 2x fewer is a ratio <= 0.5.
        t = dict(self.target, direction="lower", target=0.5)
        lines = [line("a", f"2026-01-0{i}", [40, 45, 50], [100], higher_is_better=False)
                 for i in range(1, 6)]
        invs = report.invocations_of(t, [("demo.jsonl", i, l) for i, l in enumerate(lines)])
        self.assertEqual(report.verdict(t, invs)[:1] + (len(invs),), ("met", 5))
        lines = [line("a", f"2026-01-0{i}", [60], [100], higher_is_better=False)
                 for i in range(1, 6)]
        invs = report.invocations_of(t, [("demo.jsonl", i, l) for i, l in enumerate(lines)])
        self.assertEqual(report.verdict(t, invs)[0], "missed")
        # The same rows under a "higher" target would be misread: the generator stops.
        with self.assertRaises(SystemExit):
            report.invocations_of(self.target, [("demo.jsonl", 1, lines[0])])


class AbsoluteTarget(unittest.TestCase):
    """A row with no baseline: the median of the contender's runs against a target in its unit."""

    def setUp(self):
        self.target = {"bench": "demo", "workload": "replay", "contender": "default",
                       "unit": "M accesses/CPU s", "target": 10, "direction": "higher",
                       "label": "Replay"}

    def lines(self, runs_per_invocation, unit="M accesses/CPU s", commit="a"):
        out = []
        for i, runs in enumerate(runs_per_invocation):
            out.append(("demo.jsonl", i + 1, {
                "bench": "demo", "commit": commit, "date": f"2026-01-0{i + 1}",
                "machine": {"cpu": "x", "cores": 2, "kernel": "k"}, "params": {},
                "rows": [{"workload": "replay", "contender": "default", "unit": unit,
                          "higher_is_better": True, "runs": runs},
                         {"workload": "replay", "contender": "other", "unit": unit,
                          "higher_is_better": True, "runs": [1000.0]}]}))
        return out

    def test_figure_is_the_median_of_the_contenders_runs(self):
        (inv,) = report.invocations_of(self.target, self.lines([[9, 12, 30]]))
        self.assertEqual(inv["ratio"], 12)
        self.assertNotEqual(inv["baseline"], inv["baseline"])  # NaN: there is none

    def test_median_over_five_invocations_decides(self):
        met = self.lines([[12], [9], [11], [10.5], [8]])  # median 10.5
        self.assertEqual(report.verdict(self.target, report.invocations_of(self.target, met))[0],
                         "met")
        missed = self.lines([[12], [9], [9.5], [10.5], [8]])  # median 9.5
        v, used, figure = report.verdict(self.target,
                                         report.invocations_of(self.target, missed))
        self.assertEqual((v, len(used), figure), ("missed", 5, 9.5))
        four = self.lines([[50]] * 4)
        self.assertEqual(report.verdict(self.target, report.invocations_of(self.target, four))[0],
                         "not enough runs")

    def test_a_row_in_another_unit_stops_the_generator(self):
        with self.assertRaises(SystemExit):
            report.invocations_of(self.target, self.lines([[12e6]], unit="accesses/CPU s"))

    def test_table_shows_no_baseline_and_the_unit(self):
        table = report.readme_table([self.target], self.lines([[12]] * 5))
        self.assertIn("| none (absolute target) | — | ≥ 10 M accesses/CPU s | **met** |", table)


class Outputs(unittest.TestCase):
    def test_generates_readme_table_and_docs_and_check_detects_staleness(self):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "bench/results").mkdir(parents=True)
            (root / "docs").mkdir()
            (root / "bench/targets.toml").write_text(TARGETS)
            (root / "README.md").write_text(f"# x\n\n{report.BEGIN}\nold\n{report.END}\n\ntail\n")
            lines = [line("c", f"2026-01-0{i}", [95], [100]) for i in range(1, 6)]
            lines.append(line("c", "2026-01-09", [1], [100], smoke=True))
            (root / "bench/results/demo.jsonl").write_text(
                "".join(json.dumps(l) + "\n" for l in lines))
            script = str(Path(report.__file__))
            run = lambda *a: subprocess.run([sys.executable, script, "--root", d, *a],
                                            capture_output=True, text=True)
            self.assertNotEqual(run("--check").returncode, 0, "stale before generating")
            self.assertEqual(run().returncode, 0)
            self.assertEqual(run("--check").returncode, 0)
            readme = (root / "README.md").read_text()
            self.assertIn("**met**", readme)  # the smoke line (ratio 0.01) counted for nothing
            self.assertIn("not enough runs (0 of 5)", readme)  # the latency row has no runs
            self.assertTrue(readme.endswith("\n\ntail\n"))
            self.assertIn("A demo.", (root / "docs/benchmarks.md").read_text())

    def test_an_absolute_target_without_its_unit_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "bench/results").mkdir(parents=True)
            (root / "docs").mkdir()
            (root / "README.md").write_text(f"{report.BEGIN}\n{report.END}\n")
            absolute = ('[[target]]\nbench = "demo"\nworkload = "replay"\ncontender = "default"\n'
                        'target = 10\nlabel = "Replay"\n')
            (root / "bench/targets.toml").write_text(absolute)
            script = str(Path(report.__file__))
            run = subprocess.run([sys.executable, script, "--root", d], capture_output=True,
                                 text=True)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("needs the 'unit'", run.stderr)
            (root / "bench/targets.toml").write_text(absolute + 'unit = "M accesses/CPU s"\n')
            run = subprocess.run([sys.executable, script, "--root", d], capture_output=True,
                                 text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn("≥ 10 M accesses/CPU s", (root / "README.md").read_text())


if __name__ == "__main__":
    unittest.main()
