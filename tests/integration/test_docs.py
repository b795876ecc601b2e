"""The README's metrics table is the one the code generates, and every
metric the code declares is documented there; the README starts with what
pitot is and the two commands, and its table of contents links every
section; and no file of the repository reads the shared directory beside
it: a clone runs the suite on its own."""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, check, finish  # noqa: E402


def t_readme_metrics_table_is_generated():
    doc = subprocess.run([os.path.join(BUILD, "pitot"), "--metrics-doc"], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()
    assert doc[0].startswith("| Metric |") and len(doc) > 10, doc[:2]
    readme = open("README.md").read().splitlines()
    start = readme.index(doc[0])
    table = readme[start:start + len(doc)]
    assert table == doc, "README metrics table differs from `pitot --metrics-doc`: " + \
        "; ".join("%s != %s" % (a, b) for a, b in zip(table, doc) if a != b)[:600]
    after = readme[start + len(doc)] if start + len(doc) < len(readme) else ""
    assert not after.startswith("|"), "README table has extra rows: " + after


# ---- the README's top and its table of contents ---------------------------

def readme_headings(lines):
    """(level, text) of every Markdown heading outside fenced code blocks."""
    out, fence = [], False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            m = re.match(r"^(#{1,6}) (.+?)\s*$", line)
            if m:
                out.append((len(m.group(1)), m.group(2)))
    return out


def anchor(heading):
    """The id GitHub gives a heading: lower case, punctuation dropped (but
    - and _), spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def toc_errors(text):
    """What is wrong with the top of a README: it must start with a title, a
    paragraph saying what pitot is, the `make demo` / `make test` commands,
    then a "## Contents" list linking every ## section (and only sections
    that exist). [] when all is well."""
    lines = text.splitlines()
    heads = readme_headings(lines)
    errs = []
    if not heads or heads[0][0] != 1:
        return ["no # title first"]
    h2 = [h for lvl, h in heads if lvl == 2]
    if not h2 or h2[0] != "Contents":
        return ["the first ## section is %r, not Contents" % (h2[:1],)]
    top = "\n".join(lines[:lines.index("## Contents")])
    if not re.search(r"\bpitot is\b", top):
        errs.append("the top does not say what pitot is")
    for cmd in ("make demo", "make test"):
        if not re.search(r"(?m)^" + cmd + r"\b", top):
            errs.append("%s is not among the commands before the contents" % cmd)
    start = lines.index("## Contents") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("## "))
    links = re.findall(r"\]\(#([^)]+)\)", "\n".join(lines[start:end]))
    want = [anchor(h) for h in h2[1:]]
    missing = [h for h, a in zip(h2[1:], want) if a not in links]
    if missing:
        errs.append("sections not in the contents: %s" % missing)
    dangling = [a for a in links if a not in {anchor(h) for _, h in heads}]
    if dangling:
        errs.append("contents links to no heading: %s" % dangling)
    if links != [a for a in want if a in links]:
        errs.append("contents not in the order of the sections")
    return errs


def t_readme_top_and_contents():
    errs = toc_errors(open("README.md").read())
    assert not errs, "README: " + "; ".join(errs)
    # and the check sees a forgotten section, a dangling link and a missing command
    good = "# t\n\npitot is a proxy.\n\n```\nmake demo\nmake test\n```\n\n## Contents\n\n" \
        "- [A b](#a-b)\n\n## A b\n\n```\n## not a heading\n```\n"
    assert toc_errors(good) == [], toc_errors(good)
    assert toc_errors(good + "## New: section\n"), "a section missing from the contents passes"
    assert toc_errors(good.replace("(#a-b)", "(#a-c)")), "a dangling contents link passes"
    assert toc_errors(good.replace("make demo\n", "")), "a README without make demo passes"


# ---- nothing outside the repository ---------------------------------------

OUTSIDE = "../" + "shared"   # split, so that this file does not name it


def repo_files():
    """The tracked files (git ls-files), or, where there is no git (the
    Docker test stage), every file under the current directory but build/."""
    r = subprocess.run(["git", "ls-files", "-z"], capture_output=True)
    if r.returncode == 0 and r.stdout:
        return [f for f in r.stdout.decode().split("\0") if f]
    out = []
    for d, dirs, names in os.walk("."):
        dirs[:] = [x for x in dirs if x not in (".git", "build", "__pycache__")]
        out += [os.path.relpath(os.path.join(d, n)) for n in names]
    return out


def outside_readers(root, files):
    """The files (relative to root) whose text names OUTSIDE."""
    bad = []
    for f in files:
        try:
            with open(os.path.join(root, f), "rb") as fh:
                if OUTSIDE.encode() in fh.read():
                    bad.append(f)
        except (IsADirectoryError, FileNotFoundError):
            continue
    return bad


def t_nothing_reads_outside_the_repo():
    files = repo_files()
    assert len(files) > 100 and "tests/fixtures/README.md" in files, \
        "repository files not found (%d)" % len(files)
    bad = outside_readers(".", files)
    assert not bad, "files that read %s (the fixtures are in tests/fixtures): %s" % (OUTSIDE, bad)
    # and it finds one that does
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "harness.py"), "w") as f:
            f.write('FIXTURES = os.environ.get("PITOT_FIXTURES", "%s/fixtures")\n' % OUTSIDE)
        with open(os.path.join(d, "ok.py"), "w") as f:
            f.write('FIXTURES = "tests/fixtures"\n')
        found = outside_readers(d, ["harness.py", "ok.py"])
        assert found == ["harness.py"], "the check found %s" % found


check("README metrics table equals `pitot --metrics-doc`", t_readme_metrics_table_is_generated)
check("README starts with pitot and its two commands, its contents link every section",
      t_readme_top_and_contents)
check("no repository file reads the directory beside it: fixtures are in tests/fixtures",
      t_nothing_reads_outside_the_repo)
finish()
