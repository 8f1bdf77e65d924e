"""Recurrent state of the network between images, and the rule that updates it (plain / TTT3R)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RecurrentState:
    """What the network carries from one image to the next (kept on the model's device)."""

    state: torch.Tensor  # [1, S, dd] scene state tokens
    memory: torch.Tensor  # [1, L, 2*dd] camera-pose memory
    initial_state: torch.Tensor  # values restored by a reset
    initial_memory: torch.Tensor
    fresh: bool = True  # next view is the first one or follows a reset: use the learned pose token

    @classmethod
    def initial(cls, state: torch.Tensor, memory: torch.Tensor) -> "RecurrentState":
        with torch.inference_mode():  # copies are inference tensors like every later state
            return cls(state, memory, state.clone(), memory.clone(), True)


@torch.inference_mode()  # the state stays an inference tensor, as the network returns it
def advance(
    rs: RecurrentState,
    new_state: torch.Tensor,
    new_memory: torch.Tensor,
    ttt3r_gate: torch.Tensor | None,
    reset_after: bool,
) -> RecurrentState:
    """Blend in the decoder's proposal. TTT3R gates each state token with its attention
    confidence, except on the first view and right after a reset (the gate is None then);
    the memory is always replaced. A reset view restores the initial values afterwards."""
    if reset_after:
        return RecurrentState(rs.initial_state, rs.initial_memory, rs.initial_state, rs.initial_memory, True)
    if ttt3r_gate is not None:
        gate = ttt3r_gate[..., None]
        state = new_state * gate + rs.state * (1 - gate)
    else:
        state = new_state
    return RecurrentState(state, new_memory, rs.initial_state, rs.initial_memory, False)
