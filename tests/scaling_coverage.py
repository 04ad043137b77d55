"""How often the 95% intervals of f and alpha hold the truth (not a test: a measurement).

    .venv/bin/python -m tests.scaling_coverage [DATA_SETS]     # default 100, ~6 min

For Amdahl and Gustafson data (ranks 1-64, 3% log-normal noise, 3 and 5 repeats, three
true fractions) it counts the data sets whose interval holds the truth, for the bootstrap
alone, the covariance alone, and their union (what hpc.scaling reports).
"""

from __future__ import annotations

import sys

import numpy as np

from hpc.scaling.data import group_times
from hpc.scaling.estimate import bootstrap_indices
from hpc.scaling.fits import fit_input, fit_model
from hpc.scaling.models import MODELS
from tests.scaling_synth import RANKS, amdahl_time, gustafson_time, noisy

BOOT = 200


def coverage(kind: str, repeats: int, truth: float, data_sets: int) -> dict[str, int]:
    law, model = ((amdahl_time, MODELS["amdahl"]) if kind == "strong"
                  else (gustafson_time, MODELS["gustafson"]))
    hits = {"bootstrap": 0, "covariance": 0, "union": 0}
    for s in range(data_sets):
        seed = 10_000 * repeats + s
        meas = group_times(kind, RANKS, noisy(law(RANKS, truth), repeats, 0.03, seed))
        idx = bootstrap_indices([np.log(g.times) for g in meas.groups], BOOT, seed)
        fits = {"bootstrap": fit_input(meas, idx, seed, n_draws=0),
                "covariance": fit_input(meas, None, seed, n_draws=BOOT),
                "union": fit_input(meas, idx, seed, n_draws=BOOT)}
        for name, data in fits.items():
            hits[name] += fit_model(model, data).fraction.contains(truth)
    return hits


def main(data_sets: int) -> None:
    print(f"{data_sets} data sets per row; 95% intervals should hold the truth in ~95%")
    for kind in ("strong", "weak"):
        for repeats in (3, 5):
            for truth in (0.02, 0.1, 0.3):
                h = coverage(kind, repeats, truth, data_sets)
                print(f"{kind:6} repeats={repeats} truth={truth:<4}: bootstrap {h['bootstrap']:3d}"
                      f"  covariance {h['covariance']:3d}  union {h['union']:3d}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
