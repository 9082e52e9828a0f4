"""The model card of a version: one record (`ModelCard`, JSON in the version's metadata) and two renderings of
it, HTML (stored next to the version) and markdown (the Prefect UI). Rendering is pure: record in, text out."""

from __future__ import annotations

import base64
import html
from dataclasses import asdict, dataclass, field
from typing import Any

CARD_FILE = "card.html"


@dataclass(frozen=True)
class ModelCard:
    """Every section a reviewer reads before approving a version. Plain JSON types only: it round-trips through
    the version's metadata.json (`extra.card`), so a card can be rendered again from the registry alone."""

    model_name: str
    purpose: str
    owner: str
    data: dict[str, Any]  # window, split boundaries, row counts, fingerprint, data URI + table version
    features: dict[str, Any]  # names (numeric/categorical) and the feature service
    training: dict[str, Any]  # model config name, estimator, hyper-parameters, seed
    metrics: list[dict[str, Any]]  # per metric: train/validation/test values, test interval
    gates: dict[str, Any]  # passed, verdict, reasons, champion version, resamples and confidence
    comparison: dict[str, Any] | None  # champion version, gain intervals, side-by-side rows
    slices: list[dict[str, Any]]
    calibration: dict[str, Any]
    importance: list[dict[str, Any]]
    fairness: list[dict[str, Any]]
    behaviour: list[dict[str, Any]]
    limitations: list[str]
    lineage: dict[str, Any]  # code version, flow run, training data URI and version
    plots: list[str] = field(default_factory=list)  # file names of the version's plots shown in the HTML
    # ModelTask.to_json() + the label column and the primary metric; empty on cards made before tasks: binary
    task: dict[str, Any] = field(default_factory=dict)

    @property
    def task_kind(self) -> str:
        return str(self.task.get("kind", "binary"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        return cls(**data)


SECTIONS = (
    "Purpose and owner",
    "Data",
    "Features",
    "Training configuration",
    "Metrics",
    "Gate decision and champion comparison",
    "Slices",
    "Calibration",
    "Feature importance",
    "Fairness",
    "Behavioural checks",
    "Known limitations",
    "Lineage",
)


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _ci(i: dict[str, Any] | None, signed: bool = False) -> str:
    if not i:
        return "-"
    if i.get("low") is None:
        return _num(i["estimate"], signed)
    return f"{_num(i['estimate'], signed)} [{_num(i['low'], signed)}, {_num(i['high'], signed)}]"


Table = tuple[str, list[list[str]]]  # caption, rows with the header first


@dataclass(frozen=True)
class Section:
    """One section of the card, laid out once and rendered as markdown and as HTML."""

    title: str
    paragraphs: list[str]  # a paragraph starting "- " is a bullet
    tables: list[Table] = field(default_factory=list)


def _level(card: ModelCard) -> str:
    return f"{card.gates.get('confidence', 0.95):.0%}"


def _purpose(card: ModelCard, version: int | None) -> Section:
    owner = card.owner or "(not stated: dataset.model_card.owner)"
    return Section("Purpose and owner", [card.purpose or "(not stated: dataset.model_card.purpose)", f"Owner: {owner}"])


def _data(card: ModelCard, version: int | None) -> Section:
    d = card.data
    counts = f"{_num(d.get('train_rows'))} / {_num(d.get('validation_rows'))} / {_num(d.get('test_rows'))}"
    rows = [
        ["training window", f"{d.get('start')} .. {d.get('end')}"],
        ["validation from", str(d.get("validation_start"))],
        ["test from", str(d.get("test_start"))],
        ["rows: train / validation / test", counts],
        ["data fingerprint (SHA-256 of the rows)", str(d.get("fingerprint"))],
        ["data", f"{d.get('data_uri')} (table version {d.get('data_version')})"],
    ]
    return Section("Data", [], [("", [["", ""], *rows])])


def _features(card: ModelCard, version: int | None) -> Section:
    f = card.features
    numeric, categorical = f.get("numeric", []), f.get("categorical", [])
    return Section(
        "Features",
        [
            f"Feature service: {f.get('feature_service') or '-'}",
            f"Numeric ({len(numeric)}): {', '.join(numeric)}",
            f"Categorical ({len(categorical)}): {', '.join(categorical)}",
        ],
    )


def _task_line(card: ModelCard) -> str:
    task = card.task
    kind = card.task_kind
    label = f" of `{task['label']}`" if task.get("label") else ""
    classes = f", classes {', '.join(task.get('classes', []))}" if kind == "multiclass" else ""
    positive = f", positive class {task['positive_class']!r}" if task.get("positive_class") else ""
    primary = task.get("primary_metric", "roc_auc")
    return f"Task: {kind}{label}{classes}{positive}; the gates decide on {primary}."


def _training(card: ModelCard, version: int | None) -> Section:
    t = card.training
    params = [[k, str(v)] for k, v in sorted(t.get("params", {}).items())]
    summary = f"Model config {t.get('model_config_name')!r}: {t.get('estimator')}, seed {t.get('seed')}"
    return Section(
        "Training configuration",
        [_task_line(card), summary],
        [("hyper-parameters", [["parameter", "value"], *params])],
    )


def _metrics(card: ModelCard, version: int | None) -> Section:
    level = _level(card)
    rows = [
        [m["metric"], _num(m.get("train")), _num(m.get("validation")), _num(m.get("test")), _ci(m.get("test_interval"))]
        for m in card.metrics
    ]
    note = f"Test intervals: {level} paired bootstrap over the test rows ({card.gates.get('resamples')} resamples)."
    return Section("Metrics", [note], [("", [["metric", "train", "validation", "test", f"test, {level} CI"], *rows])])


def _decision(card: ModelCard, version: int | None) -> Section:
    g, c = card.gates, card.comparison
    verdict = "PASSED: may be promoted" if g.get("passed") else "FAILED: the champion stays"
    paragraphs = [f"Gates {verdict}."] + [f"- {r}" for r in g.get("reasons", [])]
    if c is None:
        paragraphs.append("No champion to compare with: this was the first model.")
        return Section("Gate decision and champion comparison", paragraphs)
    paragraphs.append(
        f"Compared with champion v{c['champion_version']} on the same {_num(card.data.get('test_rows'))} test rows: "
        f"{c.get('verdict')} (rule: promote_when={c.get('rule')})."
    )
    gains = [[name, _ci(i, signed=True), str(i.get("verdict", ""))] for name, i in c.get("gains", {}).items()]
    label = "this version" if version is None else f"v{version}"
    tables: list[Table] = [
        (
            f"gain over the champion (positive = this version is better), {_level(card)} CI",
            [["quantity", "gain [CI]", "verdict"], *gains],
        ),
        ("side by side", [["", label, f"v{c['champion_version']}"], *[list(r) for r in c.get("side_by_side", [])]]),
    ]
    return Section("Gate decision and champion comparison", paragraphs, tables)


def _slices(card: ModelCard, version: int | None) -> Section:
    rows = [
        [
            s["slice"],
            _num(s["rows"]),
            _ci(s.get("challenger")),
            _ci(s.get("champion")),
            _ci(s.get("gain"), signed=True),
            s.get("verdict", ""),
        ]
        for s in card.slices
    ]
    note = f"Primary metric per slice of dataset.slices, {_level(card)} CI (slices resampled on their own)."
    return Section("Slices", [note], [("", [["slice", "rows", "this version", "champion", "gain", "verdict"], *rows])])


def _calibration(card: ModelCard, version: int | None) -> Section | None:
    cal = card.calibration
    if card.task_kind == "regression":
        return None  # probabilities only: a regression card has no calibration section
    rows = [
        [str(b["bin"]), _num(b["rows"]), _num(b["mean_predicted"]), _num(b["observed_rate"])]
        for b in cal.get("bins", [])
    ]
    of = cal.get("of", "the test scores")
    error = _num(cal.get("expected_calibration_error"))
    note = f"Expected calibration error {error} ({cal.get('strategy')} bins of {of})."
    return Section("Calibration", [note], [("", [["bin", "rows", "mean predicted", "observed rate"], *rows])])


_IMPORTANCE = {
    "binary": ("roc_auc_drop", "ROC AUC drop", "the drop in ROC AUC"),
    "multiclass": ("macro_f1_drop", "macro F1 drop", "the drop in macro F1"),
    "regression": ("rmse_rise", "RMSE rise", "the rise in RMSE"),
}


def _importance(card: ModelCard, version: int | None) -> Section:
    key, header, what = _IMPORTANCE.get(card.task_kind, _IMPORTANCE["binary"])
    rows = [[r["feature"], _num(r.get(key)), _num(r["std"])] for r in card.importance]
    note = (
        f"Permutation importance on the test set: {what} when a feature is shuffled. "
        "What the model relies on, not what causes the outcome."
    )
    return Section("Feature importance", [note], [("", [["feature", header, "std"], *rows])])


def _fairness(card: ModelCard, version: int | None) -> Section:
    if not card.fairness:
        return Section("Fairness", ["No sensitive attributes configured (dataset.model_card.sensitive_attributes)."])
    if card.task_kind != "binary":
        return _group_errors(card)
    header = ["group", "rows", "churn rate", "selection rate", "TPR", "FPR", "ROC AUC"]
    keys = ("rows", "positive_rate", "selection_rate", "true_positive_rate", "false_positive_rate", "roc_auc")
    tables: list[Table] = []
    for a in card.fairness:
        caption = (
            f"{a['feature']}: demographic parity difference {_num(a['demographic_parity_difference'])}, "
            f"equalized odds difference {_num(a['equalized_odds_difference'])} (decision: score >= {a['threshold']})"
        )
        tables.append((caption, [header, *[[r["group"], *(_num(r[k]) for k in keys)] for r in a["groups"]]]))
    note = "By each configured sensitive attribute (dataset.model_card.sensitive_attributes), fairlearn MetricFrame."
    return Section("Fairness", [note], tables)


def _group_errors(card: ModelCard) -> Section:
    """Multiclass / regression fairness: the task's error metrics per group and the largest gap between groups."""
    tables: list[Table] = []
    for a in card.fairness:
        columns = a["columns"]
        gap = a["gap"]
        caption = f"{a['feature']}: largest {gap['metric']} difference between groups {_num(gap['difference'])}"
        body = [[r["group"], *(_num(r[k]) for k in columns)] for r in a["groups"]]
        tables.append((caption, [["group", *(c.replace("_", " ") for c in columns)], *body]))
    note = (
        "By each configured sensitive attribute (dataset.model_card.sensitive_attributes), fairlearn MetricFrame: "
        "the task's error by group (demographic parity and equalized odds are defined for binary decisions only)."
    )
    return Section("Fairness", [note], tables)


def _behaviour(card: ModelCard, version: int | None) -> Section:
    rows = [
        [
            b["name"],
            "yes" if b["passed"] else "NO",
            ", ".join(f"{k}={v:.4g}" for k, v in b["metrics"].items()),
            "; ".join(b["reasons"]),
        ]
        for b in card.behaviour
    ]
    return Section("Behavioural checks", [], [("", [["check", "passed", "measured", "reasons"], *rows])])


def _limitations(card: ModelCard, version: int | None) -> Section:
    return Section("Known limitations", [f"- {item}" for item in card.limitations])


def _lineage(card: ModelCard, version: int | None) -> Section:
    lin = card.lineage
    rows = [
        ["code version", str(lin.get("code_version"))],
        ["flow run", str(lin.get("flow_run_id"))],
        ["training data", f"{lin.get('data_uri')} (table version {lin.get('data_version')})"],
        ["libraries", ", ".join(f"{k} {v}" for k, v in lin.get("libraries", {}).items())],
    ]
    return Section("Lineage", [], [("", [["", ""], *rows])])


_BUILDERS = (
    _purpose,
    _data,
    _features,
    _training,
    _metrics,
    _decision,
    _slices,
    _calibration,
    _importance,
    _fairness,
    _behaviour,
    _limitations,
    _lineage,
)


def sections(card: ModelCard, version: int | None) -> list[Section]:
    built = (build(card, version) for build in _BUILDERS)
    return [section for section in built if section is not None]


def _title(card: ModelCard, version: int | None) -> str:
    return f"Model card: {card.model_name} {'(unregistered)' if version is None else f'v{version}'}"


def card_markdown(
    card: ModelCard, version: int | None = None, html_uri: str | None = None, html_url: str | None = None
) -> str:
    """The card as markdown (the Prefect artifact). `html_url`: a link a browser opens (presigned) to the HTML."""
    lines = [f"# {_title(card, version)}", ""]
    if html_uri:
        opened = f"[open it]({html_url}) (a link that expires), or " if html_url else ""
        lines += [f"The same card as HTML, with the plots: {opened}`{html_uri}`", ""]
    for section in sections(card, version):
        title, paragraphs, tables = section.title, section.paragraphs, section.tables
        lines += [f"## {title}", ""]
        for i, paragraph in enumerate(paragraphs):  # a blank line after a paragraph, and after the last bullet
            bullet_follows = i + 1 < len(paragraphs) and paragraphs[i + 1].startswith("- ")
            lines += [paragraph] if paragraph.startswith("- ") and bullet_follows else [paragraph, ""]
        for caption, rows in tables:
            if caption:
                lines += [f"*{caption}*", ""]
            header, *body = rows
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]
            lines.append("")
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:980px;color:#1f2328;
line-height:1.45;padding:0 1rem}h1{border-bottom:2px solid #d0d7de;padding-bottom:.3rem}h2{margin-top:2rem;
border-bottom:1px solid #d0d7de}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}th{background:#f6f8fa}
caption{caption-side:top;text-align:left;font-style:italic;padding:.2rem 0}.passed{color:#1a7f37}
.failed{color:#cf222e}.plots img{max-width:46%;margin-right:2%}code{background:#f6f8fa;padding:0 .2rem}
"""


def card_html(card: ModelCard, version: int | None = None, images: dict[str, bytes] | None = None) -> str:
    """A self-contained page: plots embedded as data URIs, so it opens anywhere it is copied to."""
    e = html.escape
    status = "passed" if card.gates.get("passed") else "failed"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(_title(card, version))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(_title(card, version))}</h1>",
        f"<p class='{status}'><strong>Gates {status}</strong>"
        + (
            f" — verdict vs champion: <strong>{e(str(card.comparison.get('verdict')))}</strong>"
            if card.comparison
            else ""
        )
        + "</p>",
    ]
    for section in sections(card, version):
        title, paragraphs, tables = section.title, section.paragraphs, section.tables
        parts.append(f"<h2>{e(title)}</h2>")
        bullets = [p[2:] for p in paragraphs if p.startswith("- ")]
        parts += [f"<p>{e(p)}</p>" for p in paragraphs if not p.startswith("- ")]
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in bullets) + "</ul>")
        for caption, rows in tables:
            header, *body = rows
            parts.append("<table>" + (f"<caption>{e(caption)}</caption>" if caption else ""))
            if any(header):
                parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in body]
            parts.append("</table>")
        if title == ("Metrics" if card.task_kind == "regression" else "Calibration") and images:
            shown = [name for name in card.plots if name in images]
            parts.append("<div class='plots'>")
            parts += [
                f"<img alt='{e(name)}' src='data:image/png;base64,{base64.b64encode(images[name]).decode()}'>"
                for name in shown
            ]
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
