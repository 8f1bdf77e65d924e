"""Human3R network: CUT3R recurrent reconstruction + Multi-HMR human prompts + SMPL-X regression.

``Human3RNet`` holds every tensor of the published checkpoints under their published names
(including parts inference never runs: the ray-map encoder and the masked tokens, so that
loading stays strict). ``forward_view`` runs one image against a recurrent state; the
state update rule itself lives in :mod:`human3r_ros.engine.recurrent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.profiler import record_function

from .config import Human3RConfig
from .cut3r import CameraMemory, encode_image, make_decoder_blocks, make_encoder_blocks, run_decoder, state_positions
from .dinov2 import Dinov2Backbone
from .heads import Human3RHead
from .human_head import DETECTION_THRESHOLD, HumanTokens, regress_smplx, tokenize_humans, view_of
from .vit import PatchEmbed, RoPE2D, layer_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RAY_MAP_HEADS = 16  # hard-coded in the published model; the ray-map encoder is never run here


@dataclass
class ViewOutput:
    """Raw outputs of one view (batch 1), named after the reference fixtures' ``view_*``/``hv_*``."""

    dense: dict  # pts3d_cam, conf_cam, pts3d_world_head, conf_world_head, camera_pose_enc, pose_raw, rgb?
    humans: object  # human_head.HumanTokens (detections, masks and per-person tokens)
    smpl: dict  # smpl_rotmat, smpl_shape, smpl_transl, smpl_expression (per person)
    tok_track: torch.Tensor  # (N, dd) decoder human tokens, used for tracking
    new_state: torch.Tensor  # decoder's proposal for the next state
    new_memory: torch.Tensor
    ttt3r_gate: torch.Tensor | None
    enc_feat: torch.Tensor
    mhmr_feat: torch.Tensor
    pose_query: torch.Tensor


class Human3RNet(nn.Module):
    def __init__(self, cfg: Human3RConfig):
        super().__init__()
        if not (cfg.pose_head and cfg.head_type == "dpt" and cfg.output_mode == "pts3d+pose+smpl"):
            raise ValueError(
                "only the published Human3R architecture (dpt head, output_mode 'pts3d+pose+smpl', "
                f"pose_head=True) is supported, got head_type={cfg.head_type!r} "
                f"output_mode={cfg.output_mode!r} pose_head={cfg.pose_head}"
            )
        self.config = cfg
        enc, dec = cfg.enc_embed_dim, cfg.dec_embed_dim
        bb_dim = cfg.backbone_embed_dim
        # the published image encoder rotates q/k in float16; decoders and heads in float32
        encoder_rope = RoPE2D(cfg.rope_freq, torch.float16)
        rope = RoPE2D(cfg.rope_freq)
        self.encoder_rope, self.rope = encoder_rope, rope  # parameter-free: no state-dict keys
        self.graphed_front = None  # model.cuda_graphs.GraphedFront of encode_views, when captured

        self.pose_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.masked_img_token = nn.Parameter(torch.zeros(1, enc))
        self.masked_ray_map_token = nn.Parameter(torch.zeros(1, enc))
        self.masked_smpl_token = nn.Parameter(torch.zeros(1, enc))
        self.mhmr_masked_smpl_token = nn.Parameter(torch.zeros(1, bb_dim))
        self.mhmr_masked_img_token = nn.Parameter(torch.zeros(1, bb_dim))
        self.patch_embed = PatchEmbed(3, enc, cfg.patch_size)
        self.patch_embed_ray_map = PatchEmbed(6, enc, cfg.patch_size)
        self.enc_blocks = make_encoder_blocks(enc, cfg.enc_depth, cfg.enc_num_heads, cfg.mlp_ratio, encoder_rope)
        self.enc_norm = layer_norm(enc)
        self.decoder_embed = nn.Linear(enc, dec)
        self.dec_blocks = make_decoder_blocks(dec, cfg.dec_depth, cfg.dec_num_heads, cfg.mlp_ratio, rope)
        self.dec_norm = layer_norm(dec)
        self.enc_blocks_ray_map = make_encoder_blocks(enc, cfg.ray_enc_depth, RAY_MAP_HEADS, 4.0, rope)
        self.enc_norm_ray_map = layer_norm(enc)
        self.pose_retriever = CameraMemory(cfg.local_mem_size, enc, dec, cfg.dec_num_heads, cfg.mlp_ratio)
        self.register_tokens = nn.Embedding(cfg.state_size, enc)
        self.backbone = Dinov2Backbone(
            bb_dim, cfg.backbone_depth, cfg.backbone_num_heads, cfg.backbone_patch_size, cfg.backbone_img_size
        )
        self.decoder_embed_state = nn.Linear(enc, dec)
        self.dec_blocks_state = make_decoder_blocks(
            dec, cfg.dec_depth, cfg.state_dec_num_heads, cfg.mlp_ratio, rope
        )
        self.dec_norm_state = layer_norm(dec)
        self.downstream_head = Human3RHead(
            enc,
            dec,
            cfg.dec_num_heads,
            bb_dim,
            self.backbone.patch_size,
            cfg.dpt_feature_dim,
            cfg.dpt_last_dim,
            tuple(cfg.dpt_layer_dims),
            rope,
            cfg.patch_size,
        )

    # -- precision -------------------------------------------------------------------------
    def set_precision(self, dtype: torch.dtype) -> "Human3RNet":
        """Transformers (encoders, decoders, DINOv2, memory) in ``dtype``; the downstream head
        stays float32, as the reference runs its heads with autocast disabled. float32 keeps
        the published numerics; half types halve the weights' memory."""
        self.to(dtype)
        self.downstream_head.float()
        return self

    def release_unused(self, keep_rgb: bool = False, keep_world_head: bool = False) -> "Human3RNet":
        """Free the weights inference never runs (the ray-map encoder) and the optional heads
        that will not be asked for. They were loaded, so checkpoints stay strict; afterwards
        they live on the meta device (no memory) and cannot be run."""
        unused = [self.patch_embed_ray_map, self.enc_blocks_ray_map, self.enc_norm_ray_map]
        if not keep_rgb:
            unused.append(self.downstream_head.dpt_rgb)
        if not keep_world_head:
            unused += [self.downstream_head.dpt_cross, self.downstream_head.final_transform]
        for module in unused:
            module.to_empty(device="meta")
        return self

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.pose_token.dtype

    # -- recurrent state -------------------------------------------------------------------
    @torch.inference_mode()
    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(state [1, S, dd], camera memory [1, L, 2dd]) used on the first view and after resets."""
        ids = torch.arange(self.config.state_size, device=self.pose_token.device)
        state = self.decoder_embed_state(self.register_tokens(ids))[None]
        return state, self.pose_retriever.mem.clone()

    # -- one view --------------------------------------------------------------------------
    @torch.inference_mode()
    def forward_view(
        self,
        img: torch.Tensor,
        img_mhmr: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        fresh: bool,
        want_gate: bool,
        with_rgb: bool = False,
        with_world_head: bool = False,
        det_threshold: float = DETECTION_THRESHOLD,
    ) -> ViewOutput:
        """img [1, 3, H, W] in [-1, 1]; img_mhmr [1, 3, R, R] padded with -1.
        ``fresh``: first view or right after a reset (use the learned camera token).
        The rgb head and the world-pointmap head are skipped unless asked for: the engine
        builds world points from the camera pointmap and the camera pose."""
        return self.forward_views(
            img, img_mhmr, state, memory, [fresh], want_gate, with_rgb, with_world_head, det_threshold
        )[0]

    @torch.inference_mode()
    def forward_views(
        self,
        img: torch.Tensor,
        img_mhmr: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        fresh: Sequence[bool],
        want_gate: bool,
        with_rgb: bool = False,
        with_world_head: bool = False,
        det_threshold: float = DETECTION_THRESHOLD,
    ) -> list[ViewOutput]:
        """B views of one size, each against its own recurrent state, in one pass (batch =
        views): img [B, 3, H, W], img_mhmr [B, 3, R, R], state [B, S, dd], memory [B, L, 2dd],
        ``fresh`` one flag per view. Returns one batch-1 :class:`ViewOutput` per view, equal
        to :meth:`forward_view` on that view alone up to float rounding. Views holding fewer
        people than the busiest one get padding tokens that the decoder's attention masks out
        (and the TTT3R gate's mean leaves out); ``want_gate`` computes the gate for all views."""
        batch = img.shape[0]
        if not (img_mhmr.shape[0] == state.shape[0] == memory.shape[0] == len(fresh) == batch):
            raise ValueError(
                f"forward_views needs one image, Multi-HMR image, state, memory and fresh flag per view; got "
                f"{batch}, {img_mhmr.shape[0]}, {state.shape[0]}, {memory.shape[0]}, {len(fresh)}"
            )
        with self.rope.reusing_tables():
            return self._forward_views(
                img, img_mhmr, state, memory, list(fresh), want_gate, with_rgb, with_world_head, det_threshold
            )

    def encode_views(self, img: torch.Tensor, mhmr_input: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The people-independent front: image tokens [B, N, E] and their positions [B, N, 2]
        from img [B, 3, H, W], DINOv2 tokens from the normalised Multi-HMR image. Its work
        depends only on the input sizes (``model.cuda_graphs`` captures it)."""
        # stage labels: free unless a profiler is recording (the benchmark reads them)
        with self.encoder_rope.reusing_tables(), record_function("human3r.encoder"):
            feat, pos = encode_image(self.patch_embed, self.enc_blocks, self.enc_norm, img)
        with record_function("human3r.dinov2"):
            mhmr_feat = self.backbone(mhmr_input)
        return feat, pos, mhmr_feat

    def _pose_queries(self, image_summary: torch.Tensor, memory: torch.Tensor, fresh: list[bool]) -> torch.Tensor:
        """[B, 1, dd] camera tokens: the learned one for fresh views, else read from the memory."""
        if all(fresh):
            return self.pose_token.expand(len(fresh), -1, -1)
        read = self.pose_retriever.read(image_summary, memory)
        if not any(fresh):
            return read
        first = torch.tensor(fresh, device=read.device)[:, None, None]
        return torch.where(first, self.pose_token, read)

    def _forward_views(
        self, img, img_mhmr, state, memory, fresh, want_gate, with_rgb, with_world_head, det_threshold
    ) -> list[ViewOutput]:
        cfg = self.config
        batch = img.shape[0]
        height, width = img.shape[-2:]
        head = self.downstream_head
        dtype = self.compute_dtype
        img = img.to(dtype)
        # Multi-HMR branch: DINOv2 on the ImageNet-normalised square image
        mean = torch.tensor(IMAGENET_MEAN, device=img.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=img.device).view(1, 3, 1, 1)
        mhmr_input = ((img_mhmr.float() * 0.5 + 0.5 - mean) / std).to(dtype)
        encode = self.encode_views if self.graphed_front is None else self.graphed_front
        feat, pos, mhmr_feat = encode(img, mhmr_input)

        with record_function("human3r.humans"):
            humans = tokenize_humans(
                head, mhmr_feat.float(), feat.float(), (height, width), cfg.mhmr_img_res,
                self.backbone.patch_size, cfg.patch_size, det_threshold,
            )
        counts = [int(humans.view.numel())] if batch == 1 else torch.bincount(humans.view, minlength=batch).tolist()

        with record_function("human3r.decoder"):
            image_summary = feat.mean(dim=1, keepdim=True)
            pose_query = self._pose_queries(image_summary, memory, fresh)
            pose_pos = torch.full((batch, 1, 2), -1, dtype=pos.dtype, device=pos.device)
            people, people_pos, people_mask = people_queries(humans, pos, counts, dtype)
            image_side = torch.cat((pose_query, self.decoder_embed(feat), people), dim=1)
            image_pos = torch.cat((pose_pos, pos, people_pos), dim=1)
            image_mask = None
            if people_mask is not None:
                image_mask = torch.cat((people_mask.new_ones(batch, 1 + pos.shape[1]), people_mask), dim=1)
            dec = run_decoder(
                self.dec_blocks_state, self.dec_blocks, self.dec_norm_state, self.dec_norm,
                state, state_positions(cfg.state_size, img.device), image_side, image_pos, feat, want_gate,
                image_mask,
            )
            layers = dec.layers
            last = layers[-1]
            new_memory = self.pose_retriever.write(memory, image_summary, last[:, :1])

        with record_function("human3r.heads"):
            depth = cfg.dec_depth
            n_img = 1 + pos.shape[1]  # camera token and patches; the people (and padding) follow
            head_layers = [
                layers[0].float(),
                image_tokens(layers[depth * 2 // 4], 1, n_img),
                image_tokens(layers[depth * 3 // 4], 1, n_img),
                image_tokens(last, 0, n_img),
            ]
            dense = head.dense(head_layers, pos, (height, width), with_rgb, with_world_head)
            tracks = [last[v, n_img : n_img + count].float() for v, count in enumerate(counts)]
            tok_track = tracks[0] if batch == 1 else torch.cat(tracks)
            smpl = regress_smplx(head, torch.cat((tok_track, humans.tok_mhmr), dim=-1))
        if batch == 1:
            return [ViewOutput(
                dense=dense,
                humans=humans,
                smpl=smpl,
                tok_track=tok_track,
                new_state=dec.new_state,
                new_memory=new_memory,
                ttt3r_gate=dec.ttt3r_gate,
                enc_feat=feat,
                mhmr_feat=mhmr_feat,
                pose_query=pose_query,
            )]
        outputs, start = [], 0
        for v, count in enumerate(counts):
            one, rows = slice(v, v + 1), slice(start, start + count)
            start += count
            outputs.append(ViewOutput(
                dense={key: value[one] for key, value in dense.items()},
                humans=view_of(humans, v, rows),
                smpl={key: value[rows] for key, value in smpl.items()},
                tok_track=tracks[v],
                new_state=dec.new_state[one],
                new_memory=new_memory[one],
                ttt3r_gate=None if dec.ttt3r_gate is None else dec.ttt3r_gate[one],
                enc_feat=feat[one],
                mhmr_feat=mhmr_feat[one],
                pose_query=pose_query[one],
            ))
        return outputs


def people_queries(
    humans: HumanTokens, pos: torch.Tensor, counts: list[int], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decoder's person queries [B, P, dd] and their patch positions [B, P, 2], P the
    largest count of people in a view; ``counts`` people per view, detections in view order.
    Views with fewer people are padded, and the mask [B, P] (True = a person) says where;
    None when no view is padded."""
    batch, most = len(counts), max(counts)
    positions = pos[humans.view, humans.cut3r_index]
    if min(counts) == most:
        width = humans.tok_fused.shape[-1]
        return humans.tok_fused.to(dtype).reshape(batch, most, width), positions.reshape(batch, most, 2), None
    slot = torch.cat([torch.arange(count) for count in counts]).to(pos.device)
    tokens = humans.tok_fused.new_zeros(batch, most, humans.tok_fused.shape[-1], dtype=dtype)
    tokens[humans.view, slot] = humans.tok_fused.to(dtype)
    padded_pos = pos.new_zeros(batch, most, 2)
    padded_pos[humans.view, slot] = positions
    mask = torch.arange(most, device=pos.device)[None] < torch.tensor(counts, device=pos.device)[:, None]
    return tokens, padded_pos, mask


def image_tokens(layer: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Tokens ``start:stop`` of each view, float32, laid out by their own shape only, not by the
    people behind them (a compiled head would recompile per layout): batch 1 is indexed out
    and back in, a batch is copied."""
    if layer.shape[0] == 1:
        return layer[0, start:stop].float()[None]
    return layer[:, start:stop].float().contiguous()
