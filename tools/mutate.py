"""Mutation testing of the core algorithms, with cosmic-ray.

``make mutate`` runs it (``make mutate MODULES="ops/merge.py detect/evaluation.py"`` for
some modules only); ``python tools/mutate.py --help`` tells the options.

What it does, per module of ``tools/mutation.toml``:

1. copies the working tree (tracked and untracked files, not the ignored ones) into
   ``build/mutation/sandbox-<pid>``: cosmic-ray rewrites the module on disk for each
   mutant, so the real tree is never touched and stays usable during a run;
2. lists the mutants with ``cosmic-ray init`` and keeps those in scope: the operators
   named in the settings, the module's listed functions (all of them when none is
   listed), never inside a decorator, a ``numba`` call's arguments or a ``raise``
   statement (its message);
3. runs the module's tests once unmutated (they must pass; their time sets the
   timeout), then ``cosmic-ray exec``: each mutant is written into the file and the
   module's own tests run against it (``pytest -x``);
4. writes ``build/mutation/modules/<module>.json`` and rebuilds the report from every
   module's latest result: ``build/mutation/report.md`` and ``report.json``.

A surviving mutant listed in ``tools/mutation_equivalents.toml`` (module, operator,
the line before and after) counts as *equivalent*: it is left out of the score and
listed with its reason. Score = killed / (killed + survived).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `mutate` extra brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tools" / "mutation.toml"
EQUIVALENTS = ROOT / "tools" / "mutation_equivalents.toml"
PACKAGE = "overfeat_scratch"


def slug(module: str) -> str:
    return module.replace("/", "__").removesuffix(".py")


# --------------------------------------------------------------------------------------
# Which mutants are in scope


def line_ranges(tree: ast.Module, functions: list[str], skip: list[str]) -> tuple:
    """``(keep, drop, spans)``: line ranges ``(first, last)`` of the listed functions
    (all the code but the module docstring when none is listed), and of what is never
    mutated: functions whose name matches a pattern of ``skip`` (argument checks),
    decorators, ``numba.*(...)`` calls, ``raise`` statements and docstrings; and the
    ``(line, column)`` spans of type annotations (never evaluated here)."""
    keep, drop, spans = [], [], []
    wanted = set(functions)
    found = set()

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if name in wanted:
                    keep.append((child.lineno, child.end_lineno))
                    found.add(name)
                if any(fnmatch.fnmatchcase(child.name, pattern) for pattern in skip):
                    drop.append((child.lineno, child.end_lineno))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    if wanted - found:
        raise SystemExit(f"mutation.toml: no such function(s): {sorted(wanted - found)}")
    if not functions:
        body = tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        keep = [(body[0].lineno, body[-1].end_lineno)] if body else []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            spans.append(span(node.annotation))
        elif isinstance(node, ast.FunctionDef) and node.returns is not None:
            spans.append(span(node.returns))
        elif isinstance(node, ast.AnnAssign):
            spans.append(span(node.annotation))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for dec in node.decorator_list:
                drop.append((dec.lineno, dec.end_lineno))
        elif isinstance(node, ast.Raise):
            drop.append((node.lineno, node.end_lineno))
        elif isinstance(node, ast.Call) and ast.unparse(node.func).startswith("numba."):
            drop.append((node.lineno, node.end_lineno))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            drop.append((node.lineno, node.end_lineno))  # docstrings
    return keep, drop, spans


def span(node) -> tuple:
    return (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)


def inside(line: int, ranges) -> bool:
    return any(a <= line <= b for a, b in ranges)


def inside_span(position: tuple, spans) -> bool:
    return any((l0, c0) <= position < (l1, c1) for l0, c0, l1, c1 in spans)


def changed_lines(before: str, after: str) -> tuple[str, str]:
    """The lines a mutant changes, stripped and joined: ``(original, mutated)``."""
    old, new = before.splitlines(), after.splitlines()
    minus, plus = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        if tag != "equal":
            minus += [s.strip() for s in old[i1:i2]]
            plus += [s.strip() for s in new[j1:j2]]
    return " / ".join(minus), " / ".join(plus)


def sampled(module: str, operator: str, line: int, after: str, fraction: float) -> bool:
    """Whether a mutant is in a module's sample: a fixed pseudo-random choice (a hash
    of the mutant), the same at every run."""
    key = f"{module}|{operator}|{line}|{after}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") < fraction * 2**64


def mutant_key(m: dict) -> tuple:
    return (m["operator"], m["line"], m["before"], m["after"])


def load_equivalents() -> list[dict]:
    if not EQUIVALENTS.exists():
        return []
    with EQUIVALENTS.open("rb") as f:
        entries = tomllib.load(f).get("equivalent", [])
    for e in entries:
        missing = {"module", "operator", "line", "mutant", "reason"} - set(e)
        if missing:
            raise SystemExit(f"{EQUIVALENTS.name}: entry {e} lacks {sorted(missing)}")
    return entries


def find_equivalent(entries, module, operator, line, mutant):
    for e in entries:
        if (e["module"], e["operator"], e["line"], e["mutant"]) == (
            module,
            operator,
            line,
            mutant,
        ):
            return e
    return None


# --------------------------------------------------------------------------------------
# Running one module


def make_sandbox(out: Path) -> Path:
    """A copy of the working tree (tracked and untracked files, ignored ones left out)."""
    sandbox = out / f"sandbox-{os.getpid()}"
    if sandbox.exists():
        shutil.rmtree(sandbox)
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        src = ROOT / name.decode()
        if src.is_file():
            dst = sandbox / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return sandbox


def test_command(python: str, tests: list[str]) -> list[str]:
    return [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


def run_module(
    entry: dict,
    settings: dict,
    sandbox: Path,
    out: Path,
    python: str,
    dry_run: bool = False,
    full: bool = False,
    survivors: bool = False,
) -> dict | None:
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    module = entry["path"]
    name = slug(module)
    rel = f"{PACKAGE}/{module}"
    source = (sandbox / rel).read_text()
    keep, drop, spans = line_ranges(
        ast.parse(source), entry.get("functions", []), settings.get("skip_functions", [])
    )
    include = re.compile("|".join(f"(?:{p})" for p in settings["operators"]))
    equivalents = load_equivalents()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    # The module's tests must pass unmutated; their time sets the timeout.
    # One string, split by cosmic-ray as it is split here (shlex).
    command = shlex.join(test_command(python, entry["tests"]))
    baseline_s = 0.0
    if not dry_run:
        start = time.perf_counter()
        baseline = subprocess.run(
            shlex.split(command), cwd=sandbox, env=env, capture_output=True, text=True
        )
        baseline_s = time.perf_counter() - start
        passed = re.search(r"(\d+) passed", baseline.stdout)
        if baseline.returncode != 0 or not passed:
            raise SystemExit(f"{module}: the tests fail unmutated:\n{baseline.stdout[-3000:]}")
        print(f"[{module}] {passed.group(1)} tests pass unmutated", flush=True)
    timeout = max(settings["timeout_min_s"], settings["timeout_factor"] * baseline_s)
    print(f"[{module}] baseline {baseline_s:.1f} s, timeout {timeout:.0f} s", flush=True)

    (out / "db").mkdir(parents=True, exist_ok=True)
    config = out / "db" / f"{name}.toml"
    db_path = out / "db" / f"{name}.sqlite"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{rel}"\n'
        f"timeout = {timeout:.1f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "\n[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    if db_path.exists():
        db_path.unlink()
    cosmic = str(Path(python).parent / "cosmic-ray")
    subprocess.run([cosmic, "init", str(config), str(db_path)], cwd=sandbox, check=True)

    # Keep the mutants in scope; the others are marked skipped before the run.
    info = {}
    seen = set()
    sample = 1.0 if full else float(entry.get("sample", 1.0))
    n_unsampled = 0
    # With `survivors`, the mutants the last run killed stay killed (tests are only
    # ever added) and only the others run again.
    carried, kept = {}, []
    previous_path = out / "modules" / f"{name}.json"
    if survivors and previous_path.exists():
        previous = json.loads(previous_path.read_text())
        for m in previous["results"]:
            if m["status"] in ("killed", "timeout", "crashed"):
                carried[mutant_key(m)] = m
        previous_time = previous["time_s"]
    else:
        previous_time = 0.0
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            (m,) = item.mutations
            line = m.start_pos[0]
            reason = None
            if not include.fullmatch(m.operator_name):
                reason = "operator"
            elif m.operator_name == "core/NumberReplacer" and m.occurrence % 2:
                reason = "operator"  # each number once: n + 1 (occurrence 2k), not n - 1
            elif not inside(line, keep) or inside(line, drop):
                reason = "scope"
            elif inside_span(tuple(m.start_pos), spans):
                reason = "annotation"
            else:
                mutated = mutate_code(source, get_operator(m.operator_name)(), m.occurrence)
                if mutated is None or mutated == source:
                    reason = "no change"
                elif mutated in seen:
                    reason = "duplicate"
                else:
                    seen.add(mutated)
                    before, after = changed_lines(source, mutated)
                    if sample < 1.0 and not sampled(module, m.operator_name, line, after, sample):
                        reason = "not in the sample"
                        n_unsampled += 1
                    else:
                        mutant = dict(
                            operator=m.operator_name, line=line, before=before, after=after
                        )
                        key = mutant_key(mutant)
                        if key in carried:
                            reason = "killed before"
                            kept.append(carried[key])
                        else:
                            info[item.job_id] = mutant
            if reason:
                db.set_result(
                    item.job_id,
                    WorkResult(
                        output=f"out of scope: {reason}", worker_outcome=WorkerOutcome.SKIPPED
                    ),
                )
    print(
        f"[{module}] {len(info)} mutants to run (of {len(info) + len(kept) + n_unsampled} in "
        f"scope; {len(kept)} killed by an earlier run)",
        flush=True,
    )
    if dry_run:
        for mutant in sorted(info.values(), key=lambda m: (m["line"], m["operator"])):
            print(f"  {mutant['line']:5d} {mutant['operator']}: {mutant['after']}")
        return None

    start = time.perf_counter()
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        subprocess.run(
            [cosmic, "exec", str(config), str(db_path)],
            cwd=sandbox,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    elapsed = time.perf_counter() - start
    if (sandbox / rel).read_text() != source:
        raise SystemExit(f"{module}: the sandbox copy was left mutated")

    mutants = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if item.job_id not in info:
                continue
            m = info[item.job_id]
            if result.worker_outcome != WorkerOutcome.NORMAL:
                status = "error"
            elif result.test_outcome == TestOutcome.SURVIVED:
                status = "survived"
            elif result.output == "timeout":
                status = "timeout"
            elif not TEST_FAILURE.search(result.output or ""):
                # The command ran the tests unmutated, so a failure without pytest's
                # summary is the test process dying (a compiled loop reading out of
                # bounds): a kill, counted apart.
                status = "crashed"
            else:
                status = "killed"
            equivalent = find_equivalent(
                equivalents, module, m["operator"], m["before"], m["after"]
            )
            if status == "survived" and equivalent:
                status = "equivalent"
            mutants.append(
                dict(
                    m,
                    status=status,
                    reason=equivalent["reason"] if equivalent and status == "equivalent" else None,
                    stale_equivalent=bool(equivalent) and status != "equivalent",
                    diff=result.diff if status in ("survived", "equivalent", "error") else None,
                    output=(result.output or "")[-1500:]
                    if status in ("error", "crashed")
                    else None,
                )
            )
    mutants += kept
    elapsed += previous_time if kept else 0.0
    mutants.sort(key=lambda m: (m["line"], m["operator"]))
    counts = {s: sum(m["status"] == s for m in mutants) for s in STATUSES}
    killed = counts["killed"] + counts["timeout"] + counts["crashed"]
    scored = killed + counts["survived"]
    record = dict(
        module=module,
        functions=entry.get("functions", []),
        tests=entry["tests"],
        command=command,
        baseline_s=round(baseline_s, 1),
        time_s=round(elapsed, 1),
        mutants=len(mutants),
        in_scope=len(mutants) + n_unsampled,
        sample=sample,
        killed=killed,
        survived=counts["survived"],
        equivalent=counts["equivalent"],
        timeouts=counts["timeout"],
        crashes=counts["crashed"],
        errors=counts["error"],
        score=round(killed / scored, 4) if scored else None,
        results=mutants,
    )
    path = out / "modules" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(
        f"[{module}] {len(mutants)} mutants: {killed} killed, {counts['survived']} survived, "
        f"{counts['equivalent']} equivalent, {counts['error']} errors, {elapsed:.0f} s",
        flush=True,
    )
    return record


STATUSES = ("killed", "timeout", "crashed", "survived", "equivalent", "error")
# pytest's summary of a run with a failing test (or a test module that no longer
# imports); a bad command line prints none of these.
TEST_FAILURE = re.compile(r"\b\d+ (failed|errors?)\b|Interrupted: ")


# --------------------------------------------------------------------------------------
# The report


def percent(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def reclassify(record: dict, equivalents: list[dict]) -> dict:
    """A module's saved result under the current list of equivalent mutants: a survivor
    listed since counts as equivalent, an equivalent no longer listed as a survivor."""
    for m in record["results"]:
        if m["status"] not in ("survived", "equivalent"):
            continue
        entry = find_equivalent(
            equivalents, record["module"], m["operator"], m["before"], m["after"]
        )
        m["status"] = "equivalent" if entry else "survived"
        m["reason"] = entry["reason"] if entry else None
    survived = sum(m["status"] == "survived" for m in record["results"])
    record["survived"] = survived
    record["equivalent"] = sum(m["status"] == "equivalent" for m in record["results"])
    scored = record["killed"] + survived
    record["score"] = round(record["killed"] / scored, 4) if scored else None
    return record


def write_report(out: Path, modules: list[str]) -> None:
    equivalents = load_equivalents()
    records = []
    for module in modules:
        path = out / "modules" / f"{slug(module)}.json"
        if path.exists():
            records.append(reclassify(json.loads(path.read_text()), equivalents))
    total = {k: sum(r[k] for r in records) for k in ("mutants", "killed", "survived", "equivalent")}
    total["time_s"] = round(sum(r["time_s"] for r in records), 1)
    scored = total["killed"] + total["survived"]
    total["score"] = round(total["killed"] / scored, 4) if scored else None
    (out / "report.json").write_text(json.dumps(dict(total=total, modules=records), indent=1))

    lines = [
        "# Mutation testing report",
        "",
        "Made by `make mutate` (`tools/mutate.py`, cosmic-ray); score = killed / "
        "(killed + survived), equivalent mutants left out.",
        "",
        "| module | mutants | killed | survived | equivalent | score | time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        run = str(r["mutants"])
        if r.get("sample", 1.0) < 1.0:
            run += f" (sample of {r['in_scope']})"
        lines.append(
            f"| {r['module']} | {run} | {r['killed']} | {r['survived']} | "
            f"{r['equivalent']} | {percent(r['score'])} | {r['time_s']:.0f} s |"
        )
    lines.append(
        f"| **all** | {total['mutants']} | {total['killed']} | {total['survived']} | "
        f"{total['equivalent']} | {percent(total['score'])} | {total['time_s']:.0f} s |"
    )
    lines += ["", "## Commands", ""]
    for r in records:
        lines.append(f"- {r['module']}: `{r['command'].replace(str(ROOT) + '/', '')}`")
    for title, status in (("Survivors", "survived"), ("Errors", "error")):
        items = [(r["module"], m) for r in records for m in r["results"] if m["status"] == status]
        lines += ["", f"## {title} ({len(items)})", ""]
        for module, m in items:
            lines += [
                f"### {module}:{m['line']} {m['operator']}",
                "",
                "```diff",
                m["diff"] or "",
                "```",
                "",
            ]
            if m.get("output"):
                lines += ["```", m["output"], "```", ""]
    items = [(r["module"], m) for r in records for m in r["results"] if m["status"] == "equivalent"]
    lines += ["", f"## Equivalent mutants ({len(items)})", ""]
    for module, m in items:
        lines.append(f"- {module}:{m['line']} `{m['before']}` -> `{m['after']}`: {m['reason']}")
    stale = [(r["module"], m) for r in records for m in r["results"] if m["stale_equivalent"]]
    if stale:
        lines += ["", "## Listed as equivalent but killed (remove from the list)", ""]
        for module, m in stale:
            lines.append(f"- {module}:{m['line']} `{m['before']}` -> `{m['after']}`")
    (out / "report.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules",
        nargs="*",
        help="modules to run, as in mutation.toml (e.g. ops/merge.py); default: all",
    )
    parser.add_argument("--out", default=str(ROOT / "build" / "mutation"))
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the mutants in scope, run nothing"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the report from saved results"
    )
    parser.add_argument(
        "--full", action="store_true", help="every mutant, ignoring the modules' `sample`"
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again only what the last run did not kill (after adding tests)",
    )
    args = parser.parse_args(argv)

    with CONFIG.open("rb") as f:
        config = tomllib.load(f)
    entries = {e["path"]: e for e in config["module"]}
    if args.list:
        print("\n".join(entries))
        return 0
    unknown = [m for m in args.modules if m not in entries]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(entries)}")
    out = Path(args.out)
    if args.dry_run:
        # The listing builds its own cosmic-ray database: in a scratch folder, so that a
        # real run's in --out (even one in progress) is left alone.
        scratch = tempfile.TemporaryDirectory(prefix="mutate-dry-run-")
        out = Path(scratch.name)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        sandbox = make_sandbox(out)
        try:
            for module in args.modules or list(entries):
                run_module(
                    entries[module],
                    config["settings"],
                    sandbox,
                    out,
                    sys.executable,
                    dry_run=args.dry_run,
                    full=args.full,
                    survivors=args.survivors,
                )
        finally:
            shutil.rmtree(sandbox)
    if args.dry_run:
        return 0
    write_report(out, list(entries))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
