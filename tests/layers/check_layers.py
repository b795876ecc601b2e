#!/usr/bin/env python3
"""The layer rule, checked on the #include lines of src/ and include/pitot/.

The README states the layers, lowest first, in one line:
    Layers, lowest first: util, format, io, measure, route, serve, worker.
A module (src/<layer>/<name>.c with include/pitot/<layer>/<name>.h, and its
private src/<layer>/<name>_int.h) may include headers of its own layer and of
the layers below; never of a layer above. Inside a layer, modules may use one
another but never in a cycle: a module that must tell another something it
depends on takes a callback. Prints every violation and exits 1, else prints
one line and exits 0."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if "--root" in sys.argv:
    ROOT = sys.argv[sys.argv.index("--root") + 1]
RULE = re.compile(r"^Layers, lowest first: ([a-z, ]+)\.$", re.M)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layers_from_readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        m = RULE.search(f.read())
    if not m:
        sys.exit("check_layers: README.md has no line 'Layers, lowest first: a, b, ...'")
    return [x.strip() for x in m.group(1).split(",")]


def module_of(path):
    """(layer, module) of a source or header path, None outside the layers."""
    rel = os.path.relpath(path, ROOT).split(os.sep)
    if rel[0] == "include" and len(rel) == 4 and rel[1] == "pitot":
        return rel[2], rel[3][:-2]
    if rel[0] == "src" and len(rel) >= 3:
        name = os.path.splitext(rel[-1])[0]
        if name.endswith("_int"):
            name = name[:-4]
        if len(rel) == 4:           # src/<layer>/<group>/<file>: the group is the module
            name = rel[2]
        return rel[1], name
    return None


def target_of(inc, src_dir):
    """(layer, module) an include names, None for system and library headers."""
    if inc.startswith("pitot/"):
        parts = inc.split("/")
        if len(parts) == 3:
            return parts[1], parts[2][:-2]
        return ("?", inc)
    local = os.path.join(src_dir, inc)
    if os.path.exists(local):
        return module_of(local)
    return None


def main():
    layers = layers_from_readme()
    rank = {name: i for i, name in enumerate(layers)}
    bad = []
    edges = {}
    files = []
    for top in ("src", os.path.join("include", "pitot")):
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            files += [os.path.join(d, n) for n in names if n.endswith((".c", ".h"))]
    for path in sorted(files):
        mod = module_of(path)
        rel = os.path.relpath(path, ROOT)
        if mod is None or mod[0] not in rank:
            bad.append("%s: not in a layer folder (%s)" % (rel, ", ".join(layers)))
            continue
        with open(path) as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            tgt = target_of(inc, os.path.dirname(path))
            if tgt is None:
                continue
            if tgt[0] not in rank:
                bad.append("%s: includes %s, which is in no layer" % (rel, inc))
                continue
            if rank[tgt[0]] > rank[mod[0]]:
                bad.append("%s: includes %s: %s is above %s" % (rel, inc, tgt[0], mod[0]))
            if tgt != mod:
                edges.setdefault(mod, set()).add(tgt)
    # cycles between modules (a layer's modules may use each other, never both ways)
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):] + [n]
                bad.append("include cycle: " + " -> ".join("%s/%s" % c for c in cyc))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    if bad:
        for b in bad:
            print(b)
        print("check_layers: %d violation%s of the layer rule (README: Layers)" %
              (len(bad), "" if len(bad) == 1 else "s"))
        return 1
    print("check_layers: %d files, %d modules, layers %s: no violation" %
          (len(files), len({module_of(f) for f in files}), " < ".join(layers)))
    return 0


def self_test():
    """The check can fail: a small tree with an upward include and a cycle
    inside a layer must give exactly those violations."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        def put(path, text):
            os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as f:
                f.write(text)
        put("README.md", "Layers, lowest first: low, high.\n")
        put("include/pitot/low/a.h", '#include "pitot/high/b.h"\n')
        put("include/pitot/high/b.h", "")
        put("src/low/a.c", '#include "pitot/low/a.h"\n#include "a_int.h"\n')
        put("src/low/a_int.h", "")
        put("src/high/b.c", '#include "pitot/high/b.h"\n#include "pitot/high/c.h"\n')
        put("include/pitot/high/c.h", "")
        put("src/high/c.c", '#include "pitot/high/c.h"\n#include "pitot/high/b.h"\n')
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--root", d],
                             capture_output=True, text=True)
        want = ["include/pitot/low/a.h: includes pitot/high/b.h: high is above low",
                "include cycle: high/b -> high/c -> high/b"]
        got = out.stdout.splitlines()
        if out.returncode != 1 or any(w not in got for w in want) or len(got) != 3:
            print("check_layers self-test: expected %r, got %r (exit %d)" % (want, got, out.returncode))
            return 1
    print("check_layers self-test: an upward include and a cycle are reported")
    return 0


if __name__ == "__main__":
    sys.exit(self_test() if "--self-test" in sys.argv else main())
