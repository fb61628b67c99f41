"""TaobaoAd_x1 (BARS; DMR preprocessing of Tianchi's Ad Display/Click data) with three behaviour histories."""
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, meta, numeric, sequence

_CARD = {"userid": 403958, "cms_segid": 99, "cms_group_id": 15, "final_gender_code": 4, "age_level": 9,
         "pvalue_level": 6, "shopping_level": 5, "occupation": 4, "new_user_class_level": 7,
         "adgroup_id": 246851, "cate_id": 11330, "campaign_id": 191771, "customer": 132136, "brand": 308870,
         "pid": 4, "btag": 6}
HEADER = ["clk", "btag_his", "cate_his", "brand_his", "userid", "cms_segid", "cms_group_id", "final_gender_code",
          "age_level", "pvalue_level", "shopping_level", "occupation", "new_user_class_level", "adgroup_id",
          "cate_id", "campaign_id", "customer", "brand", "price", "pid", "btag"]

SPEC = DatasetSpec(
    name="taobaoad_x1",
    title="TaobaoAd_x1 (BARS; DMR preprocessing)",
    features=(meta("group_id", source="userid"),)
    + tuple(categorical(c, n, min_count=10) for c, n in _CARD.items())
    + (
        numeric("price"),
        # BARS's global min_categr_count 10 applies to the histories' own tokens too (FuxiCTR fit_sequence_col)
        sequence("cate_his", share_vocab="cate_id", max_len=50, min_count=10),
        sequence("brand_his", share_vocab="brand", max_len=50, min_count=10),
        sequence("btag_his", share_vocab="btag", max_len=50, min_count=10),
    ),
    label="clk",
    group_id="group_id",
    file_format="x1_csv",
    splits={"train": "train.csv", "valid": "test.csv", "test": "test.csv"},
    valid_is_test=True,
    published_at="https://huggingface.co/datasets/reczoo/TaobaoAd_x1",
    embedding_dim=32,
    md5={"train.csv": "eaabfc8629f23519b04593e26c7522fc", "test.csv": "f5ae6197e52385496d46e2867c1c8da1"},
    twin=TwinProfile(base_ctr=0.05, best_published_auc=0.6530, mean_seq_len=30.0, default_rows=200_000, n_users=20000),
    notes="Missing cells were written as the token '0' (an ordinary token). BARS early-stops on test.",
)
