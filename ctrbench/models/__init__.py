"""CTR models: the CTRModel base, shared layers, the embedding collection and the models by name."""
from ctrbench.models import dcnv2, deepfm, dlrm, dnn, fm, lr  # noqa: F401  (register the built-in models)
from ctrbench.models import dhen, interformer  # noqa: F401,E402  (InterFormer and its DHEN baseline)
from ctrbench.models.base import CTRModel, ModelParams  # noqa: F401
from ctrbench.models.embedding import EmbeddingCollection  # noqa: F401
from ctrbench.models.registry import MODELS, build_model, get_model_class, model_tables, register  # noqa: F401
from ctrbench.models import autoint_plus, bst, dien, din, dmin, dmr, dot, fmfm, transact, wukong, xdeepfm  # noqa: F401,E402  (sequential and interaction baselines of the InterFormer/CETNet tables)
from ctrbench.models import cetnet, multi_embedding  # noqa: F401,E402  (CETNet and the multi-embedding DCNv2)
from ctrbench.models import nasrec  # noqa: F401,E402  (NASRec supernet and subnet: ctrbench.search spaces)
from ctrbench.models import interaction_net  # noqa: F401,E402  (DNAS supernet and subnet: the distdnas space)
from ctrbench.models import dhen_stack  # noqa: F401,E402  (the DHEN-style stack of the dhen search space)
