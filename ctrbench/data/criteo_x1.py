"""Criteo_x1 (BARS): AFN's split of Kaggle DAC as CSV; I1–I13 already-transformed floats, C1–C26 integer ids."""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, numeric

# FuxiCTR v2 vocabulary sizes incl. PAD and OOV (BARS FinalMLP_criteo_x1 log).
CARDINALITIES = [1462, 560, 413424, 248543, 307, 23, 12192, 635, 5, 54712, 5350, 409749, 3182,
                 29, 12500, 365811, 12, 4934, 2096, 6, 397981, 20, 17, 88608, 98, 64073]

SPEC = DatasetSpec(
    name="criteo_x1",
    title="Criteo_x1 (BARS; AFN split of Criteo Kaggle DAC, 72/18/10)",
    features=tuple(numeric(f"I{i}") for i in range(1, 14))
    + tuple(categorical(f"C{i}", c) for i, c in enumerate(CARDINALITIES, start=1)),
    label="label",
    file_format="x1_csv",
    splits={"train": "train.csv", "valid": "valid.csv", "test": "test.csv"},
    published_at="https://huggingface.co/datasets/reczoo/Criteo_x1 (see reczoo/Datasets: Criteo/Criteo_x1)",
    embedding_dim=10,
    md5={"train.csv": "30b89c1c7213013b92df52ec44f52dc5", "valid.csv": "f73c71fb3c4f66b6ebdfa032646bea72",
         "test.csv": "2c48b26e84c04a69b948082edae46f8c"},
    twin=TwinProfile(base_ctr=0.256, best_published_auc=0.8154, default_rows=200_000),
    notes="BARS: numeric fields used as given (no normaliser), min_categr_count 1, monitor AUC.",
)

# BARS reads the id columns with dtype float: "12" and "12.0" are the same id (ctrbench.data.readers.X1Reader).
READ_OPTIONS = {"float_ids": True}
