"""Search: spaces as data (spaces/), searchers proposing candidates over them (searchers/), evaluators scoring
candidates of each evaluation kind (evaluators/; the harness trains `train` candidates as ordinary runs),
objectives with cost terms (objective.py), resumable searches (journal.py) and reusable final stages (stages.py).
The contract is in base.py; names are registered by decorator (registry.py)."""
