"""Avazu_x1 (BARS): AFN's 70/10/20 split of Avazu; 22 categorical integer-id fields."""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical

CARDINALITIES = [9, 9, 3480, 4271, 26, 4864, 305, 33, 228186, 1048285, 6515, 6, 6, 1940, 10, 11, 349, 6,
                 61, 171, 52, 26]

SPEC = DatasetSpec(
    name="avazu_x1",
    title="Avazu_x1 (BARS; AFN split of Avazu, 70/10/20)",
    features=tuple(categorical(f"feat_{i}", c) for i, c in enumerate(CARDINALITIES, start=1)),
    label="label",
    file_format="x1_csv",
    splits={"train": "train.csv", "valid": "valid.csv", "test": "test.csv"},
    published_at="https://huggingface.co/datasets/reczoo/Avazu_x1 (see reczoo/Datasets: Avazu/Avazu_x1)",
    embedding_dim=10,
    md5={"train.csv": "f1114a07aea9e996842c71648e0f6395", "valid.csv": "d9568f246357d156c4b8030fadb8b623",
         "test.csv": "9e2fe9c48705c9315ae7a0953eb57acf"},
    twin=TwinProfile(base_ctr=0.175, best_published_auc=0.7672, default_rows=200_000),
    notes="Positive rate differs by split (17.5/16.8/15.3%): the split behaves like a time-ordered one.",
)

# BARS reads the id columns with dtype float: "12" and "12.0" are the same id (ctrbench.data.readers.X1Reader).
READ_OPTIONS = {"float_ids": True}
