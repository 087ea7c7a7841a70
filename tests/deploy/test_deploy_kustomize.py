"""The Kubernetes manifests: both overlays (and the ingress component) render with
``kubectl kustomize``, every document validates offline against Kubernetes' own schemas
(kubernetes-validate ships them) at the oldest and newest minor versions supported, and the
deployment keeps its promises: probes, resources, a hardened non-root pod, autoscaling,
disruption budget, and secrets referenced, never written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_test_support import (
    APP,
    INGRESS_COMPONENT,
    KUSTOMIZE,
    NAMESPACE,
    OVERLAYS,
    SERVER_LABELS,
    SHARED_STATE_SETTINGS,
    config_map,
    env_of,
    image_user,
    of_kind,
    only,
    pod_spec,
    render,
    render_with_components,
    runtime_stage,
    server_container,
)

from server.settings import ServerSettings

kv = pytest.importorskip("kubernetes_validate", reason="`make install` (dev dependency kubernetes-validate)")
from kubernetes_validate import utils as kv_utils  # noqa: E402

OLDEST_K8S = "1.27"  # the oldest minor version these manifests support (deploy/README.md)
NEWEST_K8S = kv_utils.major_minor(kv_utils.latest_version())  # the newest the package ships
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|DATABASE_URL|CREDENTIAL", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay rendered once; ``ha+ingress`` adds the optional component."""
    out = {o: render(KUSTOMIZE / "overlays" / o) for o in OVERLAYS}
    out["ha+ingress"] = render_with_components(tmp_path_factory.mktemp("ingress"), "ha", INGRESS_COMPONENT)
    return out


def _quantity(q: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    s = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * factor
    return float(s)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# -- schema validation -----------------------------------------------------------------------

@pytest.mark.parametrize("version", [OLDEST_K8S, NEWEST_K8S])
@pytest.mark.parametrize("variant", [*OVERLAYS, "ha+ingress"])
def test_every_document_validates(rendered: dict[str, list[dict[str, Any]]], variant: str, version: str) -> None:
    """Strict: an unknown field (a typo) fails too; a kind without a schema fails, not skipped."""
    docs = rendered[variant]
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv_utils.validate(doc, version, strict=True)
        except kv_utils.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{variant}: {name} is not valid Kubernetes {version}: {where}: {exc.message}")
        except kv_utils.SchemaNotFoundError as exc:
            pytest.fail(f"{variant}: {name}: {exc.message}")


def test_validation_is_not_vacuous(rendered: dict[str, list[dict[str, Any]]]) -> None:
    import copy

    bad = copy.deepcopy(only(rendered["ha"], "Deployment", APP))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    with pytest.raises(kv_utils.ValidationError):
        kv_utils.validate(bad, NEWEST_K8S, strict=True)


# -- what every overlay promises ------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    c = server_container(rendered[overlay])
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
    # the port the image listens on (EXPOSE, QA_PORT) and the one the settings name
    assert str(ports["http"]) == runtime_stage().env()["QA_PORT"] == config_map(rendered[overlay])["QA_PORT"]
    # start-up gets a minute (the server is ready in ~2 s), then liveness takes over
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for doc in rendered[overlay]:
        spec = pod_spec(doc)
        for c in (spec or {}).get("containers", []):
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{doc['metadata']['name']}/{c['name']}: {kind}"
            for r in ("cpu", "memory"):
                assert _quantity(res["limits"][r]) >= _quantity(res["requests"][r])
    server = server_container(rendered[overlay])["resources"]
    assert server == {"requests": {"cpu": "1", "memory": "384Mi"}, "limits": {"cpu": "2", "memory": "768Mi"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Every workload: non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp,
    no privilege escalation, no service account token."""
    for doc in rendered[overlay]:
        spec = pod_spec(doc)
        if spec is None:
            continue
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{overlay}: {doc['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod.get("runAsUser", 1)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("privileged", False) is False, where
            seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_pod_matches_the_image(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    spec = only(rendered[overlay], "Deployment", APP)["spec"]["template"]["spec"]
    uid, gid = image_user()
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
    c = server_container(rendered[overlay])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp, the only writable place, is an emptyDir"
    # no volume hides the index and data baked into the image
    env = runtime_stage().env()
    for baked in (env["QA_INDEX_DIR"], env["QA_DATA_DIR"]):
        assert not any(baked == m or baked.startswith(m.rstrip("/") + "/") for m in mounts), baked
    settings = config_map(rendered[overlay])
    assert "QA_INDEX_DIR" not in settings and "QA_DATA_DIR" not in settings
    assert spec["enableServiceLinks"] is False
    assert env_of(c)["MALLOC_ARENA_MAX"]["value"] == "2"
    assert env_of(c)["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert c["image"].startswith(f"{APP}:") and not c["image"].endswith(":latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_real_and_valid(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Every QA_ key names a setting (a typo would be ignored silently) and the values parse."""
    docs = rendered[overlay]
    c = server_container(docs)
    data = config_map(docs)
    (ref,) = [e["configMapRef"]["name"] for e in c["envFrom"]]
    assert ref in {m["metadata"]["name"] for m in of_kind(docs, "ConfigMap")}
    keys = {k for k in [*data, *env_of(c)] if k.startswith("QA_")}
    known = {f"QA_{f.upper()}" for f in ServerSettings.model_fields}
    assert keys <= known, keys - known
    ServerSettings(**{k[3:].lower(): v for k, v in data.items() if k.startswith("QA_")})
    assert data["QA_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_written(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    assert not of_kind(docs, "Secret"), "secrets are created outside these manifests"
    for doc in docs:
        for key, value in (doc.get("data") or {}).items():
            assert not SECRET_NAME.search(key), f"{doc['metadata']['name']}: {key} looks like a secret"
            assert not URL_WITH_PASSWORD.search(str(value)), f"{doc['metadata']['name']}: {key} holds a password"
        for c in (pod_spec(doc) or {}).get("containers", []):
            for name, entry in env_of(c).items():
                if SECRET_NAME.search(name):
                    assert "value" not in entry, f"{name} is written in the manifest"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name} must come from a Secret"
                assert not URL_WITH_PASSWORD.search(str(entry.get("value", ""))), name
    env = env_of(server_container(docs))
    for name, key in (("QA_SLACK_SIGNING_SECRET", "slack-signing-secret"), ("QA_ADMIN_TOKEN", "admin-token")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": APP, "key": key, "optional": True}


def test_no_secret_in_the_sources() -> None:
    """Not even an example Secret with a placeholder: copied as is, it would become the real one."""
    for path in KUSTOMIZE.rglob("*"):
        if path.is_file():
            text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                             if not line.lstrip().startswith("#"))
            assert not re.search(r"^kind:\s*Secret\s*$", text, re.M), path
            assert not re.search(r"secretGenerator", text), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_and_disruption_budget_select_the_pods(rendered: dict[str, list[dict[str, Any]]],
                                                       overlay: str) -> None:
    docs = rendered[overlay]
    labels = only(docs, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]
    assert SERVER_LABELS.items() <= labels.items()
    service = only(docs, "Service", APP)
    assert _matches({"matchLabels": service["spec"]["selector"]}, labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = only(docs, "PodDisruptionBudget", APP)
    assert _matches(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["maxUnavailable"] == 1, "drains go on, one replica at a time"
    for other in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet"):
        if other["metadata"]["name"] != APP:  # no selector of the bot's catches Redis or PostgreSQL pods
            assert not _matches(pdb["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_and_pinned_images(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for doc in rendered[overlay]:
        assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
        for c in (pod_spec(doc) or {}).get("containers", []):
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


# -- the two overlays -----------------------------------------------------------------------------

def test_single_is_one_replica_with_embedded_defaults(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["single"]
    assert only(docs, "Deployment", APP)["spec"]["replicas"] == 1
    assert not of_kind(docs, "HorizontalPodAutoscaler"), "in-process limits and cache: one replica, no autoscaler"
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                                         "PersistentVolumeClaim"}
    # the records (SQLite under QA_STATE_DIR) live on a volume that outlives the pod, the root stays read-only
    deployment = only(docs, "Deployment", APP)
    env = {e["name"]: e.get("value") for e in server_container(docs)["env"]}
    mounts = {m["mountPath"]: m["name"] for m in server_container(docs)["volumeMounts"]}
    claim = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[env["QA_STATE_DIR"]])
    assert claim["persistentVolumeClaim"]["claimName"] == only(docs, "PersistentVolumeClaim", "kruise-faq-bot-state")["metadata"]["name"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # one writer on a ReadWriteOnce volume
    settings = config_map(docs)
    assert not SHARED_STATE_SETTINGS & set(settings), "embedded defaults: no Redis, no database"
    assert not SHARED_STATE_SETTINGS & set(env_of(server_container(docs)))


def test_ha_scales_on_cpu_from_two(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha"]
    deployment = only(docs, "Deployment", APP)
    assert deployment["spec"]["replicas"] == 3
    hpa = only(docs, "HorizontalPodAutoscaler", APP)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP}
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] >= deployment["spec"]["replicas"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 90


def test_ha_shares_state_in_redis_and_postgres(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha"]
    settings = config_map(docs)
    assert settings["QA_RATE_LIMIT_STORAGE"] == "redis://redis:6379/0"
    assert settings["QA_CACHE_URL"] == "redis://redis:6379/1"
    db = env_of(server_container(docs))["QA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert db["name"] == "kruise-faq-bot-postgres" and db["key"] == "database-url" and not db.get("optional")

    redis_service = only(docs, "Service", "redis")
    assert redis_service["spec"]["ports"][0]["port"] == 6379
    redis = only(docs, "Deployment", "redis")
    assert _matches({"matchLabels": redis_service["spec"]["selector"]}, redis["spec"]["template"]["metadata"]["labels"])

    postgres = only(docs, "StatefulSet", "postgres")
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("postgres:15")
    password = env_of(container)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": db["name"], "key": "password"}, "one Secret holds the password and the URL"
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] in {m["name"] for m in container["volumeMounts"]}
    pg_service = only(docs, "Service", "postgres")
    assert postgres["spec"]["serviceName"] == "postgres" and pg_service["spec"]["ports"][0]["port"] == 5432

    # only the bot's pods reach them
    labels = only(docs, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]
    for target, workload in (("redis", redis), ("postgres", postgres)):
        policy = only(docs, "NetworkPolicy", target)["spec"]
        assert _matches(policy["podSelector"], workload["spec"]["template"]["metadata"]["labels"])
        (rule,) = policy["ingress"]
        assert [_matches(f["podSelector"], labels) for f in rule["from"]] == [True]


# -- the optional ingress -----------------------------------------------------------------------

def test_no_ingress_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        assert not of_kind(rendered[overlay], "Ingress")


def test_ingress_component(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha+ingress"]
    ingress = only(docs, "Ingress", APP)["spec"]
    paths = {}
    for rule in ingress["rules"]:
        for p in rule["http"]["paths"]:
            backend = p["backend"]["service"]
            assert backend == {"name": APP, "port": {"name": "http"}}
            paths[p["path"]] = p["pathType"]
    assert {"/api", "/slack"} <= set(paths) and paths["/"] == "Exact"
    for internal in ("/metrics", "/admin", "/healthz", "/readyz"):
        assert not any(internal.startswith(p) for p, t in paths.items() if t == "Prefix"), internal
        assert internal not in paths
    assert ingress["tls"][0]["secretName"]
    # uvicorn takes the client address from X-Forwarded-For only from trusted peers
    assert config_map(docs)["QA_TRUSTED_PROXIES"]
    assert len(of_kind(docs, "ConfigMap")) == 1, "merged into the bot's settings, not a second ConfigMap"


def test_component_also_fits_single(tmp_path: Path) -> None:
    docs = render_with_components(tmp_path, "single", INGRESS_COMPONENT)
    assert only(docs, "Ingress", APP)
    for doc in docs:
        kv_utils.validate(doc, NEWEST_K8S, strict=True)
