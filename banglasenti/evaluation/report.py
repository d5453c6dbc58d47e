"""The comparison report as one self-contained HTML page (plots embedded as base64 PNG, no scripts, no links).

Sections: warnings, headline table with bootstrap intervals, paired tests, confusion matrices, per-class F1,
training curves, sizes and speed, data quality. `docs/results.md` explains how to read it.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

from banglasenti.config.schema import CLASS_NAMES

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b;
padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f2f2f2}
.warn{background:#fff0f0;border-left:4px solid #c00;padding:.5rem 1rem;margin:.5rem 0}
.note{color:#555;font-size:.9rem}
img{max-width:100%;height:auto;display:block;margin:.5rem 0 1.5rem}
pre{background:#f7f7f7;padding:1rem;overflow-x:auto;font-size:.85rem}
"""


def png_data_uri(fig) -> str:
    """A matplotlib figure as a data: URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(models: dict[str, dict[str, Any]]):
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        cm = m["confusion_matrix"]
        ax.imshow(cm, cmap="Blues")
        top = max(max(row) for row in cm) or 1
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.tight_layout()
    return fig


def per_class_f1_figure(models: dict[str, dict[str, Any]]):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(models)
    for k, (name, m) in enumerate(models.items()):
        xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(CLASS_NAMES))]
        ax.bar(xs, [m["per_class"][c]["f1"] for c in CLASS_NAMES], width, label=name)
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test F1")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    return fig


def curves_figure(summaries: dict[str, dict[str, Any]]):
    """Train and val loss, and val macro-F1, per epoch for every model with a history."""
    plt = _pyplot()
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, s in summaries.items():
        history = s.get("history") or []
        epochs = [r["epoch"] for r in history]
        line = loss_ax.plot(
            epochs, [r.get("train_loss", float("nan")) for r in history], marker="o", label=f"{name} train"
        )[0]
        loss_ax.plot(
            epochs,
            [r.get("val_loss", float("nan")) for r in history],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{name} val",
        )
        f1_ax.plot(epochs, [r.get("val_macro_f1", float("nan")) for r in history], marker="o", label=name)
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, f1_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize="small")
    f1_ax.set_xlabel("epoch")
    f1_ax.set_ylabel("val macro-F1")
    f1_ax.set_ylim(0, 1)
    f1_ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _ci(intervals: dict[str, list[float]] | None, key: str) -> str:
    if not intervals:
        return "-"
    low, high = intervals[key]
    return f"[{low:.3f}, {high:.3f}]"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def warnings_html(results: dict[str, Any]) -> list[str]:
    out = []
    reference = results["models"].get("reference")
    for name, m in results["models"].items():
        if m["collapsed"]:
            out.append(f"{name} collapsed: it predicts one class for every test example.")
        elif not m["beats_majority_class"]:
            out.append(f"{name} does not beat the majority-class macro-F1.")
        if reference and name != "reference" and m["macro_f1"] < reference["macro_f1"]:
            out.append(
                f"{name} scores below the TF-IDF reference (macro-F1 {m['macro_f1']:.3f} < "
                f"{reference['macro_f1']:.3f})."
            )
    return [f'<div class="warn"><strong>WARNING:</strong> {escape(w)}</div>' for w in out]


def headline_html(results: dict[str, Any]) -> str:
    unc = results.get("uncertainty", {})
    intervals = unc.get("intervals", {})
    level = round(100 * unc.get("level", 0.95))
    rows = []
    for name, m in results["models"].items():
        ci = intervals.get(name)
        rows.append(
            [
                name,
                f"{m['macro_f1']:.4f}",
                _ci(ci, "macro_f1"),
                f"{m['accuracy']:.4f}",
                _ci(ci, "accuracy"),
                f"{m['weighted_f1']:.4f}",
                _ci(ci, "weighted_f1"),
                m["predicted_classes"],
            ]
        )
    maj = results["majority_class"]
    rows.append(
        [
            "majority class",
            f"{maj['macro_f1']:.4f}",
            "-",
            f"{maj['accuracy']:.4f}",
            "-",
            f"{maj['weighted_f1']:.4f}",
            "-",
            1,
        ]
    )
    header = [
        "model",
        "macro-F1",
        f"{level} % CI",
        "accuracy",
        f"{level} % CI",
        "weighted F1",
        f"{level} % CI",
        "classes predicted",
    ]
    n = next(iter(results["models"].values()))["examples"]
    note = (
        f'<p class="note">Test split: {n} examples. Intervals: percentile bootstrap over '
        f"{unc.get('samples', 0)} resamples of the test split (seed {unc.get('seed', '-')}).</p>"
    )
    return _table(header, rows) + note


def tests_html(results: dict[str, Any]) -> str:
    tests = results.get("uncertainty", {}).get("paired_tests", [])
    if not tests:
        return "<p>No paired tests.</p>"
    rows = [
        [
            f"{t['a']} - {t['b']}",
            f"{t['bootstrap_macro_f1_delta']:+.4f}",
            f"[{t['bootstrap_delta_low']:+.3f}, {t['bootstrap_delta_high']:+.3f}]",
            f"{t['bootstrap_p_value']:.3f}",
            f"{t['mcnemar_a_only_correct']} / {t['mcnemar_b_only_correct']}",
            f"{t['mcnemar_p_value']:.3f}",
        ]
        for t in tests
    ]
    header = [
        "pair (a - b)",
        "macro-F1 difference",
        "bootstrap CI",
        "bootstrap p",
        "only a / only b correct",
        "McNemar p",
    ]
    return _table(header, rows) + (
        '<p class="note">Paired bootstrap: both models scored on the same resamples; p is twice the share of '
        "resamples on the smaller side of zero. McNemar: exact binomial test on the examples exactly one of the "
        "two models gets right. p below 0.05 means the difference is unlikely to be resampling noise.</p>"
    )


def cost_html(summaries: dict[str, dict[str, Any]], sizes: dict[str, int]) -> str:
    rows = []
    for name, s in summaries.items():
        total = s.get("total_parameters")
        trainable = s.get("trainable_parameters")
        share = f"{100 * trainable / total:.2f} %" if total and trainable is not None else "-"
        rows.append(
            [
                name,
                f"{trainable:,}" if trainable is not None else "-",
                f"{total:,}" if total else "-",
                share,
                _mib(sizes.get(name)),
                f"{s.get('wall_seconds', float('nan')):.1f}",
                f"{s.get('train_examples_per_second', float('nan')):.1f}",
                s.get("epochs_run", "-"),
                s.get("best_epoch", "-"),
                s.get("device", "-"),
            ]
        )
    header = [
        "model",
        "trainable params",
        "total params",
        "trainable share",
        "saved size",
        "train wall s",
        "examples/s",
        "epochs run",
        "best epoch",
        "device",
    ]
    text = _table(header, rows)
    if sizes.get("lora") and sizes.get("baseline"):
        text += (
            f'<p class="note">The LoRA artifact (adapter + classifier head) is '
            f"{100 * sizes['lora'] / sizes['baseline']:.1f} % of the full fine-tuned model's size. "
            "Examples/s counts training examples per second of the whole training run (evaluation included)."
            "</p>"
        )
    return text


def data_quality_html(data_quality: dict[str, Any] | None) -> str:
    if not data_quality:
        return "<p>No data-quality report was given to evaluate.</p>"
    parts = []
    if data_quality.get("label_counts"):
        rows = []
        for split, counts in data_quality["label_counts"].items():
            total = max(sum(counts.values()), 1)
            rows.append([split, total] + [f"{n} ({100 * n / total:.1f} %)" for n in counts.values()])
        parts.append(_table(["split", "rows", *CLASS_NAMES], rows))
    findings = data_quality.get("findings") or {}
    if findings:
        parts.append(_table(["finding", "value"], [[k.replace("_", " "), v] for k, v in findings.items()]))
    if data_quality.get("markdown"):
        parts.append(
            "<details><summary>The data-quality report of prepare</summary><pre>"
            f"{escape(data_quality['markdown'])}</pre></details>"
        )
    return "".join(parts)


def render_html(
    results: dict[str, Any],
    summaries: dict[str, dict[str, Any]],
    sizes: dict[str, int],
    data_quality: dict[str, Any] | None = None,
    title: str = "LoRA vs full fine-tuning",
) -> str:
    """The whole report page."""
    models = results["models"]
    curves = {name: s for name, s in summaries.items() if s.get("history")}
    served = results.get("served")
    body = [
        f"<h1>{escape(title)}: test results</h1>",
        *warnings_html(results),
        *(
            [f"<p>Exported and served: <strong>{escape(served['model'])}</strong> ({escape(served['reason'])}).</p>"]
            if served
            else []
        ),
        "<h2>Headline</h2>",
        headline_html(results),
        "<h2>Is the difference real?</h2>",
        tests_html(results),
        "<h2>Confusion matrices</h2>",
        _img(png_data_uri(confusion_figure(models)), "confusion matrices"),
        "<h2>Per-class F1</h2>",
        _img(png_data_uri(per_class_f1_figure(models)), "per-class F1"),
        _table(
            ["model", *[f"{c} P / R / F1" for c in CLASS_NAMES]],
            [
                [name]
                + [
                    f"{m['per_class'][c]['precision']:.3f} / {m['per_class'][c]['recall']:.3f} / "
                    f"{m['per_class'][c]['f1']:.3f}"
                    for c in CLASS_NAMES
                ]
                for name, m in models.items()
            ],
        ),
    ]
    if curves:
        body += ["<h2>Training curves</h2>", _img(png_data_uri(curves_figure(curves)), "training curves")]
    body += [
        "<h2>Cost: parameters, size, speed</h2>",
        cost_html(summaries, sizes),
        "<h2>Data quality</h2>",
        data_quality_html(data_quality),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
