"""Avazu raw Kaggle CSV (24 columns, header). Protocol "avazu-x4-features, by-day split": `id` dropped,
`hour` (YYMMDDHH) -> hour-of-day, weekday, is_weekend; everything else categorical (min count 2);
days 1-8 (141021-141028) train, day 9 valid, day 10 test.
"""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical

RAW_CATEGORICAL = ["C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
                   "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
                   "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"]
DERIVED = ["hour", "weekday", "weekend"]  # from the raw `hour` column
RAW_COLUMNS = ["id", "click", "hour"] + RAW_CATEGORICAL
_CARD = {"C1": 9, "banner_pos": 9, "site_id": 3480, "site_domain": 4271, "site_category": 26, "app_id": 4864,
         "app_domain": 305, "app_category": 33, "device_id": 228186, "device_ip": 1048285, "device_model": 6515,
         "device_type": 6, "device_conn_type": 6, "C14": 1940, "C15": 10, "C16": 11, "C17": 349, "C18": 6,
         "C19": 61, "C20": 171, "C21": 52, "hour": 26, "weekday": 9, "weekend": 4}

SPEC = DatasetSpec(
    name="avazu",
    title="Avazu CTR Prediction (raw Kaggle train CSV)",
    features=tuple(categorical(c, _CARD[c], min_count=2) for c in RAW_CATEGORICAL + DERIVED),
    label="click",
    file_format="avazu_csv",
    splits={"train": "train.csv"},
    published_at="Kaggle competition 'avazu-ctr-prediction' (train.gz)",
    embedding_dim=16,
    twin=TwinProfile(base_ctr=0.17, best_published_auc=0.7672, default_rows=200_000),
    notes="By-day split: 141021-141028 train, 141029 valid, 141030 test.",
)
