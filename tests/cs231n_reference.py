"""The CS231n "minimal neural network case study", transcribed with a local RandomState instead of the global
np.random stream (same numbers as after ``np.random.seed(seed)``). Used only by the tests as an independent
reference for the engine."""

from __future__ import annotations

import numpy as np


def case_study(seed: int, *, hidden: int | None, iterations: int, step_size: float = 1.0, reg: float = 1e-3):
    """Returns (losses per iteration, training accuracy). ``hidden=None`` is the linear softmax classifier."""
    rs = np.random.RandomState(seed)
    N, D, K = 100, 2, 3
    X = np.zeros((N * K, D))
    y = np.zeros(N * K, dtype="uint8")
    for j in range(K):
        ix = range(N * j, N * (j + 1))
        r = np.linspace(0.0, 1, N)
        t = np.linspace(j * 4, (j + 1) * 4, N) + rs.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    num_examples = X.shape[0]
    losses = []
    if hidden is None:
        W = 0.01 * rs.randn(D, K)
        b = np.zeros((1, K))
        for _ in range(iterations):
            scores = np.dot(X, W) + b
            exp_scores = np.exp(scores)
            probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
            data_loss = np.sum(-np.log(probs[range(num_examples), y])) / num_examples
            losses.append(data_loss + 0.5 * reg * np.sum(W * W))
            dscores = probs
            dscores[range(num_examples), y] -= 1
            dscores /= num_examples
            dW = np.dot(X.T, dscores) + reg * W
            db = np.sum(dscores, axis=0, keepdims=True)
            W += -step_size * dW
            b += -step_size * db
        scores = np.dot(X, W) + b
    else:
        W = 0.01 * rs.randn(D, hidden)
        b = np.zeros((1, hidden))
        W2 = 0.01 * rs.randn(hidden, K)
        b2 = np.zeros((1, K))
        for _ in range(iterations):
            hidden_layer = np.maximum(0, np.dot(X, W) + b)
            scores = np.dot(hidden_layer, W2) + b2
            exp_scores = np.exp(scores)
            probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
            data_loss = np.sum(-np.log(probs[range(num_examples), y])) / num_examples
            losses.append(data_loss + 0.5 * reg * np.sum(W * W) + 0.5 * reg * np.sum(W2 * W2))
            dscores = probs
            dscores[range(num_examples), y] -= 1
            dscores /= num_examples
            dW2 = np.dot(hidden_layer.T, dscores)
            db2 = np.sum(dscores, axis=0, keepdims=True)
            dhidden = np.dot(dscores, W2.T)
            dhidden[hidden_layer <= 0] = 0
            dW = np.dot(X.T, dhidden)
            db = np.sum(dhidden, axis=0, keepdims=True)
            dW2 += reg * W2
            dW += reg * W
            W += -step_size * dW
            b += -step_size * db
            W2 += -step_size * dW2
            b2 += -step_size * db2
        scores = np.dot(np.maximum(0, np.dot(X, W) + b), W2) + b2
    accuracy = float(np.mean(np.argmax(scores, axis=1) == y))
    return np.array(losses), accuracy
