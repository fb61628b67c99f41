"""Differentiable NAS (specs/search.md §6.3, §9.8): a Gumbel-softmax supernet over the distdnas interaction space
(ctrbench.models.interaction_net), trained by alternating weight steps on training batches and architecture steps
on validation batches with an expected-FLOPs cost term (search.py), then discretised by argmax to a point that
builds and trains from scratch. aggregate.py combines several searches' architecture parameters (DistDNAS)."""
