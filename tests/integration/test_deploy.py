#!/usr/bin/env python3
"""The deployment files (docker/: image, compose stack, Kubernetes manifests)
checked without Docker or a cluster: every YAML and JSON file parses (YAML
strictly: duplicate keys are errors), every path the Dockerfile copies and the
compose file mounts exists, the names the services reach each other by exist
in each compose profile, every pitot metric named exists in
`pitot --metrics-doc`, the runtime image's packages exist and cover every
library the binaries link, the manifests have the objects, labels and probes
the deployment relies on and agree with each other, every pitot
configuration in them passes `pitot -t` and runs, and every commented example
of the sample config (conf/pitot.yaml), uncommented in place, passes it too.

Run from the repo root; PITOT_BUILD (default "build") holds the binaries.
Needs PyYAML (Debian python3-yaml), promtool and apt-cache.
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, chat_body, check, finish, request, start_pitot,  # noqa: E402
                     start_sim, wait_for)

try:
    import yaml
except ImportError:  # a missing dependency is a failure, not a skip
    print("FAIL deploy_yaml_module: PyYAML missing: apt-get install python3-yaml", flush=True)
    sys.exit(1)

PITOT = os.path.join(BUILD, "pitot")
SIM = os.path.join(BUILD, "pitot-sim")
DOCKERFILE = "docker/Dockerfile"
COMPOSE = "docker/compose.yaml"
COMPOSE_PITOT = "docker/pitot.compose.yaml"
COMPOSE_SHARED = "docker/pitot.compose.shared.yaml"
IMAGE_PITOT = "docker/pitot.yaml"
K8S = "docker/k8s"
DASHBOARD = "conf/grafana/dashboards/pitot.json"
PROM_CONFIG = "conf/prometheus.yml"
# Packages of debian:bookworm-slim that a binary may link without the
# Dockerfile installing them.
SLIM_BASE = {"libc6"}
# What a sanitizer build (make asan, BUILD=build/asan) links besides: never
# in the image, which ships the plain build.
SANITIZER_RUNTIME = {"libasan8", "libubsan1", "libstdc++6", "libgcc-s1"}
# kubectl apply (client side) keeps the object in an annotation of at most
# 256 KiB: a larger dashboard ConfigMap needs server-side apply.
ANNOTATION_MAX = 262144


# ---- strict YAML ---------------------------------------------------------

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last
    one silently; Kubernetes and Compose may not agree on which wins)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for knode, _ in node.value:
        if knode.tag == "tag:yaml.org,2002:merge":
            continue  # "<<": merged keys may be overridden
        key = loader.construct_object(knode, deep=True)
        try:
            dup = key in seen
        except TypeError:
            continue
        if dup:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), knode.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def load_one(path):
    docs = load_all(path)
    if len(docs) != 1:
        raise AssertionError("%s: %d YAML documents, want 1" % (path, len(docs)))
    return docs[0]


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def files(patterns):
    out = set()
    for p in patterns:
        out.update(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
    return sorted(out)


YAML_FILES = ["docker/**/*.yaml", "docker/**/*.yml", "conf/*.yaml", "conf/*.yml",
              "conf/grafana/**/*.yaml", "conf/grafana/**/*.yml"]
JSON_FILES = ["docker/**/*.json", "conf/grafana/**/*.json"]


def check_parse():
    bad = []
    ys, js = files(YAML_FILES), files(JSON_FILES)
    for f in ys:
        try:
            load_all(f)
        except yaml.YAMLError as e:
            bad.append("%s: %s" % (f, str(e).replace("\n", " ")))
    for f in js:
        try:
            with open(f, encoding="utf-8") as fh:
                json.load(fh)
        except ValueError as e:
            bad.append("%s: %s" % (f, e))
    expect(ys, "no YAML file found under docker/")
    expect(not bad, "; ".join(bad))


# ---- Dockerfile ----------------------------------------------------------

def dockerfile_instructions():
    """[(stage name, INSTRUCTION, argument text)] with continuations joined."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    logical, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        logical.append(cur + line)
        cur = ""
    out, stage = [], None
    for l in logical:
        ins, _, arg = l.strip().partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            m = re.search(r"\bAS\s+(\S+)", arg, re.I)
            stage = m.group(1) if m else None
        out.append((stage, ins, arg.strip()))
    return out


def stage_of(ins, name):
    return [(i, a) for s, i, a in ins if s == name]


def exec_form(arg):
    return json.loads(arg) if arg.startswith("[") else shlex.split(arg)


def check_dockerfile():
    ins = dockerfile_instructions()
    stages = {s for s, i, _ in ins if i == "FROM"}
    for need in ("build", "runtime", "pitot", "pitot-sim", "test"):
        expect(need in stages, "stage %s missing (have %s)" % (need, sorted(stages)))
    frm = {s: a for s, i, a in ins if i == "FROM"}
    args = {a.split("=")[0]: a.split("=", 1)[1] for s, i, a in ins if i == "ARG" and "=" in a}
    sub = lambda t: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), t)
    expect(sub(frm["build"]).startswith("debian:bookworm "), "build stage: %s" % frm["build"])
    expect(sub(frm["runtime"]).startswith("debian:bookworm-slim "), "runtime: %s" % frm["runtime"])
    build_runs = " ".join(a for i, a in stage_of(ins, "build") if i == "RUN")
    expect("make deps" in build_runs, "build stage does not run make deps")
    expect(re.search(r"\bmake\b[^&;]*\bWERROR=1", build_runs), "build stage: no make WERROR=1")
    expect(ins[-1][0] == "pitot", "the last stage (default target) is %s, not pitot" % ins[-1][0])
    run = stage_of(ins, "runtime")
    user = [a for i, a in run if i == "USER"]
    expect(user and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]),
           "runtime USER must be a numeric non-root uid: %s" % user)
    expect(["8080"] == [a for i, a in run if i == "EXPOSE"], "runtime EXPOSE is not 8080")
    pit = stage_of(ins, "pitot")
    hc = " ".join(a for i, a in pit if i == "HEALTHCHECK")
    expect("http://127.0.0.1:8080/healthz" in hc, "pitot HEALTHCHECK is not on /healthz: %r" % hc)
    ep = [exec_form(a) for i, a in pit if i == "ENTRYPOINT"]
    expect(ep and os.path.basename(ep[-1][0]) == "pitot" and
           ep[-1][1:3] == ["-c", "/etc/pitot/pitot.yaml"], "pitot ENTRYPOINT: %s" % ep)
    ep = [exec_form(a) for i, a in stage_of(ins, "pitot-sim") if i == "ENTRYPOINT"]
    expect(ep and os.path.basename(ep[-1][0]) == "pitot-sim", "pitot-sim ENTRYPOINT: %s" % ep)
    hc = " ".join(a for i, a in stage_of(ins, "pitot-sim") if i == "HEALTHCHECK")
    expect("http://127.0.0.1:8080/health" in hc, "pitot-sim HEALTHCHECK is not on /health")


def check_dockerfile_copies():
    """COPY sources exist in the build context (the repo root); COPY --from
    of the build stage names binaries make builds, and the config lands
    where ENTRYPOINT reads it."""
    ins = dockerfile_instructions()
    workdir = {s: a for s, i, a in ins if i == "WORKDIR"}
    missing, n = [], 0
    dests = {}
    for stage, i, a in ins:
        if i not in ("COPY", "ADD"):
            continue
        parts = exec_form(a)
        frm = [p for p in parts if p.startswith("--from=")]
        srcs = [p for p in parts if not p.startswith("--")][:-1]
        dest = [p for p in parts if not p.startswith("--")][-1]
        for s in srcs:
            n += 1
            if frm and frm[0] == "--from=build":
                rel = os.path.relpath(s, workdir["build"])
                if not os.path.isfile(os.path.join(BUILD, os.path.relpath(rel, "build"))):
                    missing.append("%s (from build: not a file make builds)" % s)
            elif frm:
                continue  # another stage or a named context
            elif not os.path.exists(s):
                missing.append(s)
            else:
                dests.setdefault(stage, {})[dest] = s
    expect(n >= 6, "only %d COPY sources found" % n)
    expect(not missing, "COPY sources missing: %s" % ", ".join(missing))
    expect(dests.get("pitot", {}).get("/etc/pitot/pitot.yaml") == IMAGE_PITOT,
           "the image's /etc/pitot/pitot.yaml is not %s" % IMAGE_PITOT)


# What `make test` reads from the build context: the sources and the Makefile,
# tests/ (with the recorded fixtures in tests/fixtures/), the README (its
# metrics table and layer line), conf/ and docker/.
SUITE_READS = ("Makefile", "include", "src", "proxy", "tests", "README.md", "conf", "docker")


def check_dockerfile_test_stage():
    """The test stage (with the stages it is built FROM) copies everything
    the suite reads from the build context, needs no other build context,
    and runs make test."""
    ins = dockerfile_instructions()
    base = {s: a.split()[0] for s, i, a in ins if i == "FROM"}
    chain, st = [], "test"
    while st in base and st not in chain:
        chain.append(st)
        st = base[st]
    copied, named = set(), []
    for stage, i, a in ins:
        if stage not in chain or i not in ("COPY", "ADD"):
            continue
        parts = exec_form(a)
        frm = [p for p in parts if p.startswith("--from=")]
        if frm:
            if frm[0][len("--from="):] not in base:
                named.append(a)
            continue
        copied.update(os.path.normpath(p).split("/")[0]
                      for p in [p for p in parts if not p.startswith("--")][:-1])
    expect(not named, "test stage copies from another build context: %s" % named)
    missing = [p for p in SUITE_READS if p not in copied]
    expect(not missing, "test stage (stages %s) does not copy %s" % (" <- ".join(chain), missing))
    runs = " ".join(a for i, a in stage_of(ins, "test") if i == "RUN")
    expect(re.search(r"\bmake\b[^&;]*\btest\b", runs), "test stage does not run make test")
    expect("PITOT_FIXTURES" not in runs, "test stage points the fixtures elsewhere: %s" % runs)


def runtime_packages():
    ins = dockerfile_instructions()
    runs = " ".join(a for i, a in stage_of(ins, "runtime") if i == "RUN")
    m = re.search(r"apt-get install (.*?)(?:&&|;|$)", runs)
    expect(m, "no apt-get install in the runtime stage")
    return [t for t in m.group(1).split() if not t.startswith("-")]


def check_runtime_packages_exist():
    pkgs = runtime_packages()
    expect(len(pkgs) >= 5, "runtime packages: %s" % pkgs)
    bad = [p for p in pkgs if subprocess.run(["apt-cache", "show", p], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL).returncode != 0]
    expect(not bad, "not in Debian (apt-cache show fails; apt lists updated?): %s" % bad)


def installed_closure(names):
    """names and what they depend on, transitively, as installed here (the
    runtime libraries are installed here too: the -dev packages need them)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    deps = {}
    for line in out.splitlines():
        pkg, _, d = line.partition("\t")
        # "a (>= 1) | b, c:any" -> every alternative counts
        deps[pkg] = {re.split(r"[ :(]", alt.strip())[0] for alt in re.split(r"[,|]", d) if alt.strip()}
    seen, todo = set(), list(names)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += deps.get(p, ())
    return seen


def check_runtime_packages_cover_binaries():
    """Every shared library pitot and pitot-sim load comes from a package the
    runtime stage installs (or from the slim base)."""
    pkgs = installed_closure(set(runtime_packages())) | SLIM_BASE
    uncovered = []
    for b in (PITOT, SIM):
        out = subprocess.run(["ldd", b], capture_output=True, text=True, check=True).stdout
        if re.search(r"lib(asan|ubsan)\.so", out):  # make asan: the sanitizers' runtime
            pkgs |= SANITIZER_RUNTIME
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line)
            if not m:
                continue
            owner = None
            for path in (m.group(2), os.path.realpath(m.group(2))):
                for cand in (path, "/usr" + path if not path.startswith("/usr/") else path[4:]):
                    r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
                    if r.returncode == 0:
                        owner = r.stdout.split(":")[0]
                        break
                if owner:
                    break
            if owner is None:
                uncovered.append("%s: %s (no Debian package)" % (b, m.group(1)))
            elif owner not in pkgs:
                uncovered.append("%s: %s from %s" % (b, m.group(1), owner))
    expect(not uncovered, "libraries the runtime image lacks: %s" % "; ".join(uncovered))


# ---- compose -------------------------------------------------------------

def compose():
    return load_one(COMPOSE)


def volume_sources(svc):
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            yield v.get("source", ""), v.get("target", "")
        else:
            parts = v.split(":")
            yield parts[0], parts[1] if len(parts) > 1 else ""


def check_compose_paths():
    c = compose()
    base = os.path.dirname(COMPOSE)
    missing, n = [], 0
    for name, s in c["services"].items():
        for src, _ in volume_sources(s):
            if "${" in src:
                continue  # the user's own directory (LLAMA_MODELS)
            if src.startswith((".", "/")):
                n += 1
                if not os.path.exists(os.path.join(base, src)):
                    missing.append("%s: %s" % (name, os.path.normpath(os.path.join(base, src))))
            else:
                expect(src in (c.get("volumes") or {}), "%s: volume %s not declared" % (name, src))
        b = s.get("build")
        if b:
            ctx = os.path.join(base, b["context"])
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            expect(os.path.normpath(ctx) == ".", "%s: build context %s is not the repo root" % (name, ctx))
            expect(os.path.isfile(df), "%s: no %s" % (name, df))
            stages = {st for st, i, _ in dockerfile_instructions() if i == "FROM"}
            expect(b.get("target") in stages, "%s: target %s not a stage" % (name, b.get("target")))
        for dep in s.get("depends_on") or {}:
            expect(dep in c["services"], "%s depends on unknown %s" % (name, dep))
    expect(n >= 6, "only %d bind mounts found" % n)
    expect(not missing, "mounted files missing: %s" % ", ".join(missing))


def names_in_profile(c, profile):
    """Host names reachable in the compose network with `profile` active:
    {name: [services answering to it]}."""
    names = {}
    for name, s in c["services"].items():
        prof = s.get("profiles")
        if prof and profile not in prof:
            continue
        names.setdefault(name, []).append(name)
        for net in (s.get("networks") or {}).values():
            for a in (net or {}).get("aliases", []):
                names.setdefault(a, []).append(name)
    return names


def prom_targets():
    """(job, host:port, labels) of every static target and Alertmanager of
    conf/prometheus.yml."""
    p = load_one(PROM_CONFIG)
    out = []
    for sc in p.get("scrape_configs") or []:
        for st in sc.get("static_configs") or []:
            out += [(sc.get("job_name"), t, st.get("labels") or {}) for t in st.get("targets") or []]
    for am in (p.get("alerting") or {}).get("alertmanagers") or []:
        for st in am.get("static_configs") or []:
            out += [("alertmanager", t, {}) for t in st.get("targets") or []]
    return p, out


def check_compose_names():
    """In each profile, llama-a and llama-b are one service each, and every
    name pitot and Prometheus connect to is a service of that profile."""
    c = compose()
    cfg = load_one(COMPOSE_PITOT)
    hosts = [urllib.parse.urlsplit(b if isinstance(b, str) else b["url"]).hostname
             for b in cfg["backends"]]
    expect(sorted(hosts) == ["llama-a", "llama-b"], "pitot.compose.yaml backends: %s" % hosts)
    want = [("pitot backend", h) for h in hosts]
    if os.path.exists(PROM_CONFIG):
        _, targets = prom_targets()
        expect(targets, "%s has no static targets" % PROM_CONFIG)
        # localhost is the Prometheus container itself: right for its own job only
        want += [(job, t.rsplit(":", 1)[0]) for job, t, _ in targets
                 if not (job == "prometheus" and t.startswith("localhost:"))]
        # the replicas' own series join pitot's on the backend label
        names = {b["name"]: urllib.parse.urlsplit(b["url"]).hostname
                 for b in cfg["backends"] if isinstance(b, dict)}
        for job, t, labels in targets:
            if "backend" in labels:
                expect(names.get(labels["backend"]) == t.rsplit(":", 1)[0],
                       "%s target %s has backend=%s, pitot calls it %s" %
                       (job, t, labels["backend"],
                        [n for n, h in names.items() if h == t.rsplit(":", 1)[0]]))
    # profile shared: its pitot replicas reach the replicas (with sim or
    # llama) and the Redis of their config
    shared = load_one(COMPOSE_SHARED)
    redis_host = urllib.parse.urlsplit(shared["ratelimit"]["redis"]).hostname
    for profile in ("llama", "sim"):
        names = names_in_profile(c, profile)
        both = dict(names)
        for n, svcs in names_in_profile(c, "shared").items():
            both.setdefault(n, svcs)
        expect(redis_host in both and "pitot-a" in both and "pitot-b" in both,
               "profile shared with %s: redis, pitot-a, pitot-b: %s" % (profile, sorted(both)))
        shared_hosts = [urllib.parse.urlsplit(b["url"]).hostname for b in shared["backends"]]
        expect(all(h in both for h in shared_hosts), "shared backends: %s" % shared_hosts)
        for n in ("llama-a", "llama-b"):
            expect(len(names.get(n, [])) == 1,
                   "profile %s: %s is served by %s" % (profile, n, names.get(n)))
        bad = ["%s -> %s" % (who, h) for who, h in want if h not in names]
        expect(not bad, "profile %s: names no service answers to: %s" % (profile, bad))


def check_compose_mount_targets():
    """What the mounted configs point at inside the containers is mounted:
    Prometheus rule_files, Grafana's dashboard directory and datasource URL."""
    c = compose()
    sv = c["services"]
    mounts = {name: {t: os.path.normpath(os.path.join("docker", s)) for s, t in volume_sources(svc)
                     if s.startswith(".")} for name, svc in sv.items()}
    expect(mounts["pitot"].get("/etc/pitot/pitot.yaml") == COMPOSE_PITOT,
           "pitot's config mount is not %s" % COMPOSE_PITOT)
    checked = 1
    if os.path.exists(PROM_CONFIG):
        p, _ = prom_targets()
        for rf in p.get("rule_files") or []:
            inside = rf if rf.startswith("/") else os.path.join("/etc/prometheus", rf)
            expect(inside in mounts["prometheus"] or glob.has_magic(rf),
                   "rule_files %s: %s is not mounted in prometheus" % (rf, inside))
            checked += 1
    for f in files(["conf/grafana/provisioning/dashboards/*.y*ml"]):
        for prov in load_one(f).get("providers") or []:
            path = (prov.get("options") or {}).get("path", "").rstrip("/")
            here = [os.path.join(src, os.path.relpath(path, t)) for t, src in mounts["grafana"].items()
                    if path == t or path.startswith(t + "/")]
            expect(here and glob.glob(os.path.join(here[0], "*.json")),
                   "%s: dashboard path %s holds no dashboard (mounts %s)" % (f, path, mounts["grafana"]))
            checked += 1
    for f in files(["conf/grafana/provisioning/datasources/*.y*ml"]):
        for ds in load_one(f).get("datasources") or []:
            host = urllib.parse.urlsplit(ds.get("url", "")).hostname
            if host:
                expect(host in sv, "%s: datasource %s points at %s, no such service" %
                       (f, ds.get("name"), host))
                checked += 1
    expect(checked >= 1, "nothing checked")


def check_promtool():
    """conf/prometheus.yml parses for promtool; the rules embedded in the
    PrometheusRule pass promtool check rules."""
    if os.path.exists(PROM_CONFIG):
        r = subprocess.run(["promtool", "check", "config", "--syntax-only", PROM_CONFIG],
                           capture_output=True, text=True)
        expect(r.returncode == 0, "promtool check config: %s" % (r.stdout + r.stderr)[-600:])
    rules = [d for d in k8s_docs() if d["kind"] == "PrometheusRule"]
    expect(rules, "no PrometheusRule under %s" % K8S)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules[0]["spec"], f)
    try:
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        expect(r.returncode == 0, "promtool check rules: %s" % (r.stdout + r.stderr)[-600:])
    finally:
        os.unlink(f.name)


# ---- metrics -------------------------------------------------------------

def documented_metrics():
    out = subprocess.run([PITOT, "--metrics-doc"], capture_output=True, text=True,
                         check=True).stdout
    return dict(re.findall(r"^\| `(pitot_\w+)` \| (\w+) \|", out, re.M))


def check_metric_names():
    doc = documented_metrics()
    expect(len(doc) > 10, "pitot --metrics-doc lists %d metrics" % len(doc))
    used, unknown = set(), []
    # a whole metric name: recording rules (level:pitot_x:op) are not pitot's
    tok = re.compile(r"(?<![A-Za-z0-9_:])pitot_[A-Za-z0-9_]+(?![A-Za-z0-9_:])")
    for f in files(["docker/**/*"]):
        if not f.endswith((".yaml", ".yml", ".json")):
            continue
        with open(f, encoding="utf-8") as fh:
            for name in set(tok.findall(fh.read())):
                used.add(name)
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name in doc or (base != name and doc.get(base) == "histogram"):
                    continue
                unknown.append("%s in %s" % (name, f))
    expect(not unknown, "not in pitot --metrics-doc: %s" % ", ".join(sorted(unknown)))
    expect(used, "no pitot metric named under docker/ (the dashboard ConfigMap names them)")


# ---- Kubernetes ----------------------------------------------------------

_k8s = None


def k8s_docs():
    global _k8s
    if _k8s is None:
        _k8s = []
        for f in files([K8S + "/**/*.yaml", K8S + "/**/*.yml"]):
            for d in load_all(f):
                d["_file"] = f
                _k8s.append(d)
    return _k8s


def objs(kind, **where):
    return [d for d in k8s_docs() if d.get("kind") == kind and
            all(d["metadata"].get(k) == v for k, v in where.items())]


def one(kind, pred, what):
    got = [d for d in objs(kind) if pred(d)]
    expect(len(got) == 1, "%s: %d found, want 1" % (what, len(got)))
    return got[0]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(w):
    return w["spec"]["template"]["metadata"]["labels"]


def check_k8s_objects():
    """Every object is well formed: apiVersion, kind, name, namespace, and
    labels and annotations whose values are strings ("1", "true", not 1, true)."""
    docs = k8s_docs()
    expect(len(docs) >= 10, "only %d objects under %s" % (len(docs), K8S))
    bad = []
    for d in docs:
        md = d.get("metadata") or {}
        where = "%s %s/%s" % (d["_file"], d.get("kind"), md.get("name"))
        if not d.get("apiVersion") or not d.get("kind") or not md.get("name"):
            bad.append("%s: apiVersion, kind and metadata.name required" % where)
        if d.get("kind") != "Namespace" and not md.get("namespace"):
            bad.append("%s: no namespace" % where)
        maps = [md.get("labels"), md.get("annotations")]
        tmpl = (d.get("spec") or {}).get("template") or {}
        maps += [(tmpl.get("metadata") or {}).get("labels"),
                 (tmpl.get("metadata") or {}).get("annotations")]
        for m in maps:
            for k, v in (m or {}).items():
                if not isinstance(v, str):
                    bad.append("%s: %s: %r is not a string" % (where, k, v))
    expect(not bad, "; ".join(bad))
    nss = {d["metadata"]["name"] for d in objs("Namespace")}
    used = {d["metadata"].get("namespace") for d in docs} - {None, "monitoring"}
    expect(used <= nss, "namespaces used but not created: %s" % (used - nss))


def container_port_names(c):
    return {p.get("name"): p["containerPort"] for p in c.get("ports", [])}


def check_k8s_pitot():
    d = one("Deployment", lambda d: d["metadata"]["name"] == "pitot", "Deployment pitot")
    spec = d["spec"]
    expect(spec.get("replicas") == 2, "replicas %s, want 2" % spec.get("replicas"))
    expect(selects(spec["selector"]["matchLabels"], pod_labels(d)), "selector misses its pods")
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    ports = container_port_names(c)
    expect(8080 in ports.values(), "container port 8080 missing")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = (c.get(probe) or {}).get("httpGet") or {}
        expect(hg.get("path") == path, "%s path %s, want %s" % (probe, hg.get("path"), path))
        expect(ports.get(hg.get("port"), hg.get("port")) == 8080, "%s port %s" % (probe, hg.get("port")))
    cmd = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
    m = re.fullmatch(r"(?:/bin/)?sleep (\d+)", " ".join(cmd))
    expect(m, "preStop is not a sleep: %s" % cmd)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    expect(int(m.group(1)) >= 3 and grace > int(m.group(1)),
           "preStop sleep %s s vs terminationGracePeriodSeconds %s" % (m.group(1), grace))
    # and the drain after SIGTERM fits too (shutdown.drain_timeout, default 30s)
    pcm = one("ConfigMap", lambda x: "pitot.yaml" in (x.get("data") or {}), "pitot ConfigMap")
    pcfg = yaml.load(pcm["data"]["pitot.yaml"], Loader=StrictLoader)
    dt = str((pcfg.get("shutdown") or {}).get("drain_timeout", "30s"))
    dm = re.fullmatch(r"(\d+)(ms|s|m)?", dt)
    expect(dm, "shutdown.drain_timeout %r" % dt)
    drain_s = int(dm.group(1)) * {"ms": 0.001, "s": 1, None: 0.001, "m": 60}[dm.group(2)]
    expect(grace > int(m.group(1)) + drain_s,
           "preStop %s s + drain_timeout %s >= terminationGracePeriodSeconds %s"
           % (m.group(1), dt, grace))
    # the config lands where the image's ENTRYPOINT reads it
    mounts = {v["name"]: v["mountPath"] for v in c.get("volumeMounts", [])}
    cm_vol = [v for v in pod.get("volumes", []) if "configMap" in v]
    expect(len(cm_vol) == 1, "want one ConfigMap volume")
    cm = one("ConfigMap", lambda x: x["metadata"]["name"] == cm_vol[0]["configMap"]["name"],
             "the Deployment's ConfigMap")
    expect(mounts.get(cm_vol[0]["name"]) == "/etc/pitot" and "pitot.yaml" in cm["data"],
           "the ConfigMap's pitot.yaml is not at /etc/pitot/pitot.yaml")
    sc = pod.get("securityContext") or {}
    expect(sc.get("runAsNonRoot") is True, "runAsNonRoot not set")
    user = [a for s, i, a in dockerfile_instructions() if s == "runtime" and i == "USER"]
    expect(str(sc.get("runAsUser")) == user[-1].split(":")[0],
           "runAsUser %s differs from the image's USER %s" % (sc.get("runAsUser"), user))
    ann = spec["template"]["metadata"].get("annotations") or {}
    expect(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "8080",
           "prometheus.io annotations missing")
    svc = one("Service", lambda s: selects(s["spec"].get("selector"), pod_labels(d)),
              "Service selecting pitot")
    for p in svc["spec"]["ports"]:
        expect(ports.get(p.get("targetPort"), p.get("targetPort")) == 8080,
               "Service targetPort %s" % p.get("targetPort"))


def llama_workload():
    return one("StatefulSet", lambda d: d["metadata"]["name"].startswith("llama"),
               "llama.cpp StatefulSet")


def check_k8s_llama():
    w = llama_workload()
    hs = one("Service", lambda s: s["spec"].get("clusterIP") == "None", "headless Service")
    expect(selects(hs["spec"]["selector"], pod_labels(w)), "headless Service misses the llama pods")
    expect(w["spec"].get("serviceName") == hs["metadata"]["name"], "StatefulSet serviceName")
    expect(w["spec"].get("replicas", 1) >= 2, "fewer than 2 llama.cpp replicas")
    c = w["spec"]["template"]["spec"]["containers"][0]
    args = c.get("args", [])
    for a in ("--metrics", "--slots", "--parallel"):
        expect(a in args, "llama-server args lack %s" % a)
    expect(((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") == "/health",
           "llama readinessProbe is not /health")
    # pitot's backend is this Service's cluster DNS name and port
    cm = one("ConfigMap", lambda x: "pitot.yaml" in (x.get("data") or {}), "pitot ConfigMap")
    cfg = yaml.load(cm["data"]["pitot.yaml"], Loader=StrictLoader)
    urls = [b if isinstance(b, str) else b["url"] for b in cfg["backends"]]
    want = "http://%s.%s.svc.cluster.local:%d" % (hs["metadata"]["name"], hs["metadata"]["namespace"],
                                                  hs["spec"]["ports"][0]["port"])
    expect([u.rstrip("/") for u in urls] == [want], "backends %s, want [%s]" % (urls, want))


def policy_allows(pol, port, ns=None, pod=None):
    for rule in pol["spec"].get("ingress") or []:
        if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
            continue
        for peer in rule.get("from") or []:
            nsel = (peer.get("namespaceSelector") or {}).get("matchLabels")
            psel = (peer.get("podSelector") or {}).get("matchLabels")
            if ns and nsel is not None and "podSelector" not in peer and \
                    nsel.get("kubernetes.io/metadata.name") == ns:
                return True
            if pod and psel is not None and "namespaceSelector" not in peer and selects(psel, pod):
                return True
    return False


def check_k8s_network_policy():
    pols = objs("NetworkPolicy")
    expect(pols, "no NetworkPolicy")
    pitot = pod_labels(one("Deployment", lambda d: d["metadata"]["name"] == "pitot", "pitot"))
    llama = pod_labels(llama_workload())

    def covering(labels):
        return [p for p in pols if selects(p["spec"]["podSelector"].get("matchLabels"), labels)]

    for what, labels in (("pitot", pitot), ("llama.cpp", llama)):
        ps = covering(labels)
        expect(ps, "no NetworkPolicy selects the %s pods" % what)
        expect(any(policy_allows(p, 8080, ns="monitoring") for p in ps),
               "the monitoring namespace cannot reach the %s pods on 8080" % what)
    expect(any(policy_allows(p, 8080, pod=pitot) for p in covering(llama)),
           "pitot cannot reach the llama.cpp pods")
    # the optional Redis of the rate limits: pitot's pods reach it, on its port
    redis = pod_labels(one("Deployment", lambda d: d["metadata"]["name"] == "redis", "redis"))
    expect(any(policy_allows(p, 6379, pod=pitot) for p in covering(redis)),
           "pitot cannot reach Redis")
    svc = one("Service", lambda d: d["metadata"]["name"] == "redis", "Service redis")
    expect(selects(svc["spec"]["selector"], redis), "Service redis selects no Redis pod")


def check_k8s_service_monitors():
    sms = objs("ServiceMonitor")
    jobs = set()
    expect(len(sms) >= 2, "want ServiceMonitors for pitot and llama.cpp, have %d" % len(sms))
    for sm in sms:
        ns = sm["metadata"]["namespace"]
        svcs = [s for s in objs("Service", namespace=ns)
                if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels") or {})]
        expect(len(svcs) == 1, "ServiceMonitor %s selects %d Services" % (sm["metadata"]["name"], len(svcs)))
        names = {p.get("name") for p in svcs[0]["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            expect(ep.get("port") in names, "ServiceMonitor %s: port %s not in %s" %
                   (sm["metadata"]["name"], ep.get("port"), names))
            # the operator names the job after the Service unless relabelled
            job = svcs[0]["metadata"]["name"]
            for rl in ep.get("relabelings") or []:
                if rl.get("targetLabel") == "job" and "replacement" in rl:
                    job = rl["replacement"]
            jobs.add(job)
    # every job the alert rules select is scraped under that name
    rules = json.dumps([d["spec"] for d in objs("PrometheusRule")])
    wanted = set(re.findall(r'\bjob=\\"([^"\\]+)\\"', rules))
    expect(wanted, "no job=\"...\" selector found in the PrometheusRule")
    expect(wanted <= jobs, "alert rules select jobs %s; the ServiceMonitors scrape %s" %
           (sorted(wanted), sorted(jobs)))


def check_k8s_dashboard():
    cms = [d for d in objs("ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    expect(cms, "no ConfigMap labelled grafana_dashboard: \"1\"")
    expect(os.path.exists(DASHBOARD), "%s missing" % DASHBOARD)
    with open(DASHBOARD, encoding="utf-8") as f:
        want = json.load(f)
    data = cms[0]["data"]
    expect(list(data) == ["pitot.json"], "dashboard ConfigMap keys: %s" % list(data))
    expect(json.loads(data["pitot.json"]) == want, "dashboard ConfigMap differs from %s" % DASHBOARD)
    size = len(json.dumps(cms[0]["data"]).encode())
    expect(size < ANNOTATION_MAX, "dashboard is %d bytes: too large for client-side kubectl apply" % size)


def check_generated_current():
    r = subprocess.run([sys.executable, os.path.join(K8S, "generate.py"), "--check"],
                       capture_output=True, text=True)
    expect(r.returncode == 0, (r.stdout + r.stderr).strip())


# ---- pitot configurations --------------------------------------------------

def pitot_test_config(text, *extra):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        r = subprocess.run([PITOT, "-t", "-c", f.name] + list(extra), capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return r.returncode, (r.stdout + r.stderr).strip()


def check_configs_pass_pitot_t():
    """pitot -t on the compose config, the image config (with --backend, as it
    is meant to be run) and the ConfigMap's: it parses and range-checks
    without resolving names (llama-a, *.svc.cluster.local do not resolve here)."""
    cases = [(COMPOSE_PITOT, open(COMPOSE_PITOT).read(), ()),
             (COMPOSE_SHARED, open(COMPOSE_SHARED).read(), ()),
             (IMAGE_PITOT, open(IMAGE_PITOT).read(), ("--backend", "http://llama-a:8080"))]
    for cm in objs("ConfigMap"):
        if "pitot.yaml" in (cm.get("data") or {}):
            cases.append(("ConfigMap %s" % cm["metadata"]["name"], cm["data"]["pitot.yaml"], ()))
    expect(len(cases) == 4, "want one pitot ConfigMap, have %d" % (len(cases) - 3))
    for what, text, extra in cases:
        rc, out = pitot_test_config(text, *extra)
        expect(rc == 0 and "configuration OK" in out, "%s: pitot -t: %s" % (what, out))
    # and -t does report errors (so the OKs above mean something)
    rc, out = pitot_test_config(cases[-1][1] + "\nno_such_key: 1\n")
    expect(rc == 1 and "unknown key" in out, "pitot -t accepted an unknown key: %s" % out)
    rc, out = pitot_test_config(open(IMAGE_PITOT).read())
    expect(rc == 1 and "no backend" in out, "image config without --backend: %s" % out)


SAMPLE = "conf/pitot.yaml"
# An example line of the sample: "#" then the YAML line it stands for (indented,
# or a key at column 0); prose is "# text" or a lone "#".
EXAMPLE_LINE = re.compile(r"^#(?! \S)(?!$)")


def sample_examples(text):
    """[(first line number, the text with that example block uncommented in
    place)] for every run of example lines of a sample config."""
    lines = text.splitlines(True)
    blocks, prev = [], False
    for i, line in enumerate(lines):
        ex = bool(EXAMPLE_LINE.match(line))
        if ex and not prev:
            blocks.append([])
        if ex:
            blocks[-1].append(i)
        prev = ex
    out = []
    for b in blocks:
        un = list(lines)
        for i in b:
            un[i] = un[i][1:]
        out.append((b[0] + 1, "".join(un)))
    return out


def sample_example_errors(text, tls_dir):
    """What is wrong with uncommenting each example block of `text` in place:
    strict YAML (no duplicate key) and `pitot -t`, with the example's
    /etc/pitot/tls/ files made in tls_dir. [] when every block is valid."""
    bad = []
    for line, un in sample_examples(text):
        un = un.replace("/etc/pitot/tls/", tls_dir + "/")
        try:
            list(yaml.load_all(un, Loader=StrictLoader))
        except yaml.YAMLError as e:
            bad.append("line %d: %s" % (line, str(e).replace("\n", " ")[:200]))
            continue
        rc, out = pitot_test_config(un)
        if rc != 0 or "configuration OK" not in out:
            bad.append("line %d: pitot -t: %s" % (line, out[:200]))
    return bad


def make_example_tls_files(d):
    """Self-signed certificates and keys under the names the sample's
    examples give (a pair per name; the CA file is one of the certificates)."""
    for name in ("api.example.com", "internal.example.com", "pitot-client"):
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", "/CN=" + name, "-keyout", os.path.join(d, name + ".key"),
                            "-out", os.path.join(d, name + ".crt")],
                           capture_output=True, text=True)
        expect(r.returncode == 0, "openssl req: %s" % r.stderr[-300:])
    with open(os.path.join(d, "pitot-client.crt")) as f, \
            open(os.path.join(d, "backend-ca.crt"), "w") as ca:
        ca.write(f.read())


def check_sample_config_examples():
    """Every commented example of the sample config, uncommented where it
    stands, gives a valid configuration: the opentelemetry traces block, the
    tier, the listener certificates and the https backend (no duplicate key,
    no list after [], `pitot -t` passes). And the check finds the traps the
    sample once had: a second, commented opentelemetry: section, and list
    entries after a []."""
    text = open(SAMPLE, encoding="utf-8").read()
    blocks = sample_examples(text)
    heads = [t.splitlines()[n - 1].strip() for n, t in blocks]
    for want in ("traces:", "- name: premium", "- cert: /etc/pitot/tls/api.example.com.crt",
                 "- url: https://gpu-3.internal:8443"):
        expect(any(h.startswith(want) for h in heads),
               "%s: no example block starting with %r (have %s)" % (SAMPLE, want, heads))
    with tempfile.TemporaryDirectory(prefix="pitot-sample-") as d:
        make_example_tls_files(d)
        bad = sample_example_errors(text, d)
        expect(not bad, "%s, uncommented: %s" % (SAMPLE, "; ".join(bad)))
        traces = [t for (n, t), h in zip(blocks, heads) if h == "traces:"][0]
        rc, out = pitot_test_config(traces)
        expect(rc == 0 and "configuration OK" in out, "traces example: %s" % out)
        trap = ("backends: [http://127.0.0.1:18081]\nopentelemetry:\n  metrics: false\n"
                "#opentelemetry:\n#  traces:\n#    endpoint: http://127.0.0.1:4318\n")
        bad = sample_example_errors(trap, d)
        expect(bad and "duplicate key" in bad[0], "the old trap passes the check: %s" % bad)
        listed = "backends: [http://127.0.0.1:18081]\ntiers: []\n#  - name: premium\n"
        expect(sample_example_errors(listed, d), "an entry after tiers: [] passes the check")


def check_compose_configs_run():
    """The compose stack's pitot config with its backends on loopback: two
    simulators started with the compose sim commands, pitot ready, a request
    through; a simulator rejecting a flag would not start."""
    c = compose()
    sims = []
    for name in ("sim-a", "sim-b"):
        argv = [str(a) for a in c["services"][name]["command"]]
        sims.append(start_sim(*argv))
    with open(COMPOSE_PITOT, encoding="utf-8") as f:
        p = start_pitot([s.port for s in sims], config=f.read())
    expect(wait_for(lambda: request(p.port, "GET", "/readyz").status == 200, timeout=10),
           "pitot with %s never became ready" % COMPOSE_PITOT)
    expect(request(p.port, "GET", "/healthz").status == 200, "/healthz")
    r = request(p.port, "POST", "/v1/chat/completions", body=chat_body(max_tokens=3))
    expect(r.status == 200, "chat through pitot: %s" % r.status)


def main():
    check("deploy_files_parse", check_parse)
    check("deploy_dockerfile_stages", check_dockerfile)
    check("deploy_dockerfile_copy_sources", check_dockerfile_copies)
    check("deploy_dockerfile_test_stage_copies", check_dockerfile_test_stage)
    check("deploy_runtime_packages_in_debian", check_runtime_packages_exist)
    check("deploy_runtime_packages_cover_binaries", check_runtime_packages_cover_binaries)
    check("deploy_compose_paths", check_compose_paths)
    check("deploy_compose_profile_names", check_compose_names)
    check("deploy_compose_mount_targets", check_compose_mount_targets)
    check("deploy_promtool", check_promtool)
    check("deploy_metric_names", check_metric_names)
    check("deploy_k8s_objects", check_k8s_objects)
    check("deploy_k8s_pitot", check_k8s_pitot)
    check("deploy_k8s_llama_headless", check_k8s_llama)
    check("deploy_k8s_network_policy", check_k8s_network_policy)
    check("deploy_k8s_service_monitors", check_k8s_service_monitors)
    check("deploy_k8s_dashboard", check_k8s_dashboard)
    check("deploy_k8s_generated_current", check_generated_current)
    check("deploy_configs_pitot_t", check_configs_pass_pitot_t)
    check("deploy_sample_config_examples_uncommented", check_sample_config_examples)
    check("deploy_compose_config_runs", check_compose_configs_run)
    finish()


if __name__ == "__main__":
    main()
