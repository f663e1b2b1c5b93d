"""A deployment's own contracts in the chart (contracts.files).

  contracts.py values DIR            a values file carrying DIR's topics.toml
                                     and .avsc files, as a user's would
  contracts.py check RENDERED DIR    every pod and the provisioning Job read
                                     exactly DIR's files at
                                     SLUICE_CONTRACTS_DIR, the Job from its
                                     own hook ConfigMap made before it, and
                                     every pod carries the contracts'
                                     checksum (a change rolls it)
"""

import json
import os
import sys

MOUNT = "/etc/sluice/contracts"
HOOK = "helm.sh/hook"


def files(root: str) -> dict:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name == "topics.toml" or name.endswith(".avsc"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as text:
                    found[os.path.relpath(path, root)] = text.read()
    return found


def check(rendered: str, root: str) -> None:
    import yaml  # only the check needs it (the chart venv has it)

    with open(rendered, encoding="utf-8") as text:
        objects = [o for o in yaml.safe_load_all(text) if o]
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    expected = files(root)
    pods = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    if not any(o["kind"] == "Job" for o in pods):
        sys.exit("no provisioning Job rendered")
    sums = set()
    for o in pods:
        name = f'{o["kind"]} {o["metadata"]["name"]}'
        spec = o["spec"]["template"]["spec"]
        volume = next((v for v in spec.get("volumes", []) if v["name"] == "contracts"), None)
        if volume is None:
            sys.exit(f"{name} mounts no contracts volume")
        config = maps.get(volume["configMap"]["name"])
        if config is None:
            sys.exit(f'{name} mounts ConfigMap {volume["configMap"]["name"]}, which is not rendered')
        hooked = HOOK in (config["metadata"].get("annotations") or {})
        if hooked != (o["kind"] == "Job"):
            sys.exit(f'{name} mounts {config["metadata"]["name"]}: the Job needs the hook copy, the services the release\'s')
        if hooked:
            weight = lambda x: int((x["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", "0"))
            if weight(config) >= weight(o):
                sys.exit(f'{config["metadata"]["name"]} (hook weight {weight(config)}) is not made before {name} ({weight(o)})')
        seen = {item["path"]: config["data"][item["key"]] for item in volume["configMap"]["items"]}
        if seen != expected:
            differ = sorted(set(seen.items()) ^ set(expected.items()))
            sys.exit(f"{name} sees other contracts than {root}: {[path for path, _ in differ]}")
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if env.get("SLUICE_CONTRACTS_DIR") != MOUNT:
                sys.exit(f"{name}: SLUICE_CONTRACTS_DIR is {env.get('SLUICE_CONTRACTS_DIR')!r}")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if mounts.get(MOUNT) != "contracts":
                sys.exit(f"{name}: nothing mounted at {MOUNT}")
        if o["kind"] != "Job":
            annotations = o["spec"]["template"]["metadata"].get("annotations") or {}
            if "checksum/contracts" not in annotations:
                sys.exit(f"{name}: no checksum/contracts annotation (a change would not roll it)")
            sums.add(annotations["checksum/contracts"])
    if len(sums) != 1:
        sys.exit(f"the pods carry different contract checksums: {sorted(sums)}")
    print(f"{len(pods) - 1} workloads and the provisioning Job read the {len(expected)} files of {root} at {MOUNT}")
    print(f"checksum {sums.pop()}")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["values", root]:
            print(json.dumps({"contracts": {"files": files(root)}}))
        case ["check", rendered, root]:
            check(rendered, root)
        case _:
            sys.exit(__doc__)
