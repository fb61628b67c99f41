"""AmazonElectronics_x1 (BARS; DIN's Amazon Electronics 5-core samples): next-review prediction with histories."""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, meta, sequence

SPEC = DatasetSpec(
    name="amazonelectronics_x1",
    title="AmazonElectronics_x1 (BARS; DIN preprocessing)",
    features=(
        meta("user_id", cardinality=192403),
        categorical("item_id", 63003),
        categorical("cate_id", 803),
        sequence("item_history", share_vocab="item_id", max_len=100),
        sequence("cate_history", share_vocab="cate_id", max_len=100),
    ),
    label="label",
    group_id="user_id",
    file_format="x1_csv",
    splits={"train": "train.csv", "valid": "test.csv", "test": "test.csv"},
    valid_is_test=True,
    published_at="https://huggingface.co/datasets/reczoo/AmazonElectronics_x1",
    embedding_dim=64,
    md5={"train.csv": "e9bf80b92985e463db18fdc753d347b5", "test.csv": "57a20e82fe736dd495f2eaf0669bf6d0"},
    twin=TwinProfile(base_ctr=0.5, best_published_auc=0.8888, mean_seq_len=14.0, default_rows=200_000, n_users=8000),
    notes="BARS early-stops on test (no validation file). Labels: reviewed next item vs a random one (50%).",
)
