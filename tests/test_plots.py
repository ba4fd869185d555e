"""The experiment's pictures, checked through the figures they draw: one ROC panel per
detector with one curve per region, and a per-manipulation map holding the table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dffr.experiments import plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions would save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
    return figures


def scores_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = np.r_[np.zeros(20), np.ones(20)].astype(int)
    rows = []
    for det in ("Xception", "DSP-FWA", "AVG(DSP-FWA+Xception)"):  # fused drawn last
        for region in ("eyes", "mouth", "mean(eyes+mouth)"):
            perfect = det == "DSP-FWA" and region == "eyes"
            score = label * 0.5 + 0.25 if perfect else rng.random(40)
            fused = "(" in det or "(" in region  # fused rows name their rule
            rows.append(
                pd.DataFrame(
                    {
                        "detector": det,
                        "region": region,
                        "label": label,
                        "score": score,
                        "rule": "mean" if fused else "",
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_roc_figure_has_a_panel_per_detector_and_a_curve_per_region(drawn):
    plots.roc_figure(scores_table(), Path("roc.png"), "A to B")
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.axison]
    # single detectors first, fused ones after; the fourth grid cell is switched off
    assert [ax.get_title() for ax in panels] == ["DSP-FWA", "Xception", "AVG(DSP-FWA+Xception)"]
    assert len(fig.axes) == 4
    for ax in panels:
        assert len(ax.lines) == 4  # three regions and the chance diagonal
        assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == [
            "eyes",
            "mean(eyes+mouth)",
            "mouth",
        ]
    dsp = panels[0]
    assert dsp.get_legend().get_texts()[0].get_text() == "eyes (AUC 100.0)"
    assert dsp.lines[1].get_linewidth() > dsp.lines[0].get_linewidth()  # fused: thicker


def test_methods_figure_shows_the_table(drawn):
    table = pd.DataFrame(
        [[90.0, 51.0], [48.0, 75.0], [60.0, np.nan]],
        index=pd.MultiIndex.from_tuples(
            [("DSP-FWA", "eyes"), ("DSP-FWA", "mouth"), ("DSP-FWA", "rest")],
            names=["detector", "region"],
        ),
        columns=["sbi-eyes", "sbi-mouth"],
    )
    plots.methods_figure(table, Path("methods.png"), "A to A", "AUC")
    ax = drawn[0].axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan), table.to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "DSP-FWA / eyes",
        "DSP-FWA / mouth",
        "DSP-FWA / rest",
    ]
    assert [t.get_text() for t in ax.texts] == ["90", "51", "48", "75", "60"]  # no NaN cell
    assert drawn[0].axes[1].get_ylabel() == "AUC (%)"
