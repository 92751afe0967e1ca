"""The Multigrain mixed loss, written once in NumPy as the reference both backends must match.

``loss = lam * CE(logits, labels) + (1 - lam) * margin(normalized_embedding)`` with:

* **repeated augmentation**: the train sampler yields every image ``m`` times in a row, so a batch of
  ``B = k * m`` holds ``k`` instances; the instance of position ``i`` is ``i // m``;
* **positives**: for every anchor ``i``, each other copy ``j`` of the same instance (``m - 1`` pairs);
* **negatives**: ``m - 1`` per anchor, drawn without replacement by distance-weighted sampling
  ("Sampling matters in deep embedding learning"): distances to other instances clamped below at
  ``cutoff``, ``log w = (2 - d) log D - ((d - 3) / 2) log(1 - D^2 / 4)`` for embedding size ``d``,
  weight 0 from ``nonzero_loss_cutoff`` on. Sampling is the Gumbel-top-k trick on ``log w`` with
  uniform noise ``U`` of shape ``(B, B)``: the ``m - 1`` largest ``log w + G``, ``G = -log(-log U)``.
  Given ``U`` the loss is a deterministic function, so the frameworks can be compared exactly; in
  training each backend draws ``U`` on its device. Candidates with zero weight are taken only when
  fewer than ``m - 1`` have weight (the reference falls back to sampling with replacement there);
  same-instance candidates are never taken;
* **margin**: ``relu(d(a,p) - beta + margin) + relu(beta - d(a,n) + margin)`` summed over pairs and
  divided by the number of non-zero terms (at least 1); ``d`` includes ``eps`` under the square root.
"""
from __future__ import annotations

import numpy as np

from harness.models.specs import MULTIGRAIN_LOSS, MultigrainLoss

__all__ = ["pair_indices", "gumbel", "negative_scores", "sample_negatives", "margin_loss",
           "multigrain_loss", "ZERO_WEIGHT_SCORE", "SAME_INSTANCE_SCORE"]

#: Scores of candidates outside the weighted set: below any weighted score (|log w| stays under ~1e4
#: for d <= 8192), zero-weight other instances above same-instance ones.
ZERO_WEIGHT_SCORE = -1e6
SAME_INSTANCE_SCORE = -2e6


def pair_indices(batch_size: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """(anchors, positives): for each position ``i`` in order, each other copy ``j`` of its instance."""
    anchors, positives = [], []
    for i in range(batch_size):
        start = (i // repeats) * repeats
        for j in range(start, start + repeats):
            if j != i:
                anchors.append(i)
                positives.append(j)
    return np.asarray(anchors, np.int64), np.asarray(positives, np.int64)


def gumbel(noise: np.ndarray) -> np.ndarray:
    """Gumbel(0, 1) samples from uniform ``noise`` (clipped away from 0 and 1)."""
    u = np.clip(noise.astype(np.float64), 1e-7, 1 - 1e-7)
    return -np.log(-np.log(u))


def _distances(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1, keepdims=True)
    d2 = sq + sq.T - 2.0 * x @ x.T
    out: np.ndarray = np.sqrt(np.maximum(d2, 0.0) + np.eye(len(x)))  # 1 on the diagonal, as the reference
    return out


def negative_scores(emb: np.ndarray, repeats: int, spec: MultigrainLoss = MULTIGRAIN_LOSS) -> np.ndarray:
    """``log w`` for every (anchor, candidate) pair, with the out-of-set scores above."""
    b, d = emb.shape
    ids = np.arange(b) // repeats
    other = ids[:, None] != ids[None, :]
    dist = np.maximum(_distances(emb.astype(np.float64)), spec.cutoff)
    inside = dist < spec.nonzero_loss_cutoff
    safe = np.where(inside, dist, 1.0)
    log_w = (2.0 - d) * np.log(safe) - ((d - 3.0) / 2.0) * np.log(1.0 - 0.25 * safe * safe)
    return np.where(other & inside, log_w, np.where(other, ZERO_WEIGHT_SCORE, SAME_INSTANCE_SCORE))


def sample_negatives(emb: np.ndarray, repeats: int, noise: np.ndarray,
                     spec: MultigrainLoss = MULTIGRAIN_LOSS) -> np.ndarray:
    """Negatives aligned with :func:`pair_indices`: ``m - 1`` per anchor, in anchor order."""
    scores = negative_scores(emb, repeats, spec) + gumbel(noise)
    top = np.argsort(-scores, axis=1, kind="stable")[:, : repeats - 1]
    return top.reshape(-1)


def margin_loss(emb: np.ndarray, anchors: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
                beta: float, spec: MultigrainLoss = MULTIGRAIN_LOSS) -> float:
    e = emb.astype(np.float64)
    d_ap = np.sqrt(((e[positives] - e[anchors]) ** 2).sum(1) + spec.eps)
    d_an = np.sqrt(((e[negatives] - e[anchors]) ** 2).sum(1) + spec.eps)
    pos = np.maximum(d_ap - beta + spec.margin, 0.0)
    neg = np.maximum(beta - d_an + spec.margin, 0.0)
    count = float((pos > 0).sum() + (neg > 0).sum())
    return float((pos + neg).sum() / max(count, 1.0))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def multigrain_loss(logits: np.ndarray, labels: np.ndarray, embedding: np.ndarray, noise: np.ndarray,
                    beta: float, repeats: int, spec: MultigrainLoss = MULTIGRAIN_LOSS) -> float:
    """The mixed loss of one batch from the raw (un-normalised) GeM ``embedding``."""
    emb = embedding.astype(np.float64)
    emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + spec.embedding_eps)
    anchors, positives = pair_indices(len(emb), repeats)
    negatives = sample_negatives(emb, repeats, noise, spec)
    margin = margin_loss(emb, anchors, positives, negatives, beta, spec)
    return spec.lam * _cross_entropy(logits, labels) + (1.0 - spec.lam) * margin
