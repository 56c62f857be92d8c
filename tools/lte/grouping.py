"""Expert grouping: balanced K-means of one layer's MLP neurons (LTE §4.1,
after MoEfication's "parameter clustering" split).

Each neuron i is described by its gate and up weight rows, each scaled to unit
length (the direction decides which inputs excite it; the scale would only
make large neurons cluster together) and concatenated. Balanced K-means
puts them into E = f / g clusters of exactly g. Assignment under capacity is
greedy by distance: neurons in order of their distance to the nearest
centroid, each into its nearest cluster that is not yet full. That is
MoEfication's balanced K-means in spirit (it uses k_means_constrained's
min-cost flow); the greedy is exact on balance, and good enough on distance
for a grouping that training adapts to anyway.
"""
import torch


def neuron_features(gate_w, up_w):
    """[f, 2d] unit-length gate rows beside unit-length up rows."""
    g = torch.nn.functional.normalize(gate_w.float(), dim=1)
    u = torch.nn.functional.normalize(up_w.float(), dim=1)
    return torch.cat([g, u], dim=1)


def assign_balanced(x, centroids, cap):
    """Cluster of each row of x: at most `cap` rows per cluster. Rows closest to
    any centroid choose first, each taking its nearest cluster not yet full
    (f small steps, not a walk over all f*E pairs: 30 layers of f = 1536 in
    seconds)."""
    f, E = x.shape[0], centroids.shape[0]
    dist = torch.cdist(x, centroids)  # [f, E]
    label = torch.empty(f, dtype=torch.long)
    full = torch.zeros(E, dtype=torch.bool)
    fill = torch.zeros(E, dtype=torch.long)
    for i in torch.argsort(dist.min(dim=1).values, stable=True).tolist():
        e = int(torch.argmin(dist[i].masked_fill(full, float("inf"))))
        label[i] = e
        fill[e] += 1
        full[e] = fill[e] >= cap
    return label


def balanced_kmeans(x, n_clusters, iters=20, seed=0):
    """Labels [f] with every cluster exactly f / n_clusters rows."""
    f = x.shape[0]
    if f % n_clusters:
        raise ValueError(f"{f} neurons do not split into {n_clusters} equal experts")
    cap = f // n_clusters
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(f, generator=gen)[:n_clusters]].clone()
    label = None
    for _ in range(iters):
        new = assign_balanced(x, centroids, cap)
        if label is not None and torch.equal(new, label):
            break  # converged: the same assignment again
        label = new
        for e in range(n_clusters):
            centroids[e] = x[label == e].mean(dim=0)
    return label


def permutation_from_labels(label, n_clusters):
    """p with expert e = p[e*g:(e+1)*g] (its neurons in ascending order): in
    sprig's format, stored neuron p[i] is neuron i of expert i // g."""
    return torch.cat([torch.nonzero(label == e).flatten() for e in range(n_clusters)])


def group_layer(gate_w, up_w, expert_size, iters=20, seed=0):
    """(permutation [f] long, sizes [E]) for one layer."""
    f = gate_w.shape[0]
    E = f // expert_size
    label = balanced_kmeans(neuron_features(gate_w, up_w), E, iters, seed)
    sizes = torch.bincount(label, minlength=E)
    return permutation_from_labels(label, E), sizes


def is_balanced_permutation(perm, sizes, f, expert_size):
    """What the tests assert: a permutation of 0..f-1 and every expert exactly g."""
    return (sorted(perm.tolist()) == list(range(f))) and all(int(s) == expert_size for s in sizes)
