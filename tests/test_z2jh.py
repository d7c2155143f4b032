"""deploy/z2jh/config.yaml, the Zero to JupyterHub values for a course, checked without a chart
or a cluster (none runs here): every key is one the jupyterhub Helm chart 4.4.0 accepts, the
image is the one binder/ describes, students land on the landing page, idle servers are culled,
and the memory guaranteed per student covers what bench/hub.py measured. Also: Binder's image
and the JupyterHub route give each server the same Jupyter settings."""

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "z2jh" / "config.yaml"

# The keys of the jupyterhub chart 4.4.0 (tag 4.4.0 of jupyterhub/zero-to-jupyterhub-k8s,
# jupyterhub/values.schema.yaml), for the sections a course's values use: "parent: children".
CHART = "4.4.0"
KEYS = """
: cull singleuser hub proxy scheduling prePuller
cull: enabled users adminUsers removeNamedServers timeout every concurrency maxAge
singleuser: networkPolicy podNameTemplate cpu memory image initContainers profileList extraFiles
    extraEnv nodeSelector extraTolerations extraNodeAffinity extraPodAffinity
    extraPodAntiAffinity cloudMetadata cmd defaultUrl events extraAnnotations extraContainers
    extraLabels extraPodConfig extraResource fsGid lifecycleHooks networkTools
    serviceAccountName startTimeout storage allowPrivilegeEscalation uid
singleuser.image: name tag pullPolicy pullSecrets
singleuser.memory: limit guarantee
singleuser.cpu: limit guarantee
singleuser.storage: capacity dynamic extraLabels extraVolumeMounts extraVolumes homeMountPath
    static type
singleuser.storage.dynamic: pvcNameTemplate storageAccessModes storageClass subPath
    volumeNameTemplate
hub: revisionHistoryLimit config extraFiles baseUrl command args cookieSecret image
    networkPolicy db labels initContainers extraEnv extraConfig fsGid service pdb existingSecret
    nodeSelector tolerations activeServerLimit allowNamedServers annotations
    authenticatePrometheus concurrentSpawnLimit consecutiveFailureLimit podSecurityContext
    containerSecurityContext deploymentStrategy extraContainers extraVolumeMounts extraVolumes
    livenessProbe readinessProbe namedServerLimitPerUser redirectToServer resources lifecycle
    services loadRoles shutdownOnLogout templatePaths templateVars serviceAccount extraPodSpec
proxy: chp secretToken service https traefik labels annotations deploymentStrategy secretSync
scheduling: userScheduler podPriority userPlaceholder corePods userPods
scheduling.userScheduler: enabled replicas
scheduling.podPriority: enabled
scheduling.userPlaceholder: enabled replicas
prePuller: revisionHistoryLimit labels annotations resources extraTolerations hook continuous
    pullProfileListImages extraImages containerSecurityContext pause
prePuller.hook: enabled
prePuller.continuous: enabled
"""
# Maps whose keys are the user's own (names, traitlets classes, environment variables...).
FREE = {"hub.config", "hub.extraConfig", "hub.extraEnv", "hub.extraFiles", "hub.services",
        "hub.loadRoles", "hub.templateVars", "hub.nodeSelector", "singleuser.extraEnv",
        "singleuser.extraFiles", "singleuser.nodeSelector", "singleuser.extraPodConfig"}


def chart_keys(text=KEYS):
    """{parent path: set of its keys} from the 'parent: children' lines (continued by indent)."""
    keys, parent = {}, None
    for line in text.strip("\n").splitlines():
        if not line.startswith(" "):
            parent, _, line = line.partition(":")
        keys.setdefault(parent, set()).update(line.split())
    return keys


def unknown_keys(values, keys, path=""):
    """The dotted paths in `values` that the chart does not list (free maps not entered)."""
    out = []
    for k, v in values.items():
        p = f"{path}.{k}" if path else k
        if k not in keys.get(path, ()):
            out.append(p)
        elif p == "hub.config":   # traitlets classes: capitalised names, their traits free
            out += [f"{p}.{c}" for c in v if not re.match(r"^[A-Z]", c) or not isinstance(
                v[c], dict)]
        elif isinstance(v, dict) and p not in FREE:
            if p not in keys:
                out.append(f"{p} (a map this list does not enter: add its keys from the schema)")
            else:
                out += unknown_keys(v, keys, p)
    return out


def bytes_of(quantity):
    """A Kubernetes quantity ('320M', '1G', '512Mi', 1e9) in bytes."""
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?)?", str(quantity))
    assert m, f"not a memory quantity: {quantity!r}"
    unit = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}[m.group(2)]
    return float(m.group(1)) * unit


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load(CONFIG.read_text())


def test_the_key_checker_finds_a_misspelt_or_misplaced_key():
    keys = chart_keys()
    assert unknown_keys({"singleuser": {"defaultURL": "/x", "memory": {"guarantee": "1G"}}},
                        keys) == ["singleuser.defaultURL"]
    assert unknown_keys({"cull": {"timeout": 1, "cullEvery": 5}}, keys) == ["cull.cullEvery"]
    assert unknown_keys({"hub": {"config": {"jupyterhub": {}}}}, keys) == ["hub.config.jupyterhub"]
    assert unknown_keys({"singleuser": {"extraEnv": {"ANY_NAME": "1"}}}, keys) == []
    assert unknown_keys({"proxy": {"https": {"enabled": True}}}, keys)[0].startswith("proxy.https")


def test_every_key_is_one_the_chart_accepts(values):
    assert unknown_keys(values, chart_keys()) == [], f"not keys of the jupyterhub chart {CHART}"
    assert f"chart {CHART}" in CONFIG.read_text() and f"--version {CHART}" in CONFIG.read_text()


def test_students_land_on_the_apps_from_the_image_binder_builds(values):
    su = values["singleuser"]
    assert su["defaultUrl"] == "/voila/render/apps/index.ipynb"
    assert (ROOT / "apps" / "index.ipynb").exists()   # repo2docker puts the checkout in ~
    assert su["storage"]["homeMountPath"] not in ("/home/jovyan", "/home/jovyan/")
    assert su["image"]["name"] and isinstance(su["image"]["tag"], str)
    assert "repo2docker" in CONFIG.read_text() and (ROOT / "binder" / "postBuild").exists()
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "not built here" in readme and "deploy/z2jh/config.yaml" in readme


def test_idle_servers_are_culled(values):
    cull = values["cull"]
    assert cull["enabled"] is True and 0 < cull["every"] < cull["timeout"] <= 4 * 3600


def test_the_memory_guarantee_covers_the_measured_student(values):
    text = (ROOT / "bench" / "results_class.md").read_text()
    section = text[text.index("## JupyterHub"):]
    measured = float(re.search(r"memory per student (\d+) MB", section).group(1)) * 2 ** 20
    memory = values["singleuser"]["memory"]
    assert measured <= bytes_of(memory["guarantee"]) < 2 * measured
    assert bytes_of(memory["limit"]) >= bytes_of(memory["guarantee"])


def test_binder_and_the_hub_give_each_server_the_same_settings():
    """The server settings Binder's image installs (binder/curvlab_server.json) are the ones the
    JupyterHub configuration passes on its servers' command line."""
    from traitlets.config import Config
    c = Config()
    hub = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
    exec(compile(hub.read_text(), str(hub), "exec"),
         {"get_config": lambda: c, "__file__": str(hub)})
    args = {}
    for a in c.Spawner.args:
        key, _, value = a.removeprefix("--").partition("=")
        args[key] = value
    image = json.loads((ROOT / "binder" / "curvlab_server.json").read_text())
    for cls, traits in image.items():
        for trait, value in traits.items():
            given = args.pop(f"{cls}.{trait}", None)
            assert given is not None, f"{cls}.{trait} is not among the hub's Spawner.args"
            assert yaml.safe_load(given) == value, (cls, trait, given, value)
    assert args == {}, f"the hub sets what Binder's image does not: {args}"
    assert "binder/curvlab_server.json" in (ROOT / "binder" / "postBuild").read_text()
