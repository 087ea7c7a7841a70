"""The ``qa`` command line, run in-process through ``qa.cli.main`` (and once as the console script)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_faq import (
    ALT_SIDECAR,
    EN_CPU,
    OOS_Q,
    Q_CPU,
    Q_SIDECAR,
    Q_STUCK,
    ROOT,
    STUCK_BASH,
    TINY_IDS,
    TINY_QUESTIONS,
    write_translation,
)

from qa.cli import main
from qa.contract import Answer
from qa.embeddings import FOLDER as EMBEDDINGS
from qa.index import MANIFEST, PASSAGES, VECTORS

METRICS = ["top1", "rank1", "mrr", "recall@3", "false_reject", "wrong", "rejected"]
QA_SCRIPT = Path(sys.executable).parent / "qa"


@pytest.fixture
def cli(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Runs ``qa --data-dir … --index-dir … --model hash ARGS``; returns (status, stdout, stderr)."""
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width
    base = ["--data-dir", str(tiny_data), "--index-dir", str(tmp_path / "index"), "--model", "hash"]

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        status = main([*base, *args])
        out, err = capsys.readouterr()
        return status, out, err

    run.index_dir = tmp_path / "index"  # type: ignore[attr-defined]
    run.data_dir = tiny_data  # type: ignore[attr-defined]
    return run


def assert_one_line_error(err: str) -> None:
    assert err.startswith("qa: error: ")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert "Traceback" not in err


# --------------------------------------------------------------------------- ask


def test_ask_json_prints_the_contract(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("ask", "--json", Q_STUCK)
    assert (status, err) == (0, "")
    answer = Answer.model_validate_json(out)
    assert (answer.question, answer.language) == (Q_STUCK, "zh")
    assert answer.match is not None
    assert (answer.match.id, answer.match.question) == (TINY_IDS[Q_STUCK], Q_STUCK)
    assert answer.match.commands[0].language == "bash"
    assert len(answer.alternatives) == 2
    assert "\\u" not in out  # Chinese printed as is


def test_ask_json_top_k(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("ask", "--json", "-k", "5", Q_CPU)
    assert status == 0
    assert len(json.loads(out)["alternatives"]) == 4


def test_ask_joins_the_words_of_an_unquoted_question(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("ask", "--json", *Q_SIDECAR.split())
    assert status == 0
    body = json.loads(out)
    assert body["question"] == Q_SIDECAR and body["match"]["id"] == TINY_IDS[Q_SIDECAR]


def test_ask_readable_output(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("ask", Q_SIDECAR)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].rstrip() == f"Q: {Q_SIDECAR}   (Sidecar)"
    assert lines[1].rstrip() == f"confidence 100%  id {TINY_IDS[Q_SIDECAR]}"
    assert "── command 1 (yaml) ──" in out
    assert "kind: SidecarSet" in out
    assert "Did you mean:" in out
    assert "\x1b[" not in out  # no colour codes when not writing to a terminal


def test_ask_readable_output_without_a_match(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("ask", OOS_Q)
    assert status == 0
    assert "No good answer in the FAQ for this question." in out
    assert "Nearest questions:" in out
    assert not any(line.startswith("Q: ") for line in out.splitlines())


@pytest.mark.parametrize("question", ["", "   "])
def test_ask_blank_question_exits_2_with_a_one_line_error(cli, question: str) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("ask", question)
    assert status == 2
    assert out == ""
    assert_one_line_error(err)
    assert "empty" in err


def test_ask_stdin_prints_one_json_line_per_question(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("ask", "--json", "-", stdin=f"{Q_CPU}\n{ALT_SIDECAR}\n{OOS_Q}\n")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3
    answers = [Answer.model_validate_json(line) for line in lines]
    assert [a.question for a in answers] == [Q_CPU, ALT_SIDECAR, OOS_Q]
    assert [a.match and a.match.id for a in answers] == [TINY_IDS[Q_CPU], TINY_IDS[Q_SIDECAR], None]


def test_ask_stdin_reports_a_blank_line_and_goes_on(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("ask", "-", stdin=f"{Q_CPU}\n   \n{Q_STUCK}\n")
    assert status == 2
    first, blank, third = [json.loads(line) for line in out.splitlines()]
    assert first["match"]["id"] == TINY_IDS[Q_CPU]
    assert set(blank) == {"question", "error"}
    assert blank["error"]["code"] == "invalid_question"
    assert third["match"]["id"] == TINY_IDS[Q_STUCK]


def test_threshold_option_and_environment(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("--threshold", "1", "ask", "--json", Q_CPU)
    assert status == 0 and json.loads(out)["match"] is None
    monkeypatch.setenv("QA_THRESHOLD", "1.0")
    status, out, _ = cli("ask", "--json", Q_CPU)
    assert status == 0 and json.loads(out)["match"] is None
    monkeypatch.setenv("QA_THRESHOLD", "0.5")
    status, out, _ = cli("ask", "--json", Q_CPU)
    assert json.loads(out)["match"]["id"] == TINY_IDS[Q_CPU]


def test_bad_threshold_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("--threshold", "1.5", "ask", Q_CPU)
    assert (status, out) == (2, "")
    assert_one_line_error(err)


def test_missing_faq_exits_1(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("--data-dir", str(tmp_path / "nowhere"), "ask", Q_CPU)
    assert (status, out) == (1, "")
    assert_one_line_error(err)
    assert "no FAQ entries" in err


# --------------------------------------------------------------------------- build


def test_build_then_build_force(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("build")
    assert (status, err) == (0, "")
    assert out.startswith("index: 15 vectors of 256 dims for 5 entries, model hash-256, in ")
    assert str(cli.index_dir) in out
    assert {p.name for p in cli.index_dir.iterdir()} == {MANIFEST, VECTORS, PASSAGES, EMBEDDINGS}
    vectors = cli.index_dir / VECTORS
    stamp = vectors.stat().st_mtime_ns
    os.utime(vectors, ns=(stamp - 10**9, stamp - 10**9))  # an old file, so a rewrite is visible
    stamp = vectors.stat().st_mtime_ns
    status, out, _ = cli("build")  # current: loaded, not rebuilt
    assert status == 0 and vectors.stat().st_mtime_ns == stamp
    status, out, _ = cli("build", "--force")
    assert status == 0 and out.startswith("index: 15 vectors")
    assert vectors.stat().st_mtime_ns != stamp


def break_faq(cli) -> None:  # type: ignore[no-untyped-def]
    faq = cli.data_dir / "faq" / "tiny.md"
    faq.write_text(faq.read_text(encoding="utf-8") + "\n## X\n\n#### Q：Unanswered?\n", encoding="utf-8")


def test_first_build_of_a_broken_faq_builds_what_loaded_and_says_what_did_not(cli) -> None:  # type: ignore[no-untyped-def]
    break_faq(cli)
    status, out, err = cli("build")
    assert status == 0 and "built in" in out
    assert "tiny.md:54: question has no answer: Unanswered?" in err and "left out" in err
    status, out, _ = cli("ask", "--json", Q_STUCK)
    assert status == 0 and Answer.model_validate_json(out).match is not None


def test_a_broken_faq_never_replaces_a_good_index(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("build")[0] == 0
    manifest = (cli.index_dir / MANIFEST).read_bytes()
    break_faq(cli)
    for command in (["build"], ["ask", Q_STUCK]):
        status, out, err = cli(*command)
        assert (status, out) == (1, "")
        assert "tiny.md:54: question has no answer: Unanswered?" in err and "--allow-warnings" in err
        assert "Traceback" not in err
        assert (cli.index_dir / MANIFEST).read_bytes() == manifest  # the good index is untouched
    status, out, err = cli("--allow-warnings", "build")
    assert status == 0 and "built in" in out
    assert (cli.index_dir / MANIFEST).read_bytes() != manifest
    status, out, err = cli("build")  # now current: loads, and still says what is wrong
    assert status == 0 and "nothing to build" in out and "Unanswered?" in err


def test_build_says_whether_it_built(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("build")
    assert status == 0 and "built in" in out
    status, out, _ = cli("build")
    assert status == 0 and "already current, nothing to build" in out and "built in" not in out
    status, out, _ = cli("build", "--force")
    assert status == 0 and "built in" in out


@pytest.mark.parametrize("columns", ["60", "30"])
def test_commands_are_printed_whole_at_any_width(cli, monkeypatch: pytest.MonkeyPatch, columns: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", columns)
    status, out, _ = cli("ask", Q_STUCK)
    assert status == 0
    for line in STUCK_BASH.splitlines():  # the first is 62 characters long
        assert line in out.splitlines()


def test_commands_are_printed_whole_when_piped(tmp_path: Path) -> None:
    # the real FAQ, with an index of its own: the repository's index/ is the real model's
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")} | {"COLUMNS": "60",
                                                                            "QA_INDEX_DIR": str(tmp_path / "index")}
    out = subprocess.run([str(QA_SCRIPT), "--model", "hash", "ask", Q_STUCK], capture_output=True, text=True,
                         timeout=120, env=env, cwd=ROOT)
    # the real FAQ and the hash model: whatever entry comes first, every command line is whole
    assert out.returncode == 0, out.stderr
    answer = json.loads(subprocess.run([str(QA_SCRIPT), "--model", "hash", "ask", "--json", Q_STUCK],
                                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT).stdout)
    for part in (answer["match"] or {"answer": []})["answer"]:
        for line in part.get("code", "").splitlines():
            assert line in out.stdout.splitlines()


# --------------------------------------------------------------------------- eval


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    rows = [
        {"q": Q_CPU, "id": TINY_IDS[Q_CPU], "lang": "zh", "kind": "exact"},
        {"q": ALT_SIDECAR, "id": TINY_IDS[Q_SIDECAR], "lang": "zh", "kind": "paraphrase"},
        {"q": OOS_Q, "id": None, "lang": "en", "kind": "offtopic"},
    ]
    path.write_text("# a comment\n\n" + "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_eval_prints_the_metric_names(cli, eval_file: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("eval", str(eval_file))
    assert (status, err) == (0, "")
    assert "overall (threshold 0.5)" in out
    assert "by lang" in out and "by kind" in out
    for name in METRICS:
        assert len(re.findall(rf"\b{re.escape(name)}\b", out)) == 3, name  # a column in each of the three tables
    for row in ("exact", "paraphrase", "offtopic", "zh", "en"):
        assert row in out
    assert "100.0%" in out


def test_eval_json(cli, eval_file: Path) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = cli("eval", "--json", str(eval_file))
    assert status == 0
    body = json.loads(out)
    assert body["failures"] == []
    assert body["report"]["all"]["all"] == {"n": 3, "top1": 1.0, "rank1": 1.0, "mrr": 1.0, "recall@3": 1.0,
                                            "false_reject": 0.0, "wrong": 0.0, "rejected": 1.0}
    assert body["report"]["lang"]["en"] == {"n": 1, "rejected": 1.0}
    assert set(body["report"]["kind"]) == {"exact", "paraphrase", "offtopic"}


def test_eval_failures_are_listed(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "wrong.jsonl"
    path.write_text(json.dumps({"q": Q_CPU, "id": TINY_IDS[Q_STUCK], "lang": "zh", "kind": "k"}) + "\n",
                    encoding="utf-8")
    status, out, _ = cli("eval", "--json", str(path))
    assert status == 0
    body = json.loads(out)
    [failure] = body["failures"]
    assert (failure["expected"], failure["matched"]) == (TINY_IDS[Q_STUCK], TINY_IDS[Q_CPU])
    assert (body["report"]["all"]["all"]["wrong"], body["report"]["all"]["all"]["false_reject"]) == (1.0, 0.0)
    status, out, _ = cli("eval", "--failures", str(path))
    assert "1 wrong" in out


def test_eval_of_a_bad_file_exits_2_naming_the_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.jsonl"
    path.write_text('{"q": "ok", "id": null}\n{"id": "x"}\n', encoding="utf-8")
    status, out, err = cli("eval", str(path))
    assert (status, out) == (2, "")
    assert_one_line_error(err)
    assert f"{path}:2:" in err


def test_eval_of_an_empty_file_exits_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "empty.jsonl"
    path.write_text("# nothing\n", encoding="utf-8")
    status, _, err = cli("eval", str(path))
    assert status == 2
    assert_one_line_error(err)


def test_eval_metric_names_are_whole_at_80_columns(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kinds.jsonl"
    path.write_text("\n".join(json.dumps({"q": q, "id": TINY_IDS[q], "lang": "zh", "kind": kind})
                              for q, kind in zip(TINY_QUESTIONS, ["translation", "paraphrase", "keyword"])) + "\n",
                    encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "80")
    status, out, _ = cli("eval", str(path))
    assert status == 0
    assert "…" not in out
    for name in METRICS:
        assert out.count(name) == 3, name


# --------------------------------------------------------------------------- list


def test_list_prints_every_entry(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("list")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"{TINY_IDS[Q_CPU]}  [原地升级 / 资源]  {Q_CPU}",
        f"{TINY_IDS[Q_STUCK]}  [原地升级 / 状态]  {Q_STUCK}",
        f"{TINY_IDS[Q_SIDECAR]}  [Sidecar]  {Q_SIDECAR}",
        f"{TINY_IDS[TINY_QUESTIONS[3]]}  [Uninstall / Helm]  {TINY_QUESTIONS[3]}",
        f"{TINY_IDS[TINY_QUESTIONS[4]]}  [工作负载]  {TINY_QUESTIONS[4]}",
    ]
    assert not cli.index_dir.exists()  # listing needs no index


def test_usage_errors_exit_2(cli, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    for args in (["ask", "-k", "0", "q"], ["ask"], ["frobnicate"], []):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        assert "usage: qa" in capsys.readouterr().err


# --------------------------------------------------------------------------- the console script


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.pop("COLUMNS", None)
    return env


def test_console_script_help() -> None:
    assert QA_SCRIPT.is_file() and os.access(QA_SCRIPT, os.X_OK)
    done = subprocess.run([str(QA_SCRIPT), "--help"], check=False, capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: qa")
    for command in ("ask", "build", "eval", "list", "serve"):
        assert command in done.stdout
    assert done.stderr == ""


def test_console_script_answers(tiny_data: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(QA_SCRIPT), "--data-dir", str(tiny_data), "--index-dir", str(tmp_path / "index"), "--model", "hash",
         "ask", "--json", Q_CPU],
        check=False, capture_output=True, text=True, timeout=120, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["match"]["id"] == TINY_IDS[Q_CPU]
    assert done.stderr == ""  # no jieba or faiss chatter
    done = subprocess.run([str(QA_SCRIPT), "ask", " "], check=False, capture_output=True, text=True, timeout=120,
                          env=clean_env(), cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("qa: error: ") and done.stderr.count("\n") == 1


def test_an_english_question_reads_the_translation_first_and_the_original_is_one_line_away(cli) -> None:  # type: ignore[no-untyped-def]
    write_translation(cli.data_dir)
    status, out, _ = cli("ask", EN_CPU)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"Q: {EN_CPU}")
    assert "feature gate, resources change in place" in out and "开启" not in out
    assert f"Translated from the Chinese FAQ; the original: qa show {TINY_IDS[Q_CPU]}" in out
    status, out, _ = cli("show", TINY_IDS[Q_CPU])
    assert status == 0 and out.startswith(f"Q: {Q_CPU}") and "开启" in out
    answer = Answer.model_validate_json(cli("ask", "--json", EN_CPU)[1])
    assert answer.match is not None and answer.match.question == Q_CPU  # the original stays the original
    assert answer.match.translation is not None and answer.match.translation.question == EN_CPU
    # a Chinese question gets the original only
    zh = Answer.model_validate_json(cli("ask", "--json", Q_CPU)[1])
    assert zh.match is not None and zh.match.translation is None


def test_did_you_mean_is_in_english_for_an_english_question_where_a_translation_is_kept(cli) -> None:  # type: ignore[no-untyped-def]
    write_translation(cli.data_dir)
    cpu = TINY_IDS[Q_CPU]
    # an English question answered by another entry (or none): the CPU entry is among the alternatives
    en = Answer.model_validate_json(cli("ask", "--json", "--top-k", "5", "How do I upgrade a pod in place?")[1])
    by_id = {a.id: a for a in en.alternatives}
    assert cpu in by_id and by_id[cpu].translated_question == EN_CPU and by_id[cpu].question == Q_CPU
    assert all(a.translated_question is None for a in en.alternatives if a.id != cpu)  # no translation kept
    zh = Answer.model_validate_json(cli("ask", "--json", "--top-k", "5", "原地升级怎么做？")[1])
    assert zh.language == "zh" and all(a.translated_question is None for a in zh.alternatives)
    status, out, _ = cli("ask", "--top-k", "5", "How do I upgrade a pod in place?")
    assert status == 0 and f"{EN_CPU} ({cpu}," in " ".join(out.split())


def test_show_an_unknown_id_is_a_one_line_error(cli) -> None:  # type: ignore[no-untyped-def]
    status, out, err = cli("show", "deadbeef")
    assert (status, out) == (2, "")
    assert_one_line_error(err)
