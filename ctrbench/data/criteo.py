"""Criteo Kaggle DAC raw train.txt (TAB, no header, hex categoricals) or the Kaggle CSV (Id,Label,...).

Protocol (named in results as "dlrm-kaggle"): dense ln(max(x, 0) + 1) with missing -> 0 (facebookresearch/dlrm);
the file is cut into 7 equal pseudo-days in order, days 0-5 train, day 6 first half valid, second half test.
Categoricals are kept as hex strings and tokenised with min count 10 (BARS x4_001 threshold).
"""
from ctrbench.data.criteo_x1 import CARDINALITIES
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, numeric

SPEC = DatasetSpec(
    name="criteo",
    title="Criteo Kaggle DAC (raw train.txt / Kaggle CSV)",
    features=tuple(numeric(f"I{i}", transform="log1p_clip0") for i in range(1, 14))
    + tuple(categorical(f"C{i}", c, min_count=10) for i, c in enumerate(CARDINALITIES, start=1)),
    label="label",
    file_format="criteo_tsv",
    splits={"train": "train.txt"},
    published_at="Criteo Display Advertising Challenge (dac.tar.gz; Kaggle 'criteo-display-ad-challenge')",
    embedding_dim=16,
    md5={"train.txt": "4dcfe6c4b7783585d4ae3c714994f26a", "test.txt": "94ccf2787a67fd3d6e78a62129af0ed9"},
    twin=TwinProfile(base_ctr=0.256, best_published_auc=0.8150, default_rows=200_000),
    notes="7 pseudo-days: 0-5 train, day 6 halves valid/test (dlrm-kaggle protocol).",
)
