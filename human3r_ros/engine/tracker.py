"""Identity tracking of people across views, as in Human3R.

Each detected person comes with a decoder token. A person keeps the id of a
previously seen person when the two are mutual best matches of an entropic
optimal transport (log-domain Sinkhorn with one dustbin row/column) between
the kept tokens and the current ones, with a match probability above a
threshold. Everyone else gets a fresh id. Previous people that were not
matched stay in the kept set (after the current people), so someone who is
missed for a few views can get their id back.

The reference does not clear the kept set on its state resets, so the engine
should only call :meth:`HumanTracker.reset` when a new sequence starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


def sinkhorn_log(couplings: torch.Tensor, log_row_marginals: torch.Tensor,
                 log_col_marginals: torch.Tensor, iters: int) -> torch.Tensor:
    """Alternating log-domain row/column normalisation of a (R, C) score matrix."""
    u = torch.zeros_like(log_row_marginals)
    v = torch.zeros_like(log_col_marginals)
    for _ in range(iters):
        u = log_row_marginals - torch.logsumexp(couplings + v[None, :], dim=1)
        v = log_col_marginals - torch.logsumexp(couplings + u[:, None], dim=0)
    return couplings + u[:, None] + v[None, :]


def log_assignment_with_dustbin(scores: torch.Tensor, dustbin_score: float, iters: int) -> torch.Tensor:
    """Optimal-transport log assignment of an (m, n) score matrix.

    A dustbin row and column (constant score ``dustbin_score``) absorb
    unmatched items; real rows/columns carry mass 1 each, the dustbins carry
    the other side's count. Returns (m+1, n+1) log probabilities scaled so a
    certain one-to-one match has value ~0 (probability 1).
    """
    m, n = scores.shape
    bin_value = scores.new_tensor(dustbin_score)
    couplings = torch.cat([
        torch.cat([scores, bin_value.expand(m, 1)], dim=1),
        torch.cat([bin_value.expand(1, n), bin_value.expand(1, 1)], dim=1),
    ], dim=0)
    m_t, n_t = scores.new_tensor(float(m)), scores.new_tensor(float(n))
    log_norm = -(m_t + n_t).log()
    log_rows = torch.cat([log_norm.expand(m), (n_t.log() + log_norm)[None]])
    log_cols = torch.cat([log_norm.expand(n), (m_t.log() + log_norm)[None]])
    return sinkhorn_log(couplings, log_rows, log_cols, iters) - log_norm


@dataclass
class MatchReport:
    """Diagnostics of one tracker update that had both kept and current people."""

    log_assignment: np.ndarray  # (m+1, n+1) float32, rows = kept people + dustbin
    kept_matched: np.ndarray  # (m,) bool, kept person matched by a current one
    ids: np.ndarray  # (n,) int64, ids given to the current people


class HumanTracker:
    """Assigns persistent integer ids (0, 1, 2, ...) to people, view after view."""

    def __init__(self, match_threshold: float = 0.2, dustbin_score: float = -10.0,
                 sinkhorn_iters: int = 20, max_kept: int = 64):
        # The reference remembers every unmatched person forever, so its matching cost grows
        # with the stream; we keep the max_kept most recently seen (identical results until
        # that many people have been remembered at once).
        self.max_kept = max_kept
        self.match_threshold = match_threshold
        self.dustbin_score = dustbin_score
        self.sinkhorn_iters = sinkhorn_iters
        self.reset()

    def reset(self) -> None:
        """Forget every person (new sequence); ids start again from 0."""
        self._tokens: Optional[torch.Tensor] = None  # (k, D) kept tokens
        self._ids: Optional[torch.Tensor] = None  # (k,) int64
        self._max_id = -1
        self.last_report: Optional[MatchReport] = None

    @property
    def num_kept(self) -> int:
        """People currently remembered (current ones plus unmatched earlier ones)."""
        return 0 if self._ids is None else int(self._ids.shape[0])

    @property
    def max_id(self) -> int:
        """Largest id handed out so far (-1 before anyone was seen)."""
        return self._max_id

    def update(self, tokens: torch.Tensor) -> np.ndarray:
        """Ids (n,) int64 for the n people of this view, given their tokens (n, D)."""
        tokens = tokens.detach()
        n = tokens.shape[0]
        self.last_report = None
        if n == 0:  # nobody here: keep the memory untouched
            return np.zeros(0, dtype=np.int64)
        if self._tokens is None:
            ids = torch.arange(n, device=tokens.device)
            self._max_id = n - 1
            self._tokens, self._ids = tokens.clone(), ids
            return ids.cpu().numpy().astype(np.int64)

        kept_tokens, kept_ids = self._tokens, self._ids
        m = kept_tokens.shape[0]
        scores = -torch.cdist(kept_tokens[None], tokens[None], p=2)[0]
        log_assign = log_assignment_with_dustbin(scores, self.dustbin_score, self.sinkhorn_iters)
        inner = log_assign[:m, :n]
        best_val_for_kept, best_cur_for_kept = inner.max(dim=1)  # (m,)
        best_kept_for_cur = inner.max(dim=0).indices  # (n,)
        kept_mutual = best_kept_for_cur[best_cur_for_kept] == torch.arange(m, device=tokens.device)
        cur_mutual = best_cur_for_kept[best_kept_for_cur] == torch.arange(n, device=tokens.device)
        kept_ok = kept_mutual & (best_val_for_kept.exp() > self.match_threshold)
        cur_ok = cur_mutual & kept_ok[best_kept_for_cur]

        # Unmatched current people get fresh ids in their detection order.
        fresh = self._max_id + 1 + torch.cumsum((~cur_ok).long(), dim=0) - 1
        ids = torch.where(cur_ok, kept_ids[best_kept_for_cur], fresh)
        self._max_id += int((~cur_ok).sum())

        self._tokens = torch.cat([tokens, kept_tokens[~kept_ok]], dim=0)[: self.max_kept]
        self._ids = torch.cat([ids, kept_ids[~kept_ok]], dim=0)[: self.max_kept]
        ids_np = ids.cpu().numpy().astype(np.int64)
        self.last_report = MatchReport(
            log_assignment=log_assign.float().cpu().numpy(),
            kept_matched=kept_ok.cpu().numpy(),
            ids=ids_np,
        )
        return ids_np
