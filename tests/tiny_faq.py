"""The tiny bilingual FAQ the unit tests run on, and how to open an engine over it.

Test modules import these with ``from tiny_faq import ...`` (pytest puts this folder on the
import path); the fixtures built from them are in conftest.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from qa.encoders import Encoder, HashEncoder
from qa.faq import entry_id
from qa.search import Engine
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT / "data"

# The tiny FAQ's questions as the parser must return them (prefix, emphasis and backticks gone).
Q_CPU = "原地升级能修改容器的 CPU 和内存吗？"
Q_STUCK = "为什么我的 Pod 卡在 PreparingUpdate 状态？"
Q_SIDECAR = "How do I inject a sidecar container into existing pods?"
Q_UNINSTALL = "Why does helm uninstall of Kruise fail with kruise-finalizer BackoffLimitExceeded?"
Q_CLONESET = "CloneSet 和 Deployment 有什么区别？"
TINY_QUESTIONS = [Q_CPU, Q_STUCK, Q_SIDECAR, Q_UNINSTALL, Q_CLONESET]
TINY_IDS = {q: entry_id(q) for q in TINY_QUESTIONS}

SECTION_CPU = "原地升级 / 资源"
SECTION_STUCK = "原地升级 / 状态"
SECTION_SIDECAR = "Sidecar"
SECTION_UNINSTALL = "Uninstall / Helm"
SECTION_CLONESET = "工作负载"

STUCK_BASH = "kubectl logs -n kruise-system deploy/kruise-controller-manager\nkubectl describe pod my-pod"
SIDECAR_YAML = "apiVersion: apps.kruise.io/v1alpha1\nkind: SidecarSet\nmetadata:\n  name: logging-sidecar"

TINY_MD = textwrap.dedent("""\
    # 常见问题

    ## 原地升级

    ### 资源

    #### Q：原地升级能修改容器的 `CPU` 和内存吗？

    A：可以。自 v1.8.0 起，开启 `InPlaceWorkloadVerticalScaling` 功能门后，CloneSet 和 Advanced StatefulSet
    支持原地修改容器资源（CPU/内存）。

    ### 状态

    #### **Q**：为什么我的 Pod 卡在 **PreparingUpdate** 状态？

    **A**：通常是镜像预下载还没完成，或就绪网关未满足。查看 kruise-manager 的日志：

    ```bash
    kubectl logs -n kruise-system deploy/kruise-controller-manager
    kubectl describe pod my-pod
    ```

    ## Sidecar

    #### **Q**：How do I inject a *sidecar* container into existing pods?

    **A**：Create a SidecarSet (see [the concepts](file:///Users/me/doc.md#L1) and
    [the user manual](https://openkruise.io/docs/user-manuals/sidecarset)); new pods get the sidecar at creation:

    ```yaml
    apiVersion: apps.kruise.io/v1alpha1
    kind: SidecarSet
    metadata:
      name: logging-sidecar
    ```

    ## Uninstall

    ### Helm

    #### Q：Why does helm uninstall of Kruise fail with kruise-finalizer BackoffLimitExceeded?

    A：Since 1.7.3 a pre-delete hook blocks the uninstall while Kruise custom resources exist.
    Delete the CloneSets and Advanced StatefulSets first.

    ## 工作负载

    #### **Q**：CloneSet 和 Deployment 有什么区别？

    **A**：CloneSet 支持原地升级、指定 Pod 删除和 PVC 模板，Deployment 只能重建 Pod。
    """)

ALT_SIDECAR = "边车怎么注入到已经在跑的 Pod 里？"
ALT_UNINSTALL = "helm 卸载 Kruise 报错 kruise-finalizer 怎么办"
ALTERNATES_YAML = textwrap.dedent(f"""\
    # alternate phrasings
    "{TINY_IDS[Q_SIDECAR]}":
      - "{ALT_SIDECAR}"
      - "add a sidecar to running pods"
    "{TINY_IDS[Q_UNINSTALL]}":
      - "{ALT_UNINSTALL}"
    """)

GLOSSARY_TSV = textwrap.dedent("""\
    # synonym groups
    sidecar | sidecar container | 边车 | 边车容器
    in-place update | in-place | 原地升级 | 原地更新
    uninstall | 卸载
    """)

TERMS_TXT = textwrap.dedent("""\
    # domain terms
    kruise-manager
    kruise-controller-manager
    PreparingUpdate
    Advanced StatefulSet
    CloneSet
    SidecarSet
    InPlaceWorkloadVerticalScaling
    """)

OOS_Q = "how do I bake sourdough bread at home"
OUT_OF_SCOPE_YAML = textwrap.dedent(f"""\
    - topic: baking
      examples:
        - "{OOS_Q}"
        - "best oven temperature for a baguette"
    """)


def write_tiny_data(data_dir: Path, markdown: str = TINY_MD) -> Path:
    """Writes the tiny data folder: faq/tiny.md plus the four optional data files."""
    (data_dir / "faq").mkdir(parents=True, exist_ok=True)
    (data_dir / "faq" / "tiny.md").write_text(markdown, encoding="utf-8")
    (data_dir / "alternates.yaml").write_text(ALTERNATES_YAML, encoding="utf-8")
    (data_dir / "glossary.tsv").write_text(GLOSSARY_TSV, encoding="utf-8")
    (data_dir / "terms.txt").write_text(TERMS_TXT, encoding="utf-8")
    (data_dir / "out_of_scope.yaml").write_text(OUT_OF_SCOPE_YAML, encoding="utf-8")
    return data_dir


def open_engine(data_dir: Path, index_dir: Path, encoder: Encoder | None = None, **settings: Any) -> Engine:
    """``Engine.from_settings`` over a data folder, with the HashEncoder unless told otherwise.

    ``settings`` are :class:`qa.settings.Settings` fields (threshold, cache_size, allow_warnings, …).
    """
    return Engine.from_settings(Settings(data_dir=data_dir, index_dir=index_dir, **settings),
                                encoder=encoder or HashEncoder())


# An English translation of the Chinese Q_CPU entry (tests write it where they need it).
EN_CPU = "Can an in-place update change a container's CPU and memory?"
EN_CPU_ANSWER = "Yes. Since v1.8.0, with the `InPlaceWorkloadVerticalScaling` feature gate, resources change in place."


def write_translation(data_dir: Path) -> None:
    """Adds translations.yaml with the English version of the Q_CPU entry."""
    (data_dir / "translations.yaml").write_text(
        f'"{TINY_IDS[Q_CPU]}":\n  question: "{EN_CPU}"\n  answer: "{EN_CPU_ANSWER}"\n', encoding="utf-8")
