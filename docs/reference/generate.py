#!/usr/bin/env python3
"""Writes docs/reference/crds.md from the generated CRDs in crds/ and the manifests in examples/.

The field text is the CRD's description, which is the doc comment on the Rust type (the same
text `kubectl explain` shows); validation, defaults and CEL messages come from the schema; the
example value of each field comes from examples/. Run from the repository root:

    python3 docs/reference/generate.py            # rewrite docs/reference/crds.md
    python3 docs/reference/generate.py --check    # fail when the file is out of date (CI)
"""

import glob
import json
import sys

import yaml

OUT = "docs/reference/crds.md"
KINDS = ["XmppFederation", "XmppAllowedPartner", "ExternalAccessPolicy"]
# Kubernetes' own types: their fields are documented upstream (`kubectl explain` shows them).
UPSTREAM = {
    "affinity": "Kubernetes `Affinity`",
    "tolerations": "list of Kubernetes `Toleration`",
    "resources": "Kubernetes `ResourceRequirements`",
    "partnerSelector": "Kubernetes `LabelSelector`",
    "accessPolicySelector": "Kubernetes `LabelSelector`",
    "conditions": "list of Kubernetes `Condition` (`type`, `status`, `reason`, `message`, `observedGeneration`, `lastTransitionTime`)",
}


def load_crds():
    crds = {}
    for path in sorted(glob.glob("crds/*.yaml")):
        with open(path) as f:
            crd = yaml.safe_load(f)
        crds[crd["spec"]["names"]["kind"]] = (path, crd)
    return crds


def load_examples():
    examples = {}
    for path in sorted(glob.glob("examples/*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc and doc.get("kind") in KINDS:
                    examples.setdefault(doc["kind"], []).append((path, doc))
    return examples


def example_value(objects, path):
    """The first value at `path` (a list of keys; lists are looked into) in any example."""

    def walk(value, keys):
        if not keys:
            yield value
            return
        if isinstance(value, list):
            for item in value:
                yield from walk(item, keys)
        elif isinstance(value, dict) and keys[0] in value:
            yield from walk(value[keys[0]], keys[1:])

    for _, obj in objects:
        for found in walk(obj, path):
            return found
    return None


def inline(value):
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return "`" + text.replace("`", "'") + "`"


def type_of(schema):
    t = schema.get("type")
    if t == "array":
        return "list of " + type_of(schema.get("items", {}))
    if t == "object" and "additionalProperties" in schema:
        return "map of string to " + type_of(schema["additionalProperties"])
    if schema.get("x-kubernetes-int-or-string"):
        return "integer or string"
    return t or "object"


def constraints(schema):
    out = []
    if "enum" in schema:
        out.append("one of " + ", ".join(inline(v) for v in schema["enum"]))
    for key, words in [
        ("minimum", "at least"),
        ("maximum", "at most"),
        ("minLength", "length at least {}"),
        ("maxLength", "length at most {}"),
        ("minItems", "at least {} item(s)"),
        ("maxItems", "at most {} item(s)"),
    ]:
        if key in schema:
            out.append(words.format(schema[key]) if "{}" in words else f"{words} {schema[key]}")
    if "pattern" in schema:
        out.append("matches " + inline(schema["pattern"]))
    if schema.get("x-kubernetes-list-type") == "set":
        out.append("no duplicates")
    for rule in schema.get("x-kubernetes-validations", []):
        out.append(rule["message"].strip() if "message" in rule else inline(rule["rule"]))
    items = schema.get("items")
    if isinstance(items, dict):
        out.extend("each item: " + c for c in constraints(items))
    return out


def describe(schema):
    return " ".join((schema.get("description") or "").split())


def fields(lines, schema, path, required, examples):
    for name, sub in (schema.get("properties") or {}).items():
        here = path + [name]
        dotted = ".".join(here)
        lines += [f"#### `{dotted}`", ""]
        facts = [type_of(sub)]
        if name in required:
            facts.append("**required**")
        if "default" in sub:
            facts.append("default " + inline(sub["default"]))
        if sub.get("x-kubernetes-validations") and any(
            "oldSelf" in r.get("rule", "") for r in sub["x-kubernetes-validations"]
        ):
            facts.append("immutable")
        lines += ["*" + ", ".join(facts) + "*", ""]
        if describe(sub):
            lines += [describe(sub), ""]
        if name in UPSTREAM:
            lines += [f"{UPSTREAM[name]}: see `kubectl explain {examples['kind'].lower()}.{dotted}`.", ""]
        for c in constraints(sub):
            lines.append(f"- {c}")
        value = example_value(examples["objects"], here)
        if value is not None and not isinstance(value, dict):
            lines.append(f"- example: {inline(value)}")
        if lines[-1] != "":
            lines.append("")
        if name in UPSTREAM:
            continue
        target = sub.get("items", {}) if sub.get("type") == "array" else sub
        if target.get("properties"):
            fields(lines, target, here, set(target.get("required", [])), examples)


def render():
    crds = load_crds()
    examples = load_examples()
    lines = [
        "# CRD field reference",
        "",
        "<!-- Generated by docs/reference/generate.py from crds/ and examples/; do not edit. -->",
        "",
        "Every field of the three kinds (API group `xmppfed.io`, version `v1alpha1`). The text is",
        "the doc comment on the Rust type, the same that `kubectl explain` shows; validation is",
        "what the API server (and `xmppfed validate`) enforce; examples come from",
        "[`examples/`](../../examples/). Design decisions behind the fields: [api.md](../api.md).",
        "",
    ]
    for kind in KINDS:
        path, crd = crds[kind]
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        lines += [
            f"## {kind}",
            "",
            f"`{crd['spec']['group']}/{version['name']}`, {crd['spec']['scope'].lower()}; "
            f"short names {', '.join('`' + s + '`' for s in names.get('shortNames', []))}; "
            f"category `{', '.join(names.get('categories', []))}`; CRD [`{path}`](../../{path}).",
            "",
            describe(schema),
            "",
        ]
        objs = examples.get(kind, [])
        if objs:
            file, first = objs[0]
            lines += [f"Example (from [`{file}`](../../{file})):", "", "```yaml"]
            lines.append(yaml.safe_dump(first, sort_keys=False, allow_unicode=True).rstrip())
            lines += ["```", ""]
        for rule in schema["properties"]["spec"].get("x-kubernetes-validations", []):
            if rule is schema["properties"]["spec"].get("x-kubernetes-validations", [])[0]:
                lines += ["Rules across fields:", ""]
            lines.append(f"- {rule['message'].strip()}")
        if schema["properties"]["spec"].get("x-kubernetes-validations"):
            lines.append("")
        context = {"kind": kind, "objects": objs}
        for part in ["spec", "status"]:
            sub = schema["properties"].get(part)
            if not sub:
                continue
            lines += [f"### `{part}`", ""]
            if describe(sub):
                lines += [describe(sub), ""]
            fields(lines, sub, [part], set(sub.get("required", [])), context)
    return "\n".join(lines).rstrip() + "\n"


def main():
    text = render()
    if "--check" in sys.argv[1:]:
        with open(OUT) as f:
            if f.read() != text:
                print(f"{OUT} is out of date: run python3 docs/reference/generate.py", file=sys.stderr)
                sys.exit(1)
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
