#!/usr/bin/env python3
"""The Helm chart's RBAC is the operator's RBAC, rule for rule.

usage: rbac-check.py RENDERED_CHART.yaml PRINT_RBAC.yaml

RENDERED_CHART.yaml is `helm template` output (RBAC enabled); PRINT_RBAC.yaml is what
`xmppfed-operator --print-rbac` prints (operator/src/rbac.rs). Checks:

- the chart's ClusterRole grants exactly the (apiGroup, resource, verb) triples of the printed
  ClusterRole, and its leader-election Role exactly those of the printed Role: no more, no less;
  no resourceNames or nonResourceURLs either side does not have;
- each rule of the chart has the comment the printed rule has, in the same order (the template
  is meant to be a copy of the printed rules, comments included);
- the ClusterRoleBinding binds the ClusterRole, and the RoleBinding the Role, to the operator's
  ServiceAccount only (the Deployment's serviceAccountName, in the Deployment's namespace), and
  the Role sits in that namespace, where the operator takes its Lease (POD_NAMESPACE).

Exit status 0 when everything holds, 1 with one line per problem otherwise.
"""

import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("rbac-check.py needs PyYAML (python3-yaml or `pip install pyyaml`)")


def documents(text):
    """(parsed object, its source text) for each non-empty YAML document of a stream."""
    out = []
    for chunk in re.split(r"(?m)^---[ \t]*(?:#.*)?$", text):
        obj = yaml.safe_load(chunk)
        if isinstance(obj, dict) and obj.get("kind"):
            out.append((obj, chunk))
    return out


def commented_rules(chunk):
    """The comment line right above each `- apiGroups:` rule of a Role's source text."""
    comments = []
    lines = chunk.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*-\s+apiGroups:", line):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            m = re.match(r"^\s*#\s?(.*?)\s*$", lines[j]) if j >= 0 else None
            comments.append(m.group(1) if m else None)
    return comments


def grants(role):
    """Every (apiGroup, resource, verb, resourceName) a role grants; '*' for all names."""
    out = set()
    for rule in role.get("rules") or []:
        if rule.get("nonResourceURLs"):
            for url in rule["nonResourceURLs"]:
                for verb in rule.get("verbs") or []:
                    out.add(("<nonResourceURL>", url, verb, "*"))
        names = rule.get("resourceNames") or ["*"]
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def fmt(triple):
    group, resource, verb, name = triple
    s = f"{group or 'core'}/{resource} {verb}"
    return s if name == "*" else f"{s} (resourceNames: {name})"


def one(objs, kind, problems, what):
    found = [o for o in objs if o[0]["kind"] == kind]
    if len(found) != 1:
        problems.append(f"{what}: expected exactly one {kind}, found {len(found)}")
        return None
    return found[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rendered = documents(open(sys.argv[1], encoding="utf-8").read())
    printed = documents(open(sys.argv[2], encoding="utf-8").read())
    problems = []

    want_cr = one(printed, "ClusterRole", problems, "--print-rbac")
    want_role = one(printed, "Role", problems, "--print-rbac")
    have_cr = one(rendered, "ClusterRole", problems, "chart")
    have_role = one(rendered, "Role", problems, "chart")
    deployment = one(rendered, "Deployment", problems, "chart")
    crb = one(rendered, "ClusterRoleBinding", problems, "chart")
    rb = one(rendered, "RoleBinding", problems, "chart")
    if problems:
        print("\n".join(problems))
        return 1

    for label, want, have in (
        ("ClusterRole", want_cr, have_cr),
        ("leader-election Role", want_role, have_role),
    ):
        w, h = grants(want[0]), grants(have[0])
        for t in sorted(h - w):
            problems.append(f"chart {label} {have[0]['metadata']['name']} grants {fmt(t)}, which the operator does not ask for")
        for t in sorted(w - h):
            problems.append(f"chart {label} {have[0]['metadata']['name']} lacks {fmt(t)}, which the operator needs")
        wc, hc = commented_rules(want[1]), commented_rules(have[1])
        if wc != hc:
            if len(wc) != len(hc):
                problems.append(f"chart {label} has {len(hc)} rules, --print-rbac {len(wc)}")
            for i, (w, h) in enumerate(zip(wc, hc)):
                if w != h:
                    problems.append(f"chart {label}, rule {i + 1}: comment {h!r}, --print-rbac says {w!r}")
        elif any(c is None for c in hc):
            problems.append(f"chart {label}: a rule without a comment saying why")

    pod = deployment[0]["spec"]["template"]["spec"]
    namespace = deployment[0]["metadata"].get("namespace")
    sa = pod.get("serviceAccountName") or "default"
    if not namespace:
        problems.append("chart Deployment has no metadata.namespace")
    if have_role[0]["metadata"].get("namespace") != namespace:
        problems.append(
            f"leader-election Role is in namespace {have_role[0]['metadata'].get('namespace')}, "
            f"the operator (and its Lease, POD_NAMESPACE) in {namespace}"
        )
    env = {e["name"]: e for e in pod["containers"][0].get("env") or []}
    field = (env.get("POD_NAMESPACE", {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if field != "metadata.namespace":
        problems.append("POD_NAMESPACE is not the pod's own namespace (downward API metadata.namespace)")

    for label, binding, role_kind, role in (
        ("ClusterRoleBinding", crb, "ClusterRole", have_cr),
        ("RoleBinding", rb, "Role", have_role),
    ):
        b = binding[0]
        ref = b.get("roleRef") or {}
        if (ref.get("apiGroup"), ref.get("kind"), ref.get("name")) != (
            "rbac.authorization.k8s.io",
            role_kind,
            role[0]["metadata"]["name"],
        ):
            problems.append(f"{label} {b['metadata']['name']} refers to {ref}, not {role_kind} {role[0]['metadata']['name']}")
        if label == "RoleBinding" and b["metadata"].get("namespace") != namespace:
            problems.append(f"RoleBinding is in namespace {b['metadata'].get('namespace')}, the Role in {namespace}")
        subjects = b.get("subjects") or []
        expected = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
        if subjects != expected:
            problems.append(f"{label} {b['metadata']['name']} binds {subjects}, expected only {expected}")

    accounts = [o[0] for o in rendered if o[0]["kind"] == "ServiceAccount"]
    if accounts and not any(a["metadata"]["name"] == sa and a["metadata"].get("namespace") == namespace for a in accounts):
        problems.append(f"the Deployment runs as ServiceAccount {sa}, which the chart does not render")

    if problems:
        print("\n".join(problems))
        return 1
    print(
        f"rbac-check: ClusterRole {have_cr[0]['metadata']['name']} ({len(grants(have_cr[0]))} grants) and "
        f"Role {have_role[0]['metadata']['name']} ({len(grants(have_role[0]))} grants) match --print-rbac; "
        f"both bound to ServiceAccount {namespace}/{sa} only"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
