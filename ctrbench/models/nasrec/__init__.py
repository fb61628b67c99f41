"""NASRec (Zhang et al., WWW'23): the architecture data, the elastic operators, the supernet and the standalone
subnet (specs/search.md §2)."""
from ctrbench.models.nasrec import dnas, subnet, supernet  # noqa: F401  (register nasrec_supernet, _subnet, _dnas_supernet)
