"""The run layer, below the harness and search: what a run is and what came out (records.py), the SQLite store
that keeps every run and every search's evaluations and searcher state (store.py), and queries over it for
reports, searchers and the performance model (query.py)."""
