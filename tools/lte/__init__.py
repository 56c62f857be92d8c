"""LTE ("Learn To be Efficient", Zheng et al., arXiv 2402.06126) for sprig.

From a Hugging Face LLaMA-family folder to a sprig LTE folder: balanced
K-means expert grouping (grouping.py), the two-stage router training
(lte_mlp.py, losses.py, train.py), a search for the efficiency weight that
gives a target sparsity (search.py), and the writer of sprig's LTE format
(export.py). Run `python3 -m tools.lte --help`; see README.md.
"""
