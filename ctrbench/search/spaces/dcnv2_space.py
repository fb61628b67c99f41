"""A small DCNv2 space (BARS-style knobs): embedding size, cross depth, MLP widths, dropout, learning rate."""
from ctrbench.search.registry import register_space
from ctrbench.search.spaces.space import Choice, LogUniform, SearchSpace


def dcnv2_flops(point: dict, spec) -> int:
    """Matmul FLOPs per example of the default (parallel, full-rank) DCNv2 of a point: the cross layers
    (2 d^2 each), the MLP and the output layer; lookups, element-wise ops and biases not counted."""
    p = point["params"]
    d = len(spec.features) * p["embedding_dim"]
    flops, width = p["num_cross_layers"] * 2 * d * d, d
    for units in p["parallel_dnn_hidden_units"]:
        flops, width = flops + 2 * width * units, units
    return flops + 2 * (d + width)


DCNV2_SPACE = register_space(SearchSpace(
    name="dcnv2",
    model="dcnv2",
    params={
        "embedding_dim": Choice((8, 16, 32)),
        "num_cross_layers": Choice((1, 2, 3)),
        "parallel_dnn_hidden_units": Choice(((64, 64), (128, 64), (256, 128), (256, 256, 128))),
        "net_dropout": Choice((0.0, 0.1, 0.2)),
    },
    train={"lr": LogUniform(3e-4, 3e-3)},
    flops_fn=dcnv2_flops,
))
