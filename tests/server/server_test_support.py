"""Shared data and helpers of the server tests: the tiny FAQ, settings, contract and header checks.

(A plain module with a unique name rather than a package: ``tests/server/__init__.py`` would make
this folder importable as ``server`` and shadow the application's own ``server`` package.)
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier

from qa.contract import Answer, Entry, ErrorBody
from qa.faq import entry_id
from qa.records import db
from qa.search import Engine
from server.settings import ServerSettings

SLACK_SECRET = "test-secret"
ADMIN_TOKEN = "admin-token"

# The tiny FAQ's questions; the tests ask them verbatim (the HashEncoder matches them exactly).
Q_INPLACE = "原地升级能修改容器的 CPU 和内存吗？"
Q_WEBHOOK = "Pod 操作失败并报错 failed calling webhook，原因是什么？"
Q_SIDECAR = "How do I inject a sidecar container into existing pods?"
Q_UNINSTALL = "Why does helm uninstall of Kruise fail with kruise-finalizer BackoffLimitExceeded?"
Q_CLONESET = "CloneSet 和 Deployment 有什么区别？"
QUESTIONS = [Q_INPLACE, Q_WEBHOOK, Q_SIDECAR, Q_UNINSTALL, Q_CLONESET]
# Close to Q_INPLACE: matched at the tests' threshold (0.3; the weights are tuned for the real model), not at 0.999.
NEAR_MISS = "原地升级"
NO_ANSWER_THRESHOLD = 0.999

CLONESET_ANSWER_OLD = "CloneSet 支持原地升级，Deployment 只能重建 Pod。"
CLONESET_ANSWER_NEW = "CloneSet 还支持指定 Pod 删除和 PVC 模板，这是新版答案。"

LONG_YAML = "\n".join(
    ["apiVersion: apps.kruise.io/v1alpha1", "kind: SidecarSet", "metadata:", "  name: test-sidecarset",
     "spec:", "  selector:", "    matchLabels:", "      app: nginx", "  containers:"]
    + [f"  - name: sidecar-{i}\n    image: centos:7\n    command: [\"sleep\", \"{i}\"]" for i in range(70)]
)


def faq_markdown(cloneset_answer: str = CLONESET_ANSWER_OLD, extra: str = "") -> str:
    """The tiny FAQ file's text (``extra`` is appended verbatim at the end)."""
    return textwrap.dedent(f"""\
        # 常见问题解答

        ## 原地升级

        #### **Q**：{Q_INPLACE}

        **A**：可以。从 Kruise 1.5 起，CloneSet 和 Advanced StatefulSet 支持原地修改 resources，
        需要开启 `InPlaceWorkloadVerticalScaling` 特性门控。

        ## Pod 创建/更新错误

        #### **Q**：{Q_WEBHOOK}

        **A**：检查 kruise-system 下的 kruise-controller-manager 是否健康：

        ```bash
        kubectl get pod -n kruise-system
        kubectl logs -n kruise-system deploy/kruise-controller-manager
        ```

        恢复后再重试 Pod 操作。

        ## Sidecar

        #### **Q**：{Q_SIDECAR}

        **A**：Create a SidecarSet; it injects the sidecar when pods are created. For existing pods,
        recreate them or use an in-place update:

        ```yaml
        {textwrap.indent(LONG_YAML, " " * 8).lstrip()}
        ```

        ## Uninstall

        #### **Q**：{Q_UNINSTALL}

        **A**：Since 1.7.3 a pre-delete hook blocks the uninstall while Kruise custom resources exist.
        Delete the CloneSets, Advanced StatefulSets and Advanced DaemonSets first.

        ## 工作负载

        #### **Q**：{Q_CLONESET}

        **A**：{cloneset_answer}
        """) + extra


ALTERNATES = {
    entry_id(Q_INPLACE): ["Can in-place update change CPU and memory?", "原地升级 改 资源"],
    entry_id(Q_WEBHOOK): ["failed calling webhook vpod.kb.io no endpoints available for service kruise-webhook-service"],
    entry_id(Q_SIDECAR): ["如何向现有 Pod 注入边车容器？"],
    entry_id(Q_UNINSTALL): ["helm 卸载 Kruise 报错 kruise-finalizer"],
}


def write_data(data_dir: Path, markdown: str | None = None) -> Path:
    """Writes the tiny data folder (faq/tiny.md and alternates.yaml)."""
    (data_dir / "faq").mkdir(parents=True, exist_ok=True)
    (data_dir / "faq" / "tiny.md").write_text(markdown if markdown is not None else faq_markdown(), encoding="utf-8")
    (data_dir / "alternates.yaml").write_text(yaml.safe_dump(ALTERNATES, allow_unicode=True), encoding="utf-8")
    return data_dir


def engine_like(engine: Engine, threshold: float = 0.3) -> Engine:
    """A fresh engine (own cache) over the same knowledge base and index, with another threshold."""
    return Engine(engine.kb, engine.encoder, engine.dense, threshold=threshold)


def base_settings(data_dir: Path, index_dir: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {"data_dir": data_dir, "index_dir": index_dir, "slack_signing_secret": SLACK_SECRET,
                                  "admin_token": ADMIN_TOKEN, "rate_limit": "off", "model": "hash", "threshold": 0.3,
                                  "record": False}  # tests of records turn it on, with a database of their own
    values.update(overrides)
    return ServerSettings(**values)


# --------------------------------------------------------------------------- contract checks


def assert_answer_contract(body: Any) -> Answer:
    """The answer JSON is an :class:`qa.contract.Answer` (the one definition; no copy of its fields
    here), exactly as that model serialises it, and holds what the contract cannot say by types."""
    answer = Answer.model_validate(body)
    assert answer.model_dump(mode="json") == body, body  # nothing extra, nothing coerced
    assert answer.took_ms >= 0
    if answer.match is not None:
        assert answer.match.id not in {a.id for a in answer.alternatives}
        assert answer.match.answer, "a match with an empty answer"
    return answer


def assert_entry_contract(body: Any) -> Entry:
    """An ``/api/faq/{id}`` body is an :class:`qa.contract.Entry`, exactly as it serialises."""
    entry = Entry.model_validate(body)
    assert entry.model_dump(mode="json") == body, body
    assert entry.answer, "an entry with an empty answer"
    return entry


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, str]:
    """An error response: the status, and a body that is exactly a :class:`qa.contract.ErrorBody`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = ErrorBody.model_validate(body)
    assert error.model_dump(mode="json") == body, body  # nothing extra
    assert error.error.message.strip()
    if code is not None:
        assert error.error.code == code, body
    return body["error"]  # type: ignore[no-any-return]


def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def assert_security_headers(response: Any) -> None:
    """CSP without inline scripts and framing, nosniff, a referrer policy, a request id."""
    h = response.headers
    assert "content-security-policy" in h, dict(h)
    csp = csp_directives(h["content-security-policy"])
    script_src = csp.get("script-src", csp.get("default-src"))
    assert script_src is not None and "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert csp.get("frame-ancestors") == ["'none'"]
    assert h.get("x-content-type-options") == "nosniff"
    assert h.get("referrer-policy") in {"no-referrer", "same-origin", "strict-origin",
                                        "strict-origin-when-cross-origin", "no-referrer-when-downgrade"}
    assert h.get("x-request-id", "").strip()


# --------------------------------------------------------------------------- Slack

def slack_form(text: str, *, team_id: str = "T0001", user_id: str = "U0001", **extra: str) -> bytes:
    """A slash-command body, urlencoded as Slack sends it."""
    fields = {"token": "legacy-verification-token", "team_id": team_id, "team_domain": "kruise",
              "channel_id": "C0001", "channel_name": "general", "user_id": user_id, "user_name": "alice",
              "command": "/kruise-faq", "text": text,
              "response_url": "https://hooks.slack.com/commands/T0001/1/abc", "trigger_id": "1.2.3"}
    fields.update(extra)
    return urlencode(fields).encode("utf-8")


def slack_headers(body: bytes, *, secret: str = SLACK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack would send with ``body``, signed with slack_sdk's own signer."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature}


def post_slack(client: Any, text: str, **form: str) -> Any:
    body = slack_form(text, **form)
    return client.post("/slack/command", content=body, headers=slack_headers(body))


def table(url: str, t: sa.Table) -> list[dict[str, Any]]:
    """Every row of a records table (a connection of its own: the server's writer may hold others)."""
    e = db.make_engine(url)
    try:
        with e.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t))]
    finally:
        e.dispose()


def flush(client: TestClient) -> None:
    """Waits until the app's recorder has written what it was given."""
    assert client.app.state.recorder.flush(10)  # type: ignore[attr-defined]
