"""Checks that in a rendered chart only `component`'s pods run under a
Kubernetes service account bound to a Google account (GKE Workload
Identity's iam.gke.io/gcp-service-account): any other pod under it could
act as that Google account."""

import sys

import yaml

ANNOTATION = "iam.gke.io/gcp-service-account"


def main(path: str, component: str) -> None:
    with open(path, encoding="utf-8") as rendered:
        objects = [o for o in yaml.safe_load_all(rendered) if o]
    bound = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "ServiceAccount"
        and ANNOTATION in (o["metadata"].get("annotations") or {})
    }
    if not bound:
        sys.exit(f"no ServiceAccount carries {ANNOTATION}")
    users = {}
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        labels = o["metadata"].get("labels") or {}
        name = labels.get("app.kubernetes.io/component", o["metadata"]["name"])
        account = o["spec"]["template"]["spec"].get("serviceAccountName", "default")
        users[name] = account
    wrong = sorted(name for name, account in users.items() if account in bound and name != component)
    if wrong:
        sys.exit(f"{', '.join(wrong)} run under {', '.join(sorted(bound))}, bound to a Google account: only {component} may")
    if users.get(component) not in bound:
        sys.exit(f"{component} runs under {users.get(component)}, not the account bound to Google ({', '.join(sorted(bound))})")
    print(f"{component} alone runs under {users[component]}, bound to a Google account")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
