"""KuaiVideo_x1 (BARS; ALPINE's Kuaishou micro-video split) with clicked/non-clicked histories and frozen
64-d visual item embeddings from item_visual_emb_dim64.h5 (datasets `key`, `value`)."""
from ctrbench.data.schema import DatasetSpec, Feature, Kind, TwinProfile, categorical, meta, sequence

PRETRAINED_FILE = "item_visual_emb_dim64.h5"

SPEC = DatasetSpec(
    name="kuaivideo_x1",
    title="KuaiVideo_x1 (BARS; ALPINE split)",
    features=(
        meta("group_id", source="user_id"),
        categorical("user_id", 10002, min_count=10),
        categorical("item_id", 632406, min_count=10),
        Feature("item_emb", Kind.PRETRAINED, source="item_id", pretrained_dim=64, cardinality=3242317),
        # global min_categr_count 10; the *_emb copies set min_categr_count 1 (DIN_kuaivideo_x1_013 log)
        sequence("pos_items", share_vocab="item_id", max_len=100, min_count=10),
        sequence("neg_items", share_vocab="item_id", max_len=100, min_count=10),
        Feature("pos_items_emb", Kind.SEQUENCE, source="pos_items", share_vocab="item_emb", max_len=100),
        Feature("neg_items_emb", Kind.SEQUENCE, source="neg_items", share_vocab="item_emb", max_len=100),
    ),
    label="is_click",
    group_id="group_id",
    file_format="x1_csv",
    splits={"train": "train.csv", "valid": "test.csv", "test": "test.csv", "pretrained": PRETRAINED_FILE},
    valid_is_test=True,
    published_at="https://huggingface.co/datasets/reczoo/KuaiVideo_x1",
    embedding_dim=64,
    md5={"train.csv": "16f13734411532cc313caf2180bfcd56", "test.csv": "ba26c01caaf6c65c272af11aa451fc7a"},
    twin=TwinProfile(base_ctr=0.25, best_published_auc=0.7508, mean_seq_len=60.0, default_rows=200_000, n_users=2000),
    notes="item_emb: frozen pretrained vectors (own min-count-1 vocabulary) through a learnable Linear(64, 64). "
    "Histories were cut to their oldest 100 ids at conversion time; BARS early-stops on test.",
)
