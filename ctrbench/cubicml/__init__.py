"""CubicML (issue 18; specs/search.md §7, §9.11): system knobs made real, a measurement protocol, a performance
dataset exported from run stores, a learned performance model and a predictor-driven search over system configs.

The paper (arXiv 2409.04585) is known from its abstract only: "an ML model as a proxy to predict the training
performance" inside a search. Everything else here (the knobs, the protocol, the features, the predictor and the
search rounds) is ctrbench's design, not the paper's."""
