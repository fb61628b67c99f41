"""Criteo 1TB click logs, MLPerf DLRM protocol: day_0..day_23 TSV; days 0-22 train, day 23 halves valid/test.

Dense ln(x + 3) with missing -> 0 (torchrec preprocessing); categoricals parsed base-16, made contiguous per
column on train, then taken modulo the MLPerf v2 table sizes (40M cap).
"""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, numeric

TABLE_SIZES = [40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
               2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36]
DAYS = 24

SPEC = DatasetSpec(
    name="criteo_terabyte",
    title="Criteo 1TB Click Logs (MLPerf DLRMv2 protocol)",
    features=tuple(numeric(f"I{i}", transform="log_plus3") for i in range(1, 14))
    + tuple(categorical(f"C{i}", s) for i, s in enumerate(TABLE_SIZES, start=1)),
    label="label",
    file_format="criteo_terabyte_tsv",
    splits={"train": "day_{0..22}", "valid": "day_23 (first half)", "test": "day_23 (second half)"},
    published_at="Criteo 1TB Click Logs (ailab.criteo.com; files day_0.gz .. day_23.gz)",
    embedding_dim=128,
    twin=TwinProfile(base_ctr=0.034, best_published_auc=0.8030, default_rows=240_000, days=DAYS),
    notes="MLPerf DLRMv2 target 0.80275 AUC. Table size per column = modulo applied to contiguous ids.",
)
