"""Studies and their evaluation: experiments from YAML (the paper's among them), the
demo, robustness sweeps and explanation summaries; metrics, tables and plots.

    from dffr.experiments import Experiment, run
    written = run(Experiment.load("experiments/paper.yaml"), "results")
"""

from dffr.experiments.metrics import evaluate
from dffr.experiments.runner import run
from dffr.experiments.spec import Experiment

__all__ = ["Experiment", "evaluate", "run"]
