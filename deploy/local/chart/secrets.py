"""Checks a rendered chart: every credential reaches its container as a file.

For each container: no environment variable takes a Secret's value (except
ingest's token SHA-256, which is not a secret), and every SLUICE_*_FILE
variable (or the Sheets key path) names a file under a mounted volume whose
Secret items produce it. Usage: secrets.py RENDERED.yaml
"""

import sys

import yaml

# Values from a Secret that may sit in the environment: a hash, not a secret.
ALLOWED_ENV_SECRETS = {"SLUICE_INGEST_TOKEN_SHA256"}
FILE_VARIABLES = {"SLUICE_SHEETS_SERVICE_ACCOUNT"}


def secret_files(pod, container):
    """The paths of the Secret items mounted into the container."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    paths = set()
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        items = []
        if "secret" in volume:
            items = volume["secret"].get("items", [])
        for source in volume.get("projected", {}).get("sources", []):
            items += source.get("secret", {}).get("items", [])
        paths |= {f"{mount['mountPath']}/{item['path']}" for item in items}
    return paths


def check(path):
    problems = []
    checked = 0
    for document in yaml.safe_load_all(open(path)):
        if not document or document.get("kind") not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = document["spec"]["template"]["spec"]
        for container in pod["containers"]:
            where = f"{document['kind']}/{document['metadata']['name']}"
            files = secret_files(pod, container)
            for variable in container.get("env", []):
                name = variable["name"]
                from_secret = "secretKeyRef" in variable.get("valueFrom", {})
                if from_secret and name not in ALLOWED_ENV_SECRETS:
                    problems.append(f"{where}: {name} takes a Secret into the environment")
                if name.endswith("_FILE") or name in FILE_VARIABLES:
                    checked += 1
                    if variable.get("value") not in files:
                        problems.append(f"{where}: {name}={variable.get('value')} is not a mounted Secret item")
    return checked, problems


checked, problems = check(sys.argv[1])
for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
if checked == 0:
    sys.exit("no *_FILE variable in the rendering: the check checked nothing")
print(f"{checked} credential files, each a mounted Secret item")
