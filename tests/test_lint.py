"""``qa lint``: each check on a tiny data folder with planted problems (file and line of every
finding), the shipped FAQ's known findings, and the exit status and output forms."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from tiny_faq import (
    ALT_SIDECAR,
    OOS_Q,
    Q_CLONESET,
    Q_CPU,
    Q_SIDECAR,
    Q_STUCK,
    Q_UNINSTALL,
    REAL_DATA,
    TINY_IDS,
    TINY_MD,
    write_tiny_data,
)

from qa.cli import main
from qa.faq import entry_id
from qa.knowledge import KnowledgeBase
from qa.lint import link_problem, source_hash

Q_HPA = "如何配置 HPA？"
Q_CLONESET_TWIN = "CloneSet 与 Deployment 有什么区别？"  # one character from Q_CLONESET: a close pair

PLANTED_MD = TINY_MD + textwrap.dedent(f"""\

    ## 扩缩

    #### Q：{Q_HPA}

    A：先看[本地说明](docs/hpa.md)，再看[这里]()。例子：

    ```yaml
    apiVersion: autoscaling/v2beta2
    kind: HorizontalPodAutoscaler
    metadata:
      name: demo
    spec:
      scaleTargetRef:
        apiVersion: apps.kruise.io/v1alpha1
        kind: CloneSet
        name: demo
      minReplicas: 1
      maxReplicas: 3
    ```

    这个块写坏了：

    ```yaml
    metadata:
      name: demo
      labels: [app, web
    spec: {{}}
    ```

    #### Q：{Q_CLONESET_TWIN}

    A：见 [CloneSet 文档](https://openkruise.io/docs/user-manuals/cloneset)。
    """)

STALE = "000000000000"


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line that contains ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not in the text"
    return hits[nth - 1]


def planted_data(root: Path) -> Path:
    """The tiny data folder plus: an HPA entry (local and empty links, a removed apiVersion, a YAML
    block that does not parse), a near-twin of the CloneSet question, translations (one current,
    one stale, one without hash) and alternates that collide."""
    data = write_tiny_data(root / "data", PLANTED_MD)
    kb = KnowledgeBase.load(data)
    (data / "translations.yaml").write_text(textwrap.dedent(f"""\
        "{TINY_IDS[Q_CPU]}":
          source_hash: "{STALE}"
          question: "Can an in-place update change CPU and memory?"
          answer: "Yes, since v1.8.0."
        "{TINY_IDS[Q_STUCK]}":
          question: "Why is my Pod stuck in PreparingUpdate?"
          answer: |
            Usually the image is still being pulled. See [the guide](file:///home/me/guide.md).
        "{TINY_IDS[Q_CLONESET]}":
          source_hash: "{source_hash(kb.by_id[TINY_IDS[Q_CLONESET]])}"
          question: "What is the difference between CloneSet and Deployment?"
          answer: "CloneSet updates in place."
        """), encoding="utf-8")
    (data / "alternates.yaml").write_text(textwrap.dedent(f"""\
        "{TINY_IDS[Q_SIDECAR]}":
          - "{ALT_SIDECAR}"
          - "add a sidecar to running pods"
        "{TINY_IDS[Q_UNINSTALL]}":
          - "helm 卸载 Kruise 报错怎么办"
        "{TINY_IDS[Q_CLONESET]}":
          - "{ALT_SIDECAR}"
          - "{Q_CPU}"
          - "{OOS_Q.upper()}?"
        """), encoding="utf-8")
    return data


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Runs ``qa --data-dir DATA --index-dir … --model MODEL lint ARGS``; returns (status, stdout, stderr)."""
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file; paths are shown relative to it
    monkeypatch.setenv("COLUMNS", "200")

    def go(data: Path, *args: str, model: str = "hash") -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(["--data-dir", str(data), "--index-dir", str(tmp_path / "index"), "--model", model,
                       "lint", *args])
        out, err = capsys.readouterr()
        return status, out, err

    return go


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return planted_data(tmp_path)


def findings(run, data: Path, *args: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    status, out, err = run(data, "--json", *args)
    assert (status, err) == (0, "")
    found = json.loads(out)
    assert all(set(f) == {"file", "line", "severity", "code", "message"} for f in found)
    return found


def where(found: list[dict[str, object]], code: str) -> list[tuple[object, object]]:
    return [(f["file"], f["line"]) for f in found if f["code"] == code]


MD = "data/faq/tiny.md"


# --------------------------------------------------------------------------- the planted problems


def test_links_local_relative_and_empty_with_their_lines(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    assert where(found, "link-local") == [(MD, line_of(PLANTED_MD, "file:///Users/me/doc.md")),
                                          ("data/translations.yaml", 8)]
    assert where(found, "link-relative") == [(MD, line_of(PLANTED_MD, "docs/hpa.md"))]
    assert where(found, "link-empty") == [(MD, line_of(PLANTED_MD, "[这里]()"))]
    assert not where(found, "link-malformed")  # the https links are fine
    assert all(f["severity"] == "warning" for f in found)


def test_yaml_block_that_does_not_parse(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    # the error is seen where the flow sequence runs into the next key
    assert where(found, "yaml-invalid") == [(MD, line_of(PLANTED_MD, "spec: {}"))]


def test_removed_api_version_with_the_line_of_its_apiversion(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    removed = [f for f in found if f["code"] == "k8s-removed"]
    assert [(f["file"], f["line"]) for f in removed] == [(MD, line_of(PLANTED_MD, "apiVersion: autoscaling/v2beta2"))]
    assert "autoscaling/v2beta2" in str(removed[0]["message"]) and "1.26" in str(removed[0]["message"])
    assert "autoscaling/v2" in str(removed[0]["message"]).split("serves")[-1]
    # the SidecarSet and the scale target are custom resources: not checked, not reported
    assert not where(found, "k8s-unknown") and not where(found, "k8s-schema")


def test_an_older_target_calls_it_deprecated_instead(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings", "--kubernetes-version", "v1.25.3")
    assert where(found, "k8s-deprecated") == [(MD, line_of(PLANTED_MD, "apiVersion: autoscaling/v2beta2"))]
    assert not where(found, "k8s-removed")


def test_entries_without_translation_or_alternates(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    heading = {e.question: e.line for e in KnowledgeBase.load(planted).entries}
    assert heading[Q_HPA] == line_of(PLANTED_MD, Q_HPA)
    # the sidecar and uninstall entries are written in English: they need no translation
    assert where(found, "no-translation") == [(MD, heading[q]) for q in (Q_HPA, Q_CLONESET_TWIN)]
    assert where(found, "no-alternates") == [(MD, heading[q]) for q in (Q_CPU, Q_STUCK, Q_HPA, Q_CLONESET_TWIN)]


def test_stale_and_unhashed_translations(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    kb = KnowledgeBase.load(planted)
    stale = [f for f in found if f["code"] == "translation-stale"]
    assert [(f["file"], f["line"]) for f in stale] == [("data/translations.yaml", 2)]  # its source_hash line
    assert source_hash(kb.by_id[TINY_IDS[Q_CPU]]) in str(stale[0]["message"])  # the hash to record once updated
    assert where(found, "translation-unhashed") == [("data/translations.yaml", 5)]  # the entry's key line


def test_a_translation_goes_stale_when_its_source_changes(tmp_path: Path) -> None:
    before = KnowledgeBase.load(write_tiny_data(tmp_path / "a")).by_id[TINY_IDS[Q_CPU]]
    rewrapped = KnowledgeBase.load(write_tiny_data(tmp_path / "b", TINY_MD.replace("CloneSet 和 Advanced", "CloneSet\n和 Advanced")))
    edited = KnowledgeBase.load(write_tiny_data(tmp_path / "c", TINY_MD.replace("v1.8.0", "v1.9.0")))
    assert source_hash(rewrapped.by_id[TINY_IDS[Q_CPU]]) == source_hash(before)  # white space only
    assert source_hash(edited.by_id[TINY_IDS[Q_CPU]]) != source_hash(before)


def test_colliding_alternates(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--no-embeddings")
    hits = [f for f in found if f["code"] == "alternate-collision"]
    assert [(f["file"], f["line"]) for f in hits] == [
        ("data/alternates.yaml", 2),  # ALT_SIDECAR under the sidecar entry …
        ("data/alternates.yaml", 7),  # … and again under the CloneSet entry
        ("data/alternates.yaml", 8),  # the CPU entry's question, as an alternate of another entry
        ("data/alternates.yaml", 9),  # a known-gap example (case and question mark aside)
        ("data/out_of_scope.yaml", 3),  # that known-gap example, pointing back
    ]
    assert TINY_IDS[Q_CLONESET] in str(hits[0]["message"]) and "data/alternates.yaml:7" in str(hits[0]["message"])
    assert f"question of entry {TINY_IDS[Q_CPU]} ({MD}:{line_of(PLANTED_MD, 'Q：原地升级')})" in str(hits[2]["message"])


def test_close_pairs_from_the_embeddings(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    found = findings(run, planted, "--similarity", "0.8")
    pairs = [f for f in found if f["code"] == "close-pair"]
    assert [(f["file"], f["line"]) for f in pairs] == [(MD, line_of(PLANTED_MD, Q_CLONESET))]
    assert entry_id(Q_CLONESET_TWIN) in str(pairs[0]["message"])
    assert not where(findings(run, planted, "--similarity", "0.99"), "close-pair")
    assert not where(findings(run, planted, "--no-embeddings", "--similarity", "0.1"), "close-pair")


def test_data_file_problems_are_findings(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    (planted / "alternates.yaml").write_text('"deadbeef":\n  - "who am I"\n', encoding="utf-8")
    found = findings(run, planted, "--no-embeddings")
    assert where(found, "data") == [("data/alternates.yaml", 1)]


def test_manifest_fields_against_the_schema(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    md = textwrap.dedent("""\
        #### Q：怎么写 Deployment？

        A：

        ```yml
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: three
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: web}
            spec:
              containers:
              - name: web
                image: nginx
        ---
        apiVersion: extensions/v1beta1
        kind: Deployment
        metadata:
          name: old
        ---
        apiVersion: apps.kruise.io/v1alpha1
        kind: CloneSet
        ```
        """)
    found = findings(run, write_tiny_data(tmp_path / "data", md), "--no-embeddings")
    assert where(found, "k8s-schema") == [(MD, line_of(md, "replicas: three"))]
    assert where(found, "k8s-unknown") == [(MD, line_of(md, "extensions/v1beta1"))]
    assert "apps/v1" in str(next(f for f in found if f["code"] == "k8s-unknown")["message"])


@pytest.mark.parametrize(("href", "code"), [
    ("https://openkruise.io/docs/", None),
    ("mailto:dev@openkruise.io", None),
    ("file:///Users/me/a.md", "link-local"),
    ("#install", "link-local"),
    ("http://localhost:8080/metrics", "link-local"),
    ("http://10.0.0.7/docs", "link-local"),
    ("../docs/a.md", "link-relative"),
    ("", "link-empty"),
    ("javascript:alert(1)", "link-scheme"),
    ("https://", "link-malformed"),
    ("https://openkruise.io:99999/", "link-malformed"),
    ("https://openkruise_io/", "link-malformed"),
    ("mailto:nobody", "link-malformed"),
])
def test_link_classification(href: str, code: str | None) -> None:
    problem = link_problem(href)
    assert (problem[0] if problem else None) == code


# --------------------------------------------------------------------------- output and exit status


def test_readable_output_grouped_by_file(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, err = run(planted, "--no-embeddings")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{MD} (")
    line = line_of(PLANTED_MD, "docs/hpa.md")
    assert f"{MD}:{line}: [warning] link-relative: relative link docs/hpa.md" in out
    assert lines[-1].startswith(f"{len(findings(run, planted, '--no-embeddings'))} finding(s)")
    assert "against Kubernetes 1." in lines[-1]


def test_strict_makes_findings_errors_and_exits_1(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(planted, "--no-embeddings", "--strict", "--json")
    assert status == 1
    assert {f["severity"] for f in json.loads(out)} == {"error"}


def test_a_clean_folder_passes_strict(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    (data / "faq").mkdir(parents=True)
    (data / "faq" / "a.md").write_text("#### Q：问题一？\n\nA：答案见 [文档](https://openkruise.io/docs/)。\n",
                                       encoding="utf-8")
    kb = KnowledgeBase.load(data)
    (e,) = kb.entries
    (data / "alternates.yaml").write_text(f'"{e.id}":\n  - "question one"\n', encoding="utf-8")
    (data / "translations.yaml").write_text(f'"{e.id}":\n  source_hash: "{source_hash(e)}"\n  question: "Question one?"\n'
                                            '  answer: "See the docs."\n', encoding="utf-8")
    status, out, err = run(data, "--strict")
    assert (status, err) == (0, "")
    assert out.splitlines()[-1].startswith("0 finding(s)")


def test_bad_kubernetes_version_is_bad_usage(run, planted: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, err = run(planted, "--kubernetes-version", "1.99")
    assert (status, out) == (2, "")
    assert err.startswith("qa: error: --kubernetes-version '1.99'") and err.count("\n") == 1


# --------------------------------------------------------------------------- the shipped FAQ

SHIPPED = "faq/openkruise-faq.zh.md"


def test_shipped_faq_file_links_and_removed_hpa(run) -> None:  # type: ignore[no-untyped-def]
    text = (REAL_DATA / SHIPPED).read_text(encoding="utf-8")
    status, out, err = run(REAL_DATA, "--json", "--no-embeddings")
    assert (status, err) == (0, "")
    found = json.loads(out)
    md = str(REAL_DATA / SHIPPED)  # outside the working folder: shown as given
    file_links = [i + 1 for i, line in enumerate(text.splitlines()) if "file://" in line]
    assert file_links == [33, 34, 89, 330]
    assert where(found, "link-local") == [(md, n) for n in file_links]
    assert text.splitlines()[293 - 1] == "apiVersion: autoscaling/v2beta2"
    removed = [(f["file"], f["line"]) for f in found if f["code"] == "k8s-removed"]
    assert removed == [(md, 293), (str(REAL_DATA / "translations.yaml"), line_of(
        (REAL_DATA / "translations.yaml").read_text(encoding="utf-8"), "apiVersion: autoscaling/v2beta2"))]
    assert {f["severity"] for f in found} == {"warning"}
    # and nothing else: every entry translated (hashes current) and with alternates, no collisions
    assert {f["code"] for f in found} == {"link-local", "k8s-removed", "k8s-schema"}

    status, out, _ = run(REAL_DATA, "--json", "--no-embeddings", "--strict")
    assert status == 1
    assert {f["severity"] for f in json.loads(out)} == {"error"}


def test_shipped_faq_readable_output(run) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(REAL_DATA, "--no-embeddings")
    assert status == 0
    md = str(REAL_DATA / SHIPPED)
    for n in (33, 34, 89, 330):
        assert f"{md}:{n}: [warning] link-local: file:// link" in out
    assert f"{md}:293: [warning] k8s-removed: HorizontalPodAutoscaler autoscaling/v2beta2 was removed in " \
           "Kubernetes 1.26" in out


@pytest.mark.integration
def test_shipped_faq_close_pairs_with_the_default_model(run) -> None:  # type: ignore[no-untyped-def]
    """The default threshold picks the shipped FAQ's known near neighbours (README of alternates.yaml)."""
    found = [f for f in json.loads(run(REAL_DATA, "--json", model="multilingual-e5-small")[1])
             if f["code"] == "close-pair"]
    assert [f["line"] for f in found] == [38, 66, 129, 209]


def test_without_the_lint_extra_manifests_are_reported_unchecked(run, planted: Path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import lint as lint_module

    monkeypatch.setattr(lint_module, "_have_schemas", lambda: False)
    found = findings(run, planted, "--no-embeddings")
    assert where(found, "k8s-removed") == []
    assert where(found, "k8s-unchecked")  # the manifest is named, not silently passed
