"""Render the README's picture of a model card: the default dataset (conveyor/demo/synthetic.py, its defaults),
the default training window, the `default` model as challenger against a `quick` champion, built by the same
code as the training flow but in memory (no servers), then drawn by headless Chromium.

    .venv/bin/python docs/render_model_card.py     # writes docs/model-card.png (the HTML: a temporary file)
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configs.settings import load_settings  # noqa: E402
from conveyor.adapters.registry_records import LoadedModel, ModelVersion, code_version  # noqa: E402
from conveyor.demo.synthetic import generate_window  # noqa: E402
from conveyor.services.card_builder import build_card  # noqa: E402
from conveyor.services.model_card import card_html  # noqa: E402
from conveyor.services.training import evaluate_gates, fit_and_evaluate, training_metadata  # noqa: E402

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    settings = load_settings()
    gen = settings.generator
    days = generate_window(gen.start_date, gen.days, settings.dataset, gen)
    end = gen.start_date + dt.timedelta(days=gen.days - 1)
    start = end - dt.timedelta(days=settings.training.window_days - 1)
    frame = pd.concat([f for day, f in days.items() if start <= day <= end], ignore_index=True)
    uri = f"s3://{settings.storage.bucket}/raw/{settings.dataset.name}"

    champion_fit = fit_and_evaluate(frame, settings, "quick")
    champion_meta = training_metadata(
        champion_fit, evaluate_gates(champion_fit, None, settings), settings, start, end, "churn_v1"
    )
    champion = ModelVersion(
        **{**asdict(champion_meta), "data_uri": uri, "data_version": gen.days - 1},
        model_name="churn",
        version=1,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        artifact_key="",
        sha256="",
        reference_key="",
        reference_sha256="",
        files={},
        code_version=code_version(ROOT),
        library_versions={},
        registered_by="docs",
    )
    candidate = fit_and_evaluate(frame, settings, "default")
    decision = evaluate_gates(candidate, LoadedModel(champion, champion_fit.model), settings)
    meta = training_metadata(candidate, decision, settings, start, end, settings.features.feature_service)
    meta = type(meta)(**{**asdict(meta), "data_uri": uri, "data_version": gen.days - 1})
    card = build_card(
        candidate,
        decision,
        meta,
        champion,
        settings,
        "churn",
        "(rendered by docs/render_model_card.py)",
        code_version(ROOT),
    )
    from PIL import Image
    from playwright.sync_api import sync_playwright

    picture = ROOT / "docs" / "model-card.png"
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as pw:
        html_path = Path(folder) / "card.html"
        html_path.write_text(card_html(card, 2, candidate.plots))
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1100, "height": 1400})
        tab.goto(html_path.as_uri())
        tab.screenshot(path=str(picture), full_page=True)
        browser.close()
    # 256 colours: a third of the bytes, and a card is text, tables and two line plots
    Image.open(picture).convert("RGB").quantize(colors=256).save(picture, optimize=True)
    sys.stdout.write(f"verdict {decision.verdict}; wrote {picture}\n")


if __name__ == "__main__":
    main()
