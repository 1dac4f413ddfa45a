#!/usr/bin/env python3
"""Lint and render charts/runsecrets with real Helm (Helm's Go SDK through helm-python-sdk).

    python3 tests/helm/render.py                      # default values, tls.mode=server
    python3 tests/helm/render.py --tls-mode secret --set tls.existingSecret=x --set tls.caBundle=...
    python3 tests/helm/render.py --manifests   # what manifests/runsecrets.yaml holds

manifests/runsecrets.yaml is regenerated, with every other generated file, by
`REGENERATE=1 cargo test --test it generated:: -- --include-ignored`.

Prints the rendered objects as multi-document YAML on stdout, in Helm's install order. Exits 1
with the lint findings or the render error on stderr when the chart does not lint clean or does
not render.

Run with a python that lacks helm_python, it first creates (once) the virtualenv that
tests/chart/main.rs also uses, ${CARGO_TARGET_DIR:-target}/tmp/helm-venv, installs
tests/helm/requirements.txt into it, and re-runs itself there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHART = REPO / "charts" / "runsecrets"
REQUIREMENTS = HERE / "requirements.txt"
MARKER = ".runsecrets-requirements"

# manifests/runsecrets.yaml: the install for `kubectl apply -f`.
MANIFESTS_RELEASE = "runsecrets"
MANIFESTS_NAMESPACE = "runsecrets"
# The chart's default values: tls.mode=server renders the same bytes every time (the server makes
# and keeps its CA) and needs nothing else on the cluster (no cert-manager).

# Helm's releaseutil.InstallOrder; other kinds (CSIDriver, cert-manager's) come after, by name.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]

DOC_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def default_venv() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO / "target"
    return base / "tmp" / "helm-venv"


def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv first when it is missing or outdated."""
    python = venv / "bin" / "python"
    wanted = REQUIREMENTS.read_text()
    marker = venv / MARKER
    if marker.is_file() and marker.read_text() == wanted and python.exists():
        return python
    # Build beside it and rename, so a concurrent run never sees a half-installed venv.
    staging = venv.with_name(f"{venv.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    print(f"render.py: installing {wanted.strip()} into {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)
    subprocess.run(
        [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    (staging / MARKER).write_text(wanted)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        staging.rename(venv)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run won the race
    return python


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class native_stderr_silenced:
    """Helm's Go code logs through slog straight to fd 2 (e.g. each `required` it meets while
    linting); the findings that matter are reported by this script instead."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


def fail(message: str) -> None:
    print(f"render.py: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls-mode", choices=["server", "helm", "secret", "certManager"],
                        help="shorthand for --set tls.mode=MODE")
    parser.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                        help="values file (YAML), repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="K=V",
                        help="as helm --set, repeatable")
    parser.add_argument("--set-json", action="append", default=[], metavar="K=JSON",
                        help="as helm --set-json, repeatable")
    parser.add_argument("--release", default=MANIFESTS_RELEASE)
    parser.add_argument("-n", "--namespace", default=MANIFESTS_NAMESPACE)
    parser.add_argument("--manifests", action="store_true",
                        help="render manifests/runsecrets.yaml: default values, plus the "
                             "Namespace")
    parser.add_argument("--venv", type=Path, default=None,
                        help="virtualenv to bootstrap into when helm_python is missing")
    args = parser.parse_args()

    try:
        import helm_python as helm
    except ImportError:
        python = ensure_venv(args.venv or default_venv())
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])

    helm.disable_logging()

    if args.manifests:
        if args.values or args.set or args.set_json or args.tls_mode:
            fail("--manifests renders the default values only")
        args.release, args.namespace = MANIFESTS_RELEASE, MANIFESTS_NAMESPACE

    values: dict = {}
    try:
        for path in args.values:
            values = deep_merge(values, helm.values_from_yaml(Path(path).read_text()))
        for expr in args.set:
            values = deep_merge(values, helm.parse_set_string(expr))
        for expr in args.set_json:
            values = deep_merge(values, helm.parse_set_json(expr))
    except (OSError, helm.HelmError) as e:
        fail(f"bad values: {e}")
    if args.tls_mode:
        values = deep_merge(values, {"tls": {"mode": args.tls_mode}})

    # 1. Lint: findings at warning or error severity fail.
    try:
        with native_stderr_silenced():
            report = helm.lint(str(CHART), values, namespace=args.namespace, strict=True)
    except helm.HelmError as e:
        fail(f"helm lint could not run: {e}")
    problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    errors = list(report.get("errors") or [])
    if problems or errors:
        lines = [f"  [{('?', 'INFO', 'WARNING', 'ERROR')[m.get('severity', 0)]}] "
                 f"{m.get('path')}: {str(m.get('error')).strip()}" for m in problems]
        if not lines:
            lines = [f"  {e}" for e in errors]
        fail("helm lint failed:\n" + "\n".join(lines))

    # 2. Render, as `helm install` would (schema first, as Helm does).
    try:
        with native_stderr_silenced(), helm.Chart.load(str(CHART)) as chart:
            chart.validate_schema(chart.merge_values(values))
            rendered = chart.render(values, name=args.release, namespace=args.namespace,
                                    revision=1, is_install=True)
    except helm.HelmError as e:
        fail(f"helm render failed: {e}")

    docs = []
    for template, text in rendered.items():
        if template.endswith("NOTES.txt"):
            continue
        for doc in DOC_SEPARATOR.split(text):
            body = "\n".join(l for l in doc.splitlines()
                             if l.strip() and not l.lstrip().startswith("#"))
            if not body:
                continue
            obj = helm.values_from_yaml(doc)
            kind = obj.get("kind", "")
            name = (obj.get("metadata") or {}).get("name", "")
            order = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
            docs.append(((order, kind, name, template), template, doc.strip("\n")))
    docs.sort(key=lambda d: d[0])

    out = []
    if args.manifests:
        out.append(
            "# runsecrets install manifests: the Helm chart charts/runsecrets rendered with its\n"
            f"# default values, release {MANIFESTS_RELEASE}, namespace {MANIFESTS_NAMESPACE} "
            "(tls.mode=server:\n"
            "# the server makes its own CA; nothing else is needed). Do not edit; regenerate with\n"
            "#   REGENERATE=1 cargo test --test it generated:: -- --include-ignored\n"
            "apiVersion: v1\nkind: Namespace\nmetadata:\n"
            f"  name: {MANIFESTS_NAMESPACE}\n  labels:\n"
            f"    kubernetes.io/metadata.name: {MANIFESTS_NAMESPACE}\n"
            "    # the node plugin is privileged (CSI mounts); Pod Security must allow it here\n"
            "    pod-security.kubernetes.io/enforce: privileged"
        )
    for _, template, doc in docs:
        source = f"# Source: {template}"
        out.append(doc if doc.startswith(source) else f"{source}\n{doc}")
    sys.stdout.write("---\n" + "\n---\n".join(out) + "\n")


if __name__ == "__main__":
    main()
