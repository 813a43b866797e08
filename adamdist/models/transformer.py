"""fairseq's ``transformer_iwslt_de_en`` in plain ``torch.nn``.

The architecture and initialisation follow fairseq's ``TransformerModel`` with
the ``transformer_iwslt_de_en`` preset and fairseq's defaults:

* 6 encoder and 6 decoder layers, model width 512, 4 attention heads, FFN
  width 1024, ReLU;
* post-norm residual blocks (``--encoder/decoder-normalize-before`` off), hence
  no final layer norm in either stack and no layer norm on the embeddings;
* dropout 0.3 on embeddings, attention outputs and FFN outputs; attention and
  activation dropout 0;
* token embeddings scaled by :math:`\\sqrt{512}` and initialised
  :math:`\\mathcal N(0, 512^{-1})` with the padding row zero; fairseq's
  sinusoidal positions (``sin`` half then ``cos`` half, positions counted from
  ``padding_idx + 1``, padding positions zero);
* attention projections Xavier-uniform (gain :math:`1/\\sqrt 2` for q, k, v),
  zero output-projection bias; FFN layers with PyTorch's default init;
* the decoder's output projection is its input embedding
  (``--share-decoder-input-output-embed``); encoder and decoder embeddings are
  separate tensors even with a joint dictionary (no ``--share-all-embeddings``).

The parameter count is therefore an exact function of the two vocabulary
sizes, :func:`parameter_count`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TransformerConfig", "TransformerIWSLT", "transformer_iwslt_de_en", "parameter_count",
    "label_smoothed_nll_loss", "sinusoidal_positions", "FAIRSEQ_README_VOCAB",
]

# Dictionary sizes fairseq-preprocess prints for IWSLT14 de-en with separate
# dictionaries (the translation README): [de] 8848 types, [en] 6632 types.
FAIRSEQ_README_VOCAB = (8848, 6632)


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of the architecture (defaults: ``transformer_iwslt_de_en``)."""

    embed_dim: int = 512
    ffn_dim: int = 1024
    heads: int = 4
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.3
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_positions: int = 1024
    padding_idx: int = 1


def parameter_count(src_vocab: int, tgt_vocab: int, cfg: TransformerConfig = TransformerConfig(),
                    share_all_embeddings: bool = False) -> int:
    """Exact number of trainable parameters of :class:`TransformerIWSLT`.

    With width :math:`d`, FFN width :math:`f`, :math:`L_e` encoder and
    :math:`L_d` decoder layers,

    .. math::

        N = d\\,(V_{src} + V_{tgt})
            + L_e\\,[\\underbrace{4(d^2 + d)}_{\\text{attention}} + \\underbrace{2df + d + f}_{\\text{FFN}} + 2\\cdot 2d]
            + L_d\\,[8(d^2 + d) + 2df + d + f + 3 \\cdot 2d];

    sinusoidal positions have no parameters and the output projection is the
    decoder embedding. For the iwslt preset the layers contribute 31,543,296
    parameters, so :math:`N = 31{,}543{,}296 + 512\\,(V_{src} + V_{tgt})`.

    ``share_all_embeddings=True`` counts fairseq's ``--share-all-embeddings``
    variant (one table for encoder, decoder and output; needs a joint
    dictionary, ``src_vocab == tgt_vocab``): :math:`N = 31{,}543{,}296 + 512\\,V`.
    This module's model does not implement that variant; the count is for
    comparing with published numbers.
    """
    d, f = cfg.embed_dim, cfg.ffn_dim
    attn = 4 * (d * d + d)
    ffn = 2 * d * f + d + f
    ln = 2 * d
    enc = attn + ffn + 2 * ln
    dec = 2 * attn + ffn + 3 * ln
    if share_all_embeddings:
        if src_vocab != tgt_vocab:
            raise ValueError("share_all_embeddings needs a joint dictionary (src_vocab == tgt_vocab)")
        embeddings = d * src_vocab
    else:
        embeddings = d * (src_vocab + tgt_vocab)
    return embeddings + cfg.encoder_layers * enc + cfg.decoder_layers * dec


def sinusoidal_positions(num_embeddings: int, dim: int, padding_idx: int | None) -> torch.Tensor:
    """fairseq's ``SinusoidalPositionalEmbedding.get_embedding``.

    Frequencies :math:`10000^{-k/(d/2 - 1)}`, the ``sin`` half followed by the
    ``cos`` half (not interleaved as in Vaswani et al.), and a zero row at
    ``padding_idx``.
    """
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -scale)
    angles = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros(num_embeddings, 1)], dim=1)
    if padding_idx is not None:
        emb[padding_idx, :] = 0
    return emb


def _make_positions(tokens: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Positions ``padding_idx + 1, padding_idx + 2, ...`` for non-pad tokens, ``padding_idx`` for pads.

    Counting only non-pad tokens makes the positions of a left-padded source
    start at the first real token, as in fairseq's ``utils.make_positions``.
    """
    mask = tokens.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


class MultiheadAttention(nn.Module):
    """fairseq's ``MultiheadAttention`` (separate q/k/v projections, same init)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # fairseq: scaled Xavier for in-projections (they are one fused matrix in the
        # original Transformer, so gain 1/sqrt(2) keeps the same scale), plain Xavier out.
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        """Shapes ``(T, B, C)`` as in fairseq; ``key_padding_mask`` is ``(B, S)``, True at pads."""
        tgt_len, bsz, dim = query.shape
        src_len = key.shape[0]
        q = self.q_proj(query) * self.head_dim ** -0.5
        k = self.k_proj(key)
        v = self.v_proj(value)

        def split(x, length):
            return x.contiguous().view(length, bsz * self.heads, self.head_dim).transpose(0, 1)

        q, k, v = split(q, tgt_len), split(k, src_len), split(v, src_len)
        scores = torch.bmm(q, k.transpose(1, 2))  # (B*H, T, S)
        if attn_mask is not None:
            scores = scores + attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            scores = scores.view(bsz, self.heads, tgt_len, src_len)
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            scores = scores.view(bsz * self.heads, tgt_len, src_len)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
        probs = F.dropout(probs, p=self.dropout, training=self.training)
        out = torch.bmm(probs, v).transpose(0, 1).contiguous().view(tgt_len, bsz, dim)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-norm encoder block: ``LN(x + Drop(SelfAttn(x)))``, then ``LN(x + Drop(FFN(x)))``."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.embed_dim
        self.self_attn = MultiheadAttention(d, cfg.heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout

    def forward(self, x, padding_mask):
        drop = lambda t, p: F.dropout(t, p=p, training=self.training)  # noqa: E731
        x = self.self_attn_layer_norm(x + drop(self.self_attn(x, x, x, key_padding_mask=padding_mask), self.dropout))
        h = drop(F.relu(self.fc1(x)), self.activation_dropout)
        return self.final_layer_norm(x + drop(self.fc2(h), self.dropout))


class DecoderLayer(nn.Module):
    """Post-norm decoder block: causal self-attention, encoder attention, FFN."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.embed_dim
        self.self_attn = MultiheadAttention(d, cfg.heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = MultiheadAttention(d, cfg.heads, cfg.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout

    def forward(self, x, enc, enc_padding_mask, self_attn_mask, self_padding_mask):
        drop = lambda t, p: F.dropout(t, p=p, training=self.training)  # noqa: E731
        a = self.self_attn(x, x, x, key_padding_mask=self_padding_mask, attn_mask=self_attn_mask)
        x = self.self_attn_layer_norm(x + drop(a, self.dropout))
        a = self.encoder_attn(x, enc, enc, key_padding_mask=enc_padding_mask)
        x = self.encoder_attn_layer_norm(x + drop(a, self.dropout))
        h = drop(F.relu(self.fc1(x)), self.activation_dropout)
        return self.final_layer_norm(x + drop(self.fc2(h), self.dropout))


def _embedding(num: int, dim: int, padding_idx: int) -> nn.Embedding:
    emb = nn.Embedding(num, dim, padding_idx=padding_idx)
    nn.init.normal_(emb.weight, mean=0.0, std=dim ** -0.5)
    nn.init.constant_(emb.weight[padding_idx], 0.0)
    return emb


class _Stack(nn.Module):
    """Shared embedding front end of encoder and decoder."""

    def __init__(self, vocab: int, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = _embedding(vocab, cfg.embed_dim, cfg.padding_idx)
        self.embed_scale = math.sqrt(cfg.embed_dim)
        # +1 because positions start at padding_idx + 1 (fairseq's init_size is max_positions + padding_idx + 1)
        self.register_buffer("positions", sinusoidal_positions(
            cfg.max_positions + cfg.padding_idx + 1, cfg.embed_dim, cfg.padding_idx), persistent=False)

    def embed(self, tokens):
        pos = self.positions[_make_positions(tokens, self.cfg.padding_idx)]
        x = self.embed_scale * self.embed_tokens(tokens) + pos
        x = F.dropout(x, p=self.cfg.dropout, training=self.training)
        return x.transpose(0, 1)  # B x T x C -> T x B x C


class Encoder(_Stack):
    def __init__(self, vocab: int, cfg: TransformerConfig):
        super().__init__(vocab, cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))

    def forward(self, src_tokens):
        padding_mask = src_tokens.eq(self.cfg.padding_idx)
        x = self.embed(src_tokens)
        for layer in self.layers:
            x = layer(x, padding_mask)
        return x, padding_mask


class Decoder(_Stack):
    def __init__(self, vocab: int, cfg: TransformerConfig):
        super().__init__(vocab, cfg)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))

    def forward(self, prev_output_tokens, enc, enc_padding_mask):
        x = self.embed(prev_output_tokens)
        t = prev_output_tokens.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device, dtype=x.dtype), 1)
        self_pad = prev_output_tokens.eq(self.cfg.padding_idx)
        self_pad = self_pad if bool(self_pad.any()) else None
        for layer in self.layers:
            x = layer(x, enc, enc_padding_mask, causal, self_pad)
        # shared input/output embedding: the logits are x @ E^T
        return F.linear(x.transpose(0, 1), self.embed_tokens.weight)


class TransformerIWSLT(nn.Module):
    """Encoder-decoder transformer of fairseq's ``transformer_iwslt_de_en`` preset.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
        Dictionary sizes (equal with a joint dictionary; the two embedding
        tables stay separate tensors, as in fairseq without
        ``--share-all-embeddings``).
    cfg : TransformerConfig, optional

    Notes
    -----
    Parameter names follow fairseq's (``encoder.layers.0.self_attn.k_proj.weight``,
    ``decoder.embed_tokens.weight``, ...), so a layer can be looked up by the
    name a fairseq user knows.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: TransformerConfig = TransformerConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(src_vocab, cfg)
        self.decoder = Decoder(tgt_vocab, cfg)

    def forward(self, src_tokens, prev_output_tokens):
        """Logits ``(B, T, V_tgt)`` for teacher-forced ``prev_output_tokens``."""
        enc, enc_mask = self.encoder(src_tokens)
        return self.decoder(prev_output_tokens, enc, enc_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def transformer_iwslt_de_en(src_vocab: int, tgt_vocab: int | None = None, **overrides) -> TransformerIWSLT:
    """fairseq's ``transformer_iwslt_de_en`` (``tgt_vocab`` defaults to ``src_vocab``: a joint dictionary).

    Keyword overrides change :class:`TransformerConfig` fields (e.g. a tiny
    model for tests: ``embed_dim=16, ffn_dim=32, encoder_layers=1, ...``).
    """
    return TransformerIWSLT(src_vocab, src_vocab if tgt_vocab is None else tgt_vocab,
                            TransformerConfig(**overrides))


def label_smoothed_nll_loss(logits, target, epsilon: float = 0.1, ignore_index: int = 1):
    """fairseq's ``label_smoothed_cross_entropy``, summed over non-pad tokens.

    With :math:`V` classes and :math:`\\epsilon_i = \\epsilon / (V - 1)`:

    .. math::

        \\ell = (1 - \\epsilon - \\epsilon_i)\\,(-\\log p_y) + \\epsilon_i \\sum_k (-\\log p_k),

    i.e. mass :math:`1-\\epsilon` on the reference and :math:`\\epsilon/(V-1)` on
    every other class. Returns ``(loss, nll_loss)``, both sums; fairseq
    divides the gradient by the number of target tokens.
    """
    lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
    lprobs = lprobs.view(-1, lprobs.size(-1))
    target = target.reshape(-1, 1)
    nll = -lprobs.gather(dim=-1, index=target)
    smooth = -lprobs.sum(dim=-1, keepdim=True)
    pad = target.eq(ignore_index)
    nll = nll.masked_fill(pad, 0.0).sum()
    smooth = smooth.masked_fill(pad, 0.0).sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    return loss, nll
