#!/usr/bin/env python3
"""Runs the Argo CD health scripts of docs/gitops/argocd-cm.yaml with a real Lua interpreter
against status objects shaped like the operator's (operator/src/status.rs). CI runs it after
installing Prosody, which brings lua5.4; the scripts use only what Argo CD's Lua 5.1 has."""

import shutil
import subprocess
import sys

import yaml

LUA = shutil.which("lua5.1") or shutil.which("lua5.4") or shutil.which("lua")


def lua_value(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    return "{" + ", ".join(f"[{lua_value(k)}] = {lua_value(x)}" for k, x in v.items()) + "}"


def run(script, obj):
    program = (
        f"obj = {lua_value(obj)}\n"
        f"local function health()\n{script}\nend\n"
        "local hs = health()\n"
        'io.write(hs.status .. "\\n" .. (hs.message or ""))\n'
    )
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, check=True)
    status, _, message = out.stdout.partition("\n")
    return status, message


def cond(type_, status, reason="R", message="m"):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(generation, observed=None, conditions=None):
    o = {"metadata": {"name": "x", "generation": generation}}
    if observed is not None:
        o["status"] = {"observedGeneration": observed, "conditions": conditions or []}
    return o


CASES = {
    "XmppFederation": [
        (obj(1), "Progressing"),
        (obj(2, 1, [cond("Ready", "True", "Serving")]), "Progressing"),
        (obj(2, 2, [cond("Ready", "True", "Serving"), cond("Degraded", "False", "AsExpected")]), "Healthy"),
        (obj(2, 2, [cond("Ready", "False", "WaitingForPods"), cond("Degraded", "False")]), "Progressing"),
        (obj(2, 2, [cond("Ready", "False", "InvalidSpec"), cond("Degraded", "True", "InvalidSpec", "spec.domains: bad")]), "Degraded"),
    ],
    "XmppAllowedPartner": [
        (obj(1), "Progressing"),
        (obj(1, 1, [cond("Accepted", "True", "InPolicy")]), "Healthy"),
        (obj(1, 1, [cond("Accepted", "False", "DomainConflict")]), "Degraded"),
        (obj(1, 1, [cond("Accepted", "False", "NotSelected"), cond("Warning", "True", "RiskyNegotiation")]), "Degraded"),
        (obj(3, 2, [cond("Accepted", "True", "InPolicy")]), "Progressing"),
    ],
    "ExternalAccessPolicy": [
        (obj(1), "Progressing"),
        (obj(1, 1, [cond("Accepted", "True", "InPolicy")]), "Healthy"),
        (obj(1, 1, [cond("Accepted", "False", "Tie")]), "Degraded"),
    ],
}


def main():
    if LUA is None:
        print("no Lua interpreter (apt-get install lua5.4)", file=sys.stderr)
        sys.exit(1)
    with open("docs/gitops/argocd-cm.yaml") as f:
        data = yaml.safe_load(f)["data"]
    checked = 0
    for kind, cases in CASES.items():
        script = data[f"resource.customizations.health.xmppfed.io_{kind}"]
        for o, want in cases:
            got, message = run(script, o)
            if got != want:
                print(f"{kind} {o.get('status')}: want {want}, got {got} ({message})", file=sys.stderr)
                sys.exit(1)
            checked += 1
    print(f"Argo CD health scripts: {checked} cases pass ({LUA})")


if __name__ == "__main__":
    main()
