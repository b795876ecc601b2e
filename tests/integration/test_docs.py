"""The README's metrics table is the one the code generates, and every
metric the code declares is documented there."""

import os
import subprocess
import sys

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


check("README metrics table equals `pitot --metrics-doc`", t_readme_metrics_table_is_generated)
finish()
