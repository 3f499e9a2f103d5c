#!/usr/bin/env python3
"""gen-catalog.py: writes a realistic, deterministic Backstage catalog for tests,
benchmarks and demos of gaggle.

The catalog has an old dataset (a Resource, default resource:default/user-ds-v1)
and its replacement (user-ds-v2), groups with systems and users, and --consumers
components across --owners groups: most depend on the old dataset directly,
some only through other consumers (with one dependency cycle, for transitive
tests), some not at all; a few carry `myorg.org/security: "true"`. Refs are
written in every form Backstage accepts (with and without kind or namespace,
in mixed case). A root Location (catalog-info.yaml) lists per-team Locations,
which list each component's catalog-info.yaml.

With --repos each component folder is also a small git repository: SQL, YAML
and Python files that use the dataset's table, a check.sh the consumer's own
check runs (passes when no reference to the old table remains and the files
are well-formed) and a precheck.sh (exit 0: needs migration, 1: already done).
About 2% of the direct consumers each get the annotation
gaggle.dev/demo-behaviour = already-migrated (the repo already uses the new
table), flaky (check.sh fails with exit 75 on the first attempt, then passes)
or broken-check (check.sh always fails).

Point gaggle at OUT/catalog-info.yaml (the root Location). Loading OUT as a
directory works too without --repos; with --repos the repositories' own YAML
files are not entities and would be reported as such.

OUT/.gen-summary.json lists what was generated (counts, the exact direct and
transitive consumer refs, behaviours) so tests can compare.
Only the Python standard library is used; the same --seed gives the same files.
"""

import argparse
import json
import os
import random
import re
import stat
import subprocess
import sys

WORDS_A = [
    "billing", "checkout", "search", "ledger", "payments", "profile", "catalog",
    "orders", "inventory", "shipping", "loyalty", "fraud", "growth", "identity",
    "pricing", "reviews", "support", "messaging", "analytics", "reporting",
    "recommend", "marketing", "partner", "invoice", "refund", "session", "audit",
]
WORDS_B = [
    "api", "service", "worker", "etl", "dashboard", "sync", "exporter", "loader",
    "gateway", "indexer", "scheduler", "notifier", "pipeline", "report", "ui",
]
TEAM_WORDS = [
    "data-platform", "payments", "growth", "identity", "search", "storefront",
    "logistics", "finance", "risk", "insights", "mobile", "web", "core", "ml",
    "infra", "support", "partners", "marketing", "ledger", "catalog",
]
FIRST_NAMES = [
    "ada", "alan", "grace", "linus", "barbara", "ken", "dennis", "margaret",
    "edsger", "donald", "frances", "john", "radia", "tim", "anita", "bjarne",
]
TAGS = ["python", "sql", "java", "go", "etl", "dashboard", "batch", "streaming", "c++"]
LIFECYCLES = ["production"] * 7 + ["experimental"] * 2 + ["deprecated"]
TYPES = ["service"] * 5 + ["website", "library", "data-pipeline", "data-pipeline"]
BEHAVIOURS = ["already-migrated", "flaky", "broken-check"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "gaggle demo",
    "GIT_AUTHOR_EMAIL": "demo@example.com",
    "GIT_COMMITTER_NAME": "gaggle demo",
    "GIT_COMMITTER_EMAIL": "demo@example.com",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


PLAIN_RE = re.compile(r"[A-Za-z0-9./_][A-Za-z0-9 ._/@:+#-]*")
SPECIAL_RE = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|0o[0-7]+|~"
    r"|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN")


def yaml_scalar(value):
    """A YAML scalar that reads back as the same string: plain when that is
    unambiguous (as people write catalog files), quoted otherwise."""
    if (PLAIN_RE.fullmatch(value) and not SPECIAL_RE.fullmatch(value)
            and ": " not in value and " #" not in value and not value.endswith((":", " "))):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    return json.dumps(value)


def emit(obj, indent=0):
    """Block-style YAML for dicts, lists and strings (every string quoted)."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.extend(emit(value, indent + 2))
            elif isinstance(value, list):
                lines.append(f"{pad}{key}: []")
            elif isinstance(value, dict):
                lines.append(f"{pad}{key}: {{}}")
            else:
                lines.append(f"{pad}{key}: {yaml_scalar(value)}")
    elif isinstance(obj, list):
        for value in obj:
            if isinstance(value, (dict, list)) and value:
                sub = emit(value, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(value)}")
    return lines


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def docs(entities):
    return "".join("---\n" + "\n".join(emit(e)) + "\n" for e in entities)


def entity(kind, name, spec, namespace=None, **meta):
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata.update({k: v for k, v in meta.items() if v})
    return {"apiVersion": "backstage.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def canon(kind, namespace, name):
    return f"{kind.lower()}:{namespace.lower()}/{name.lower()}"


def ref_text(rng, kind, namespace, name, holder_ns, default_kind=None):
    """One of the textual forms Backstage accepts for the same entity."""
    forms = [f"{kind.lower()}:{namespace}/{name}"]
    if namespace == holder_ns:
        forms.append(f"{kind.lower()}:{name}")
        forms.append(f"{kind}:{name.upper() if rng.random() < 0.5 else name}")
        if default_kind and default_kind.lower() == kind.lower():
            forms.append(name)
            forms.append(f"{namespace}/{name}")
    forms.append(f"{kind}:{namespace.upper()}/{name}")
    return rng.choice(forms)


def repo_files(name, table, behaviour):
    sql = (
        f"-- Daily report for {name}.\n"
        f"SELECT u.id, u.email, u.created_at\n"
        f"FROM {table} AS u\n"
        f"WHERE u.active = TRUE;\n"
    )
    config = (
        f"# Pipeline settings for {name}.\n"
        f"pipeline: {name}\n"
        f"source:\n"
        f"  dataset: {table}\n"
        f"  format: parquet\n"
        f"schedule: \"0 3 * * *\"\n"
    )
    script = (
        f'"""Loads rows for {name}."""\n'
        f'TABLE = "{table}"\n'
        f"\n\n"
        f"def query(limit=100):\n"
        f'    return f"SELECT * FROM {{TABLE}} LIMIT {{limit}}"\n'
        f"\n\n"
        f'if __name__ == "__main__":\n'
        f"    print(query())\n"
    )
    return {"sql/report.sql": sql, "config/pipeline.yaml": config, "scripts/load.py": script}


CHECK_HEAD = """#!/bin/sh
# The consumer's own check: passes when no reference to {old} remains and the
# SQL, YAML and Python files are well-formed.
set -u
cd "$(dirname "$0")" || exit 2
"""

CHECK_FLAKY = """# demo behaviour: flaky (fails once with the retryable exit code 75)
if [ -n "${GAGGLE_ATTEMPT:-}" ]; then
    if [ "$GAGGLE_ATTEMPT" -le 1 ]; then echo "transient failure (flaky demo)" >&2; exit 75; fi
elif [ ! -e .flaky-attempted ]; then
    : > .flaky-attempted
    echo "transient failure (flaky demo)" >&2
    exit 75
fi
"""

CHECK_BROKEN = """# demo behaviour: broken-check (always fails)
echo "check is broken (broken-check demo)" >&2
exit 1
"""

CHECK_BODY = """if grep -rn --exclude=check.sh --exclude=precheck.sh --exclude-dir=.git '{old}' . >&2; then
    echo "still references {old}" >&2
    exit 1
fi
python3 - <<'EOF' || exit 1
import ast, re, sys
ast.parse(open("scripts/load.py").read(), "scripts/load.py")
sql = open("sql/report.sql").read()
body = "\\n".join(l for l in sql.splitlines() if not l.startswith("--"))
if not body.strip().endswith(";") or body.count("(") != body.count(")"):
    sys.exit("sql/report.sql is not well-formed")
line_re = re.compile(r"^( *)(- )?[A-Za-z0-9_.-]+:( .*)?$")
for n, line in enumerate(open("config/pipeline.yaml").read().splitlines(), 1):
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    if "\\t" in line or not line_re.match(line):
        sys.exit(f"config/pipeline.yaml:{n}: not well-formed")
EOF
echo "check passed"
"""

PRECHECK = """#!/bin/sh
# Exit 0 when the repository still uses {old} (needs migration), 1 when not.
cd "$(dirname "$0")" || exit 2
if grep -rq --exclude=check.sh --exclude=precheck.sh --exclude-dir=.git '{old}' .; then
    exit 0
fi
exit 1
"""


def make_repo(folder, files, env):
    for rel, text in files.items():
        mode = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH \
            if rel.endswith(".sh") else None
        write(os.path.join(folder, rel), text, mode)
    run = lambda *args: subprocess.run(["git", "-C", folder, *args], check=True, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("init", "-q")
    run("add", "-A")
    run("commit", "-q", "-m", "Initial import")


def generate(args):
    rng = random.Random(args.seed)
    out = os.path.abspath(args.out)
    if os.path.exists(os.path.join(out, "catalog-info.yaml")) and not args.force:
        sys.exit(f"gen-catalog: {out} already holds a catalog (use --force)")
    os.makedirs(out, exist_ok=True)
    old_table = args.dataset.replace("-", "_")
    new_table = args.new_dataset.replace("-", "_")
    counts = {}

    def count(kind):
        counts[kind] = counts.get(kind, 0) + 1

    # Groups, users and systems.
    teams = []
    for i in range(args.owners):
        word = TEAM_WORDS[i % len(TEAM_WORDS)]
        teams.append(f"team-{word}" if i < len(TEAM_WORDS) else f"team-{word}-{i}")
    org = [entity("Group", "engineering", {"type": "department", "children": teams},
                  description="All engineering teams")]
    count("Group")
    users = []
    for i, team in enumerate(teams):
        members = []
        for k in range(2):
            user = f"{FIRST_NAMES[(i * 2 + k) % len(FIRST_NAMES)]}.{team[5:]}-{k}"
            members.append(user)
            users.append(entity("User", user, {"profile": {"email": f"{user}@example.com"},
                                               "memberOf": [team]}))
            count("User")
        org.append(entity("Group", team, {"type": "team", "parent": "engineering",
                                          "children": [], "members": members},
                          description=f"Team {team[5:]}"))
        count("Group")
    systems = []
    for team in teams:
        systems.append(entity("System", f"{team[5:]}-platform",
                              {"owner": f"group:default/{team}"},
                              description=f"Everything {team} runs"))
        count("System")
    write(os.path.join(out, "org", "groups.yaml"), docs(org + users))
    write(os.path.join(out, "org", "systems.yaml"), docs(systems))

    # Datasets.
    datasets = [
        entity("Resource", args.dataset, {"type": "dataset", "owner": "group:default/" + teams[0],
                                          "system": f"{teams[0][5:]}-platform"},
               description=f"User dataset, table {old_table} (being retired)",
               tags=["dataset", "pii"]),
        entity("Resource", args.new_dataset, {"type": "dataset",
                                              "owner": "group:default/" + teams[0],
                                              "system": f"{teams[0][5:]}-platform"},
               description=f"User dataset, table {new_table}", tags=["dataset", "pii"]),
        entity("Resource", "orders-db", {"type": "database", "owner": teams[-1]},
               description="Orders database"),
    ]
    for _ in datasets:
        count("Resource")
    write(os.path.join(out, "datasets", "datasets.yaml"), docs(datasets))

    # Components.
    comps = []  # dicts: name, ns, team, role, deps (list of canonical refs), dep_texts
    direct_pool = []
    consumer_pool = []
    for i in range(args.consumers):
        name = f"{rng.choice(WORDS_A)}-{rng.choice(WORDS_B)}-{i:05d}"
        ns = "payments" if rng.random() < 0.03 else "default"
        team = teams[rng.randrange(len(teams))]
        r = rng.random()
        if r < 0.05 or (r < 0.15 and not direct_pool):
            role = "unrelated"
        elif r < 0.15:
            role = "transitive"
        else:
            role = "direct"
        c = {"name": name, "ns": ns, "team": team, "role": role, "deps": [], "texts": []}

        def depend(kind, dns, dname, c=c):
            c["deps"].append(canon(kind, dns, dname))
            c["texts"].append(ref_text(rng, kind, dns, dname, c["ns"]))

        if role == "direct":
            depend("Resource", "default", args.dataset)
            if consumer_pool and rng.random() < 0.1:
                up = rng.choice(consumer_pool)
                depend("Component", up["ns"], up["name"])
        elif role == "transitive":
            for up in rng.sample(direct_pool, min(len(direct_pool), rng.choice([1, 1, 2]))):
                depend("Component", up["ns"], up["name"])
        elif rng.random() < 0.5:
            depend("Resource", "default", "orders-db")
        comps.append(c)
        if role == "direct":
            direct_pool.append(c)
        if role != "unrelated":
            consumer_pool.append(c)

    # One cycle among transitive consumers (A -> B -> A), when there are two.
    trans = [c for c in comps if c["role"] == "transitive"]
    if len(trans) >= 2:
        a, b = trans[0], trans[1]
        for x, y in ((a, b), (b, a)):
            key = canon("Component", y["ns"], y["name"])
            if key not in x["deps"]:
                x["deps"].append(key)
                x["texts"].append(f"component:{y['ns']}/{y['name']}")

    # Security annotations and demo behaviours.
    for c in comps:
        c["security"] = False
        c["behaviour"] = None
    if comps:
        for c in rng.sample(comps, max(1, round(len(comps) * 0.02))):
            c["security"] = True
    if args.repos and len(direct_pool) >= len(BEHAVIOURS):
        # about 2% each, at least one each
        per = max(1, round(len(direct_pool) * 0.02))
        chosen = rng.sample(direct_pool, per * len(BEHAVIOURS))
        for k, c in enumerate(chosen):
            c["behaviour"] = BEHAVIOURS[k // per]

    env = dict(os.environ)
    env.update(GIT_ENV)
    team_targets = {t: [] for t in teams}
    for c in comps:
        folder = os.path.join(out, "components", c["name"])
        annotations = {
            "backstage.io/source-location":
                f"url:https://git.example.com/{c['team']}/{c['name']}/tree/main/",
        }
        if c["security"]:
            annotations["myorg.org/security"] = "true"
        if c["behaviour"]:
            annotations["gaggle.dev/demo-behaviour"] = c["behaviour"]
        owner_forms = [c["team"], f"group:{c['team']}", f"group:default/{c['team']}"]
        if c["ns"] != "default":
            owner_forms = [f"group:default/{c['team']}", f"default/{c['team']}"]
        spec = {
            "type": rng.choice(TYPES),
            "lifecycle": rng.choice(LIFECYCLES),
            "owner": rng.choice(owner_forms),
            "system": (f"{c['team'][5:]}-platform" if c["ns"] == "default"
                       else f"system:default/{c['team'][5:]}-platform"),
        }
        if c["texts"]:
            spec["dependsOn"] = c["texts"]
        e = entity("Component", c["name"], spec, c["ns"] if c["ns"] != "default" else None,
                   description=f"{c['name'].replace('-', ' ')} owned by {c['team']}",
                   annotations=annotations,
                   tags=sorted(set(rng.sample(TAGS, rng.choice([1, 2, 3])))))
        count("Component")
        write(os.path.join(folder, "catalog-info.yaml"), docs([e]))
        team_targets[c["team"]].append(f"../components/{c['name']}/catalog-info.yaml")
        if args.repos:
            table = old_table
            if c["behaviour"] == "already-migrated":
                table = new_table
            elif c["role"] != "direct":
                table = c["name"].replace("-", "_") + "_events"
            files = repo_files(c["name"], table, c["behaviour"])
            check = CHECK_HEAD.replace("{old}", old_table)
            if c["behaviour"] == "flaky":
                check += CHECK_FLAKY
            elif c["behaviour"] == "broken-check":
                check += CHECK_BROKEN
            check += CHECK_BODY.replace("{old}", old_table)
            files["check.sh"] = check
            files["precheck.sh"] = PRECHECK.replace("{old}", old_table)
            files[".gitignore"] = ".flaky-attempted\n"
            make_repo(folder, files, env)

    # Locations: the root lists org, datasets and one Location per team.
    locations = []
    for team in teams:
        loc = entity("Location", f"{team}-components",
                     {"type": "file", "targets": team_targets[team] or []})
        if not team_targets[team]:
            loc["spec"] = {"type": "file", "target": "../datasets/datasets.yaml"}
        write(os.path.join(out, "teams", f"{team}.yaml"), docs([loc]))
        locations.append(f"./teams/{team}.yaml")
        count("Location")
    root = entity("Location", "generated-catalog", {
        "type": "file",
        "targets": ["./org/groups.yaml", "./org/systems.yaml", "./datasets/datasets.yaml"]
        + locations,
    }, description="Generated by gen-catalog.py")
    count("Location")
    write(os.path.join(out, "catalog-info.yaml"), docs([root]))

    # Expected consumer sets, computed from the generated edges.
    dataset_ref = canon("Resource", "default", args.dataset)
    by_ref = {canon("Component", c["ns"], c["name"]): c for c in comps}
    direct = sorted(r for r, c in by_ref.items() if dataset_ref in c["deps"])
    consumers_of = {}
    for r, c in by_ref.items():
        for d in c["deps"]:
            consumers_of.setdefault(d, []).append(r)
    seen, todo = set(), [dataset_ref]
    while todo:
        for r in consumers_of.get(todo.pop(), []):
            if r not in seen and r != dataset_ref:
                seen.add(r)
                todo.append(r)
    summary = {
        "seed": args.seed,
        "root": "catalog-info.yaml",
        "entities": sum(counts.values()),
        "counts": dict(sorted(counts.items())),
        "dataset": {"from": dataset_ref, "to": canon("Resource", "default", args.new_dataset),
                    "fromTable": old_table, "toTable": new_table},
        "direct": direct,
        "transitive": sorted(seen),
        "unrelated": sorted(r for r, c in by_ref.items() if c["role"] == "unrelated"),
        "security": sorted(r for r, c in by_ref.items() if c["security"]),
        "behaviours": {b: sorted(r for r, c in by_ref.items() if c["behaviour"] == b)
                       for b in BEHAVIOURS},
        "repos": bool(args.repos),
    }
    write(args.summary or os.path.join(out, ".gen-summary.json"),
          json.dumps(summary, indent=1) + "\n")
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--consumers", type=int, default=100, help="components to generate")
    p.add_argument("--owners", type=int, default=10, help="owning groups")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dataset", default="user-ds-v1", help="old dataset Resource name")
    p.add_argument("--new-dataset", default="user-ds-v2", help="new dataset Resource name")
    p.add_argument("--repos", action="store_true", help="make a git repo per component")
    p.add_argument("--force", action="store_true", help="write into a folder holding a catalog")
    p.add_argument("--summary", help="where to write the JSON summary "
                   "(default: OUT/.gen-summary.json, hidden so directory loads skip it)")
    args = p.parse_args()
    if args.consumers < 0 or args.owners < 1:
        p.error("--consumers must be >= 0 and --owners >= 1")
    s = generate(args)
    print(f"gen-catalog: {s['entities']} entities, {len(s['direct'])} direct and "
          f"{len(s['transitive'])} transitive consumers of {s['dataset']['from']} in {args.out}")


if __name__ == "__main__":
    main()
