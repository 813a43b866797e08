"""Compare adamdist's IWSLT14 transformer pipeline with fairseq 0.12.2: python tools/compare_with_fairseq.py

A verification run by hand, not a test: it needs fairseq, which adamdist does not depend on, and
takes a few minutes on a CPU. Everything runs on the CPU, on the IWSLT14 de-en ``valid`` split.

What it checks
--------------
A. Dictionary: fairseq's ``TranslationTask.build_dictionary`` (what ``fairseq-preprocess
   --joined-dictionary`` calls) against ``adamdist.data.iwslt.build_joint_dictionary``, both on
   ``bpe10k/valid.{de,en}``: same symbols in the same order, same special indices, and
   ``encode_line`` gives the same ids on every line.
B. Batching: fairseq's ``LanguagePairDataset.ordered_indices`` + ``filter_indices_by_size`` +
   ``batch_by_size`` (max_tokens 4096, required_batch_size_multiple 8) against
   ``adamdist.data.iwslt.batch_by_tokens``: the same batches, members in the same order. Then
   fairseq's ``collater`` against ``adamdist.data.iwslt.collate`` on every batch.
C. Model: fairseq's ``TransformerModel`` (arch ``transformer_iwslt_de_en``,
   ``--share-decoder-input-output-embed``, dropout 0.3) against
   ``adamdist.models.transformer.transformer_iwslt_de_en``: parameter names, shapes and counts,
   initialisation statistics; then, with fairseq's weights copied into ours, encoder output,
   logits and the label-smoothed loss (epsilon 0.1) in eval mode, in float64 and float32.
D. Gradients and optimizer, float64 and float32: both models' gradients at the same weights;
   ``adamdist.optim.FairseqAdam`` against ``fairseq.optim.adam.Adam`` (what ``--optimizer adam``
   runs on a CPU, without apex or fused CUDA kernels) over several steps, each fed the same
   gradient (fairseq's, along fairseq's own training trajectory on different batches, one learning
   rate per step), with weight decay 0 and 1e-4 (fairseq's IWSLT recipe): parameters and
   optimizer state must be bit-identical (``torch.equal``). For information, how far
   ``torch.optim.Adam`` lands from fairseq's Adam on the same gradients, and that it matches to
   rounding once its epsilon is ``eps / sqrt(1 - beta2^t)``.

Each check prints ``OK``, ``DIFF`` or ``NOTE``. A ``NOTE`` is one of the accepted differences
below, printed only when the evidence that it is that difference holds (otherwise it is a
``DIFF``). Exit status 1 if any check printed ``DIFF``, 0 otherwise (2 when ``ADAMDIST_DATA`` is
not set or fairseq is not installed).

Accepted differences
--------------------
- Row order within a batch: fairseq orders a batch by ``src_lengths.sort(descending=True)``,
  which is not a stable sort, while ``collate`` sorts stably; rows of equal source length can
  come in another order. Accepted when the batch holds the same pairs and collating ours in
  fairseq's row order gives fairseq's tensors exactly.
- Parameter count: fairseq 0.12.2's encoder layers also register zero-filled copies of their
  weights for the BetterTransformer inference path (``in_proj_weight``, ``fc1_weight``, ...);
  only loading a checkpoint fills them, and a model built from scratch never reads them, but
  ``model.parameters()`` counts them. Accepted when they are all zero, get no gradient, and the
  counts without them agree exactly.
- float64 logits: ``adamdist``'s attention takes its softmax in float32 in every dtype, whereas
  fairseq's self-attention takes it in the input dtype, so in float64 the logits differ at about
  1e-7 relative. Accepted when giving our self-attention a float64 softmax brings the difference
  below 1e-12 relative.

Environment
-----------
A separate virtual environment (fairseq 0.12.2 pins old hydra-core/omegaconf and builds from
source, so it needs a C/C++ compiler)::

    python3 -m venv fairseq-venv && . fairseq-venv/bin/activate
    pip install "pip<24.1"
    pip install torch numpy          # CPU wheels suffice; run with torch 2.14.1, numpy 2.4.6, Python 3.11.7
    pip install fairseq==0.12.2      # pulls hydra-core 1.0.7 and omegaconf 2.0.6
    pip install -e . --no-deps       # this checkout, from the repository root

Only torch and numpy are needed besides fairseq: the adamdist modules used here import nothing
else, hence ``--no-deps``. pip 23.x installs omegaconf 2.0.6 with a warning, ``DEPRECATION:
omegaconf 2.0.6 has a non-standard dependency specifier PyYAML>=5.1.*``, which is harmless;
pip 24.1 and later reject that metadata ("Ignoring version 2.0.6 of omegaconf since it has
invalid metadata ... Please use pip<24.1") and cannot install fairseq 0.12.2 at all, hence the
first line. On Python 3.11 and later fairseq 0.12.2 does not import as shipped; the sibling
module ``fairseq_compat.py`` patches that at run time (see its docstring).

Run
---
From the repository root, with the data root (the folder that holds ``iwslt14-de-en/``) in
``ADAMDIST_DATA``::

    ADAMDIST_DATA=/path/to/data python tools/compare_with_fairseq.py | tee compare_with_fairseq.out
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fairseq_compat  # noqa: E402

import adamdist  # noqa: E402
from adamdist.data.iwslt import batch_by_tokens, build_joint_dictionary, collate, iwslt14  # noqa: E402
from adamdist.models import transformer as ours_transformer  # noqa: E402
from adamdist.models.transformer import label_smoothed_nll_loss, parameter_count, transformer_iwslt_de_en  # noqa: E402
from adamdist.optim import FairseqAdam  # noqa: E402

MAX_TOKENS, BSZ_MULT, MAX_POS, SEED = 4096, 8, 1024, 0
LABEL_SMOOTHING = 0.1
PAD = 1
# fairseq's IWSLT14 recipe: --adam-betas '(0.9, 0.98)' --lr 5e-4 --warmup-updates 4000 --weight-decay 0.0001
LR, BETAS, ADAM_EPS, WARMUP, WEIGHT_DECAY = 5e-4, (0.9, 0.98), 1e-8, 4000, 1e-4
OPT_STEPS = 4

# The BetterTransformer-only tensors of fairseq 0.12.2's TransformerEncoderLayerBase.
BT_ONLY = re.compile(r"^encoder\.layers\.\d+\.(in_proj_weight|in_proj_bias|out_proj_weight|out_proj_bias|"
                     r"fc1_weight|fc1_bias|fc2_weight|fc2_bias)$")


class Checks:
    """Collects the outcome of every check; ``DIFF`` decides the exit status."""

    def __init__(self):
        self.diffs: list[str] = []
        self.notes: list[str] = []

    def check(self, passed: bool, what: str):
        print(f"  [{'OK  ' if passed else 'DIFF'}] {what}")
        if not passed:
            self.diffs.append(what)

    def note(self, what: str):
        print(f"  [NOTE] {what}")
        self.notes.append(what)


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b|."""
    return max_abs_diff(a, b) / max(b.detach().abs().max().item(), 1e-300)


def describe_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"max|d|={max_abs_diff(a, b):.3e}  max|d|/max|ref|={rel_diff(a, b):.3e}"


def ulp_distance(a: torch.Tensor, b: torch.Tensor, floor: float) -> float:
    """Largest |a - b| in units of the spacing of floats at max(|a|, |b|, floor), in the tensors' dtype.

    With ``floor`` the learning rate this measures rounding of a parameter and of a step alike:
    a coordinate that a step brings close to zero keeps the rounding error of the step, which is
    many ulp of the small value left.
    """
    m = torch.maximum(torch.maximum(a.abs(), b.abs()), torch.tensor(floor, dtype=a.dtype))
    spacing = torch.nextafter(m, torch.full_like(m, math.inf)) - m
    return ((a - b).abs() / spacing).max().item()


def load_fairseq() -> types.SimpleNamespace:
    # fairseq logs and warns a lot on import and model construction (deprecations, hydra)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    fairseq = fairseq_compat.import_fairseq()
    from fairseq.criterions.label_smoothed_cross_entropy import (LabelSmoothedCrossEntropyCriterion,
                                                                 label_smoothed_nll_loss as fs_ls_loss)
    from fairseq.data import LanguagePairDataset
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
    from fairseq.optim.adam import Adam
    from fairseq.tasks.translation import TranslationTask
    return types.SimpleNamespace(
        version=fairseq.__version__, path=os.path.dirname(fairseq.__file__),
        Criterion=LabelSmoothedCrossEntropyCriterion, ls_loss=fs_ls_loss, LanguagePairDataset=LanguagePairDataset,
        ARCH_CONFIG_REGISTRY=ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY=ARCH_MODEL_REGISTRY, Adam=Adam,
        TranslationTask=TranslationTask)


class Task:
    """The two attributes ``TransformerModel.build_model`` and the criterion read from a task."""

    def __init__(self, dictionary):
        self.source_dictionary = self.target_dictionary = dictionary


# ------------------------------------------------------------------------------------------------ A
def dictionaries(fs, data_root: Path, checks: Checks) -> types.SimpleNamespace:
    bpe = data_root / "iwslt14-de-en" / "bpe10k"
    print(f"\nA. Dictionary (joint, from bpe10k/valid.de + valid.en; train split present: "
          f"{(bpe / 'train.de').is_file()})")
    fs_dict = fs.TranslationTask.build_dictionary([str(bpe / "valid.de"), str(bpe / "valid.en")],
                                                  workers=1, threshold=-1, nwords=-1, padding_factor=8)
    corpus = iwslt14("valid", bpe=True, root=data_root)
    our_dict = build_joint_dictionary(list(corpus.src) + list(corpus.tgt))
    print(f"  sizes: fairseq {len(fs_dict)}  ours {len(our_dict)}")
    same_symbols = list(fs_dict.symbols) == list(our_dict.symbols)
    checks.check(same_symbols, "same symbols in the same order")
    if not same_symbols:
        first = next((i for i, (a, b) in enumerate(zip(fs_dict.symbols, our_dict.symbols)) if a != b),
                     min(len(fs_dict), len(our_dict)))
        print(f"    first difference at index {first}")
    fs_special = (fs_dict.bos(), fs_dict.pad(), fs_dict.eos(), fs_dict.unk())
    our_special = (our_dict.bos, our_dict.pad, our_dict.eos, our_dict.unk)
    checks.check(fs_special == our_special, f"special indices bos/pad/eos/unk: fairseq {fs_special} ours {our_special}")
    if fs_dict.pad() != PAD:
        raise SystemExit(f"fairseq's padding index is {fs_dict.pad()}, not {PAD}; the rest assumes {PAD}")

    def fs_encode(line):
        return fs_dict.encode_line(line, add_if_not_exist=False, append_eos=True).long()

    fs_src, fs_tgt = [fs_encode(s) for s in corpus.src], [fs_encode(t) for t in corpus.tgt]
    our_src, our_tgt = [our_dict.encode_line(s) for s in corpus.src], [our_dict.encode_line(t) for t in corpus.tgt]
    same = sum(np.array_equal(a.numpy(), b) for a, b in zip(fs_src + fs_tgt, our_src + our_tgt))
    checks.check(same == len(fs_src) + len(fs_tgt),
                 f"encode_line identical (ids incl. </s>) on {same} of {len(fs_src) + len(fs_tgt)} lines")
    return types.SimpleNamespace(fs_dict=fs_dict, our_dict=our_dict, fs_src=fs_src, fs_tgt=fs_tgt,
                                 our_src=our_src, our_tgt=our_tgt)


# ------------------------------------------------------------------------------------------------ B
def batching(fs, enc, checks: Checks) -> types.SimpleNamespace:
    print(f"\nB. Batching (max_tokens={MAX_TOKENS}, required_batch_size_multiple={BSZ_MULT}, max_positions={MAX_POS})")
    src_sizes = np.array([len(s) for s in enc.our_src], dtype=np.int64)
    tgt_sizes = np.array([len(t) for t in enc.our_tgt], dtype=np.int64)
    ours = batch_by_tokens(src_sizes, tgt_sizes, MAX_TOKENS, seed=SEED, batch_size_multiple=BSZ_MULT,
                           max_positions=MAX_POS)
    # fairseq shuffles before its length sort with np.random under its own seed. Give it ours instead:
    # P is the first draw of batch_by_tokens' generator; fairseq's dataset holds the pairs in order P
    # with shuffle=False, and its indices are mapped back through P. (The order of the batches is a
    # separate shuffle in both, so batches are compared as a multiset.)
    P = np.random.default_rng(SEED).permutation(len(src_sizes))
    P_inv = np.argsort(P)
    ds = fs.LanguagePairDataset([enc.fs_src[i] for i in P], src_sizes[P], enc.fs_dict, [enc.fs_tgt[i] for i in P],
                                tgt_sizes[P], enc.fs_dict, left_pad_source=True, left_pad_target=False, shuffle=False)
    idx, ignored = ds.filter_indices_by_size(ds.ordered_indices(), (MAX_POS, MAX_POS))
    fs_batches = [P[b] for b in ds.batch_by_size(idx, max_tokens=MAX_TOKENS, max_sentences=None,
                                                 required_batch_size_multiple=BSZ_MULT)]
    print(f"  batches: fairseq {len(fs_batches)}  ours {len(ours)}; pairs dropped as too long: fairseq {len(ignored)}, "
          f"ours {len(src_sizes) - sum(len(b) for b in ours)}")
    fs_keys = sorted(tuple(int(i) for i in b) for b in fs_batches)
    our_keys = sorted(tuple(int(i) for i in b) for b in ours)
    checks.check(fs_keys == our_keys, "same batches, members in the same order")
    if fs_keys != our_keys:
        as_sets = sorted(tuple(sorted(b)) for b in fs_keys) == sorted(tuple(sorted(b)) for b in our_keys)
        print(f"    same batches as sets of pairs (ignoring the order inside a batch): {as_sets}")
        sizes_max = np.maximum(src_sizes, tgt_sizes)
        A, B = set(fs_keys), set(our_keys)
        for name, X, Y in (("fairseq only", A, B), ("ours only   ", B, A)):
            for b in sorted(X - Y, key=lambda b: (sizes_max[list(b)].max(), len(b))):
                print(f"    {name}: batch of {len(b)} pairs, longest {sizes_max[list(b)].max()}, "
                      f"padded tokens {len(b) * sizes_max[list(b)].max()}")
        print(f"    ({len(A & B)} batches identical)")

    # collate every batch both ways
    def fs_collate(batch):
        sample = ds.collater([ds[int(P_inv[i])] for i in batch])
        return sample, P[sample["id"].numpy()]

    def tensors(s):
        n = s["net_input"]
        return n["src_tokens"], n["src_lengths"], n["prev_output_tokens"], s["target"]

    def equal(fs_sample, b):
        return (all(torch.equal(x, y) for x, y in zip(tensors(fs_sample),
                                                      (b.src_tokens, b.src_lengths, b.prev_output_tokens, b.target)))
                and fs_sample["ntokens"] == b.ntokens)

    def collate_ours(batch):
        return collate([enc.our_src[i] for i in batch], [enc.our_tgt[i] for i in batch], enc.our_dict)

    same_order = reordered = 0
    bad = []
    moved_rows = moved_of = 0
    for batch in ours:
        sample, fs_ids = fs_collate(batch)
        if equal(sample, collate_ours(batch)):
            same_order += 1
            continue
        # Accepted only as a reordering of rows of equal source length: the same pairs, and our
        # collate fed in fairseq's row order (already sorted by decreasing length, so our stable
        # sort keeps it) reproduces fairseq's tensors exactly.
        our_order = np.asarray(batch)[np.argsort([-len(enc.our_src[i]) for i in batch], kind="mergesort")]
        ties_only = all(len(enc.our_src[a]) == len(enc.our_src[b]) for a, b in zip(our_order, fs_ids))
        same_pairs = sorted(fs_ids.tolist()) == sorted(int(i) for i in batch)
        if same_pairs and ties_only and equal(sample, collate_ours(fs_ids)):
            reordered += 1
            moved_rows += int((our_order != fs_ids).sum())
            moved_of += len(batch)
        else:
            bad.append(batch)
    print(f"  collate over all {len(ours)} batches: identical {same_order}, rows reordered among equal source "
          f"lengths only {reordered} ({moved_rows} of their {moved_of} rows elsewhere), other differences {len(bad)}")
    if bad:
        checks.check(False, f"collate: {len(bad)} batches differ other than by the order of equal-length rows")
    elif reordered:
        # fairseq: src_lengths.sort(descending=True), not stable; ours: a stable sort
        checks.note(f"collate: src_tokens (left-padded), src_lengths, prev_output_tokens, target and ntokens identical "
                    f"up to the order of rows with equal source length ({reordered} of {len(ours)} batches)")
    else:
        checks.check(True, "collate: src_tokens (left-padded), src_lengths, prev_output_tokens, target and ntokens "
                           "identical, rows in the same order, in every batch")
    samples = [fs_collate(b)[0] for b in ours[:OPT_STEPS]]
    s = samples[0]
    print(f"  batch used in C and D (the first of our shuffled batches): {len(s['id'])} pairs, "
          f"src {tuple(s['net_input']['src_tokens'].shape)}, tgt {tuple(s['target'].shape)}, ntokens {s['ntokens']}")
    return types.SimpleNamespace(samples=samples)


# ------------------------------------------------------------------------------------------------ C
def build_models(fs, enc, checks: Checks) -> types.SimpleNamespace:
    print("\nC. Model")
    V = len(enc.fs_dict)
    args = argparse.Namespace(arch="transformer_iwslt_de_en", share_decoder_input_output_embed=True,
                              share_all_embeddings=False, dropout=0.3)
    fs.ARCH_CONFIG_REGISTRY["transformer_iwslt_de_en"](args)
    task = Task(enc.fs_dict)
    torch.manual_seed(0)
    fs_model = fs.ARCH_MODEL_REGISTRY["transformer_iwslt_de_en"].build_model(args, task)
    torch.manual_seed(0)
    our_model = transformer_iwslt_de_en(V, V, dropout=0.3)
    print(f"  fairseq config: layers {args.encoder_layers}/{args.decoder_layers}, dim {args.encoder_embed_dim}, "
          f"ffn {args.encoder_ffn_embed_dim}, heads {args.encoder_attention_heads}, dropout {args.dropout}, "
          f"attention_dropout {args.attention_dropout}, activation_dropout {args.activation_dropout}, "
          f"activation {args.activation_fn}, normalize_before {args.encoder_normalize_before}/"
          f"{args.decoder_normalize_before}, layernorm_embedding {args.layernorm_embedding}, "
          f"no_scale_embedding {args.no_scale_embedding}, learned_pos {args.encoder_learned_pos}, "
          f"max_positions {args.max_source_positions}/{args.max_target_positions}")

    fs_all = dict(fs_model.named_parameters())  # what model.parameters() yields, tied weights once
    fs_bt = {n: p for n, p in fs_all.items() if BT_ONLY.match(n)}
    fs_params = {n: p for n, p in fs_all.items() if n not in fs_bt}
    our_params = dict(our_model.named_parameters())
    fs_total = sum(p.numel() for p in fs_all.values())
    bt_total = sum(p.numel() for p in fs_bt.values())
    fs_used = fs_total - bt_total
    our_total = our_model.num_parameters()
    formula = parameter_count(V, V)
    bt_zero = all(bool((p == 0).all()) for p in fs_bt.values())
    per_layer = {sum(p.numel() for n, p in fs_bt.items() if n.startswith(f"encoder.layers.{i}."))
                 for i in range(args.encoder_layers)}
    print(f"  fairseq model.parameters(): {fs_total:,} in {len(fs_all)} tensors; BetterTransformer-only encoder "
          f"tensors among them: {bt_total:,} in {len(fs_bt)} ({len(fs_bt) // max(args.encoder_layers, 1)} per layer, "
          f"{', '.join(f'{c:,}' for c in sorted(per_layer))} elements per layer), all zero: {bt_zero}")
    counts_match = fs_used == our_total == formula
    detail = (f"fairseq {fs_total:,} with its BetterTransformer-only tensors, {fs_used:,} without; ours {our_total:,}; "
              f"parameter_count(V, V) {formula:,}")
    if fs_total == our_total == formula:
        checks.check(True, f"parameter count: {detail}")
    elif fs_bt and bt_zero and counts_match:
        checks.note(f"parameter count: {detail}")
    else:
        checks.check(False, f"parameter count: {detail}")
    checks.check(fs_model.decoder.output_projection.weight is fs_model.decoder.embed_tokens.weight,
                 "fairseq decoder.output_projection.weight is decoder.embed_tokens.weight (tied)")
    checks.check(fs_model.encoder.embed_tokens.weight is not fs_model.decoder.embed_tokens.weight,
                 "fairseq encoder and decoder embeddings are separate tensors (no --share-all-embeddings)")

    # ours uses fairseq's parameter names
    unmapped = [n for n in fs_params if n not in our_params]
    unused = sorted(set(our_params) - set(fs_params))
    shape_bad = [(n, tuple(p.shape), tuple(our_params[n].shape)) for n, p in fs_params.items()
                 if n in our_params and p.shape != our_params[n].shape]
    checks.check(not unmapped and not unused and not shape_bad,
                 f"names and shapes: {len(fs_params)} fairseq tensors (without the BetterTransformer-only ones) "
                 f"<-> {len(our_params)} ours; missing in ours {unmapped}, only in ours {unused}, "
                 f"shape mismatches {shape_bad}")
    if unmapped or unused or shape_bad:
        raise SystemExit("the parameter mapping failed; nothing further can be compared")
    fs_buffers = sorted(n for n, _ in fs_model.named_buffers())
    print(f"  fairseq buffers: {fs_buffers}")

    init_statistics(fs_params, our_params, checks)
    init = {n: p.detach().clone() for n, p in fs_params.items()}
    with torch.no_grad():
        for n, p in fs_params.items():
            our_params[n].copy_(p)
    return types.SimpleNamespace(fs_model=fs_model, our_model=our_model, task=task, V=V, init=init,
                                 names=list(fs_params), dropout=args.dropout)


def init_statistics(fs_params: dict, our_params: dict, checks: Checks):
    """Compare the distributions of the fresh initialisations (independent draws, not values)."""
    def group(name):  # encoder.layers.3.fc1.weight -> encoder.layers.3
        parts = name.split(".")
        return ".".join(parts[:3] if parts[1] == "layers" else parts[:2])

    identical = {n for n in fs_params if torch.equal(fs_params[n], our_params[n])}
    # Both models draw every tensor from the same generator under seed 0, so a tensor is identical
    # exactly when the two draw it at the same point of the random stream; which ones that is
    # depends only on the order in which each model builds its modules.
    groups: dict[str, list[int]] = {}
    for n in fs_params:
        g = groups.setdefault(group(n), [0, 0])
        g[0] += n in identical
        g[1] += 1
    whole = [g for g, (k, m) in groups.items() if k == m]
    partly = [f"{g} ({k}/{m})" for g, (k, m) in groups.items() if 0 < k < m]
    print(f"  init, seed 0 in both: {len(identical)} of {len(fs_params)} tensors bit-identical; groups entirely "
          f"identical: {', '.join(whole) or 'none'}; partly: {', '.join(partly) or 'none'}")

    kinds: dict[str, list[str]] = {}
    for n in fs_params:
        parts = n.split(".")
        kinds.setdefault(".".join(p for p in parts if not p.isdigit()), []).append(n)
    print("  init statistics of the other tensor kinds (fairseq / ours):")
    all_ok = True
    for kind, names in sorted(kinds.items()):
        if all(n in identical for n in names):
            continue
        a = torch.cat([fs_params[n].detach().double().flatten() for n in names])
        b = torch.cat([our_params[n].detach().double().flatten() for n in names])
        sa, sb, ma, mb = a.std().item(), b.std().item(), a.mean().item(), b.mean().item()
        maxa, maxb = a.abs().max().item(), b.abs().max().item()
        sd = max(sa, sb)
        z_mean = abs(ma - mb) / (sd * math.sqrt(2 / a.numel())) if sd > 0 else 0.0  # two-sample z of the means
        z_std = abs(sa - sb) / (sd * math.sqrt(1 / a.numel())) if sd > 0 else 0.0   # SE(std) ~ sd/sqrt(2n) each
        ok = z_mean < 5 and z_std < 5 and abs(maxa - maxb) <= 0.1 * max(maxa, maxb) + 1e-12
        all_ok &= ok
        print(f"    {'ok  ' if ok else 'DIFF'} {kind:45s} std {sa:.5f} / {sb:.5f}  mean {ma:+.5f} / {mb:+.5f} "
              f"(z {z_mean:.1f}, {z_std:.1f})  max|.| {maxa:.4f} / {maxb:.4f}")
    checks.check(all_ok, "initialisation distributions agree for every tensor kind (mean and std within 5 standard "
                         "errors, max|.| within 10%)")
    for emb in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        checks.check(bool((fs_params[emb][PAD] == 0).all() and (our_params[emb][PAD] == 0).all()),
                     f"{emb}: padding row zero in both")


def ours_with_float64_self_attention_softmax(our_model, src_tokens, prev_output_tokens):
    """Our logits with the self-attention softmax taken in the input dtype (fairseq's precision).

    Our MultiheadAttention always takes its softmax in float32 and casts back. fairseq's
    self-attention goes through F.multi_head_attention_forward (softmax in the input dtype) while
    its encoder-decoder attention (static_kv) uses utils.softmax(..., dtype=torch.float32). This
    swaps the module-level ``F`` of adamdist.models.transformer for a copy whose softmax ignores
    ``dtype``, during the self-attention calls only; nothing on disk changes.
    """
    real_F = ours_transformer.F
    proxy = types.SimpleNamespace(**{k: getattr(real_F, k) for k in dir(real_F) if not k.startswith("__")})
    proxy.softmax = lambda x, dim=-1, dtype=None: real_F.softmax(x, dim=dim)

    def input_dtype_softmax(forward):
        def wrapped(*args, **kwargs):
            ours_transformer.F = proxy
            try:
                return forward(*args, **kwargs)
            finally:
                ours_transformer.F = real_F
        return wrapped

    modules = [layer.self_attn for layer in list(our_model.encoder.layers) + list(our_model.decoder.layers)]
    for m in modules:
        m.forward = input_dtype_softmax(m.forward)
    try:
        with torch.no_grad():
            return our_model(src_tokens, prev_output_tokens)
    finally:
        for m in modules:
            del m.forward


def forward_comparison(fs, models, sample, checks: Checks):
    src, lens = sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"]
    prev, target = sample["net_input"]["prev_output_tokens"], sample["target"]
    tmask = target.ne(PAD)
    for dtype in (torch.float64, torch.float32):
        name = dtype_name(dtype)
        print(f"\n  --- forward, eval mode (no dropout), {name} ---")
        fm, om = models.fs_model.to(dtype).eval(), models.our_model.to(dtype).eval()
        with torch.no_grad():
            fs_enc = fm.encoder(src, src_lengths=lens)
            fs_x, fs_mask = fs_enc["encoder_out"][0], fs_enc["encoder_padding_mask"][0]  # T x B x C, B x T
            our_x, our_mask = om.encoder(src)
            fs_logits, _ = fm(src, lens, prev)
            our_logits = om(src, prev)
        checks.check(torch.equal(fs_mask, our_mask), f"[{name}] encoder padding mask identical")
        nonpad = ~our_mask.t()
        print(f"    encoder output, non-pad positions: {describe_diff(our_x[nonpad], fs_x[nonpad])}")
        if (~nonpad).any():
            # pad positions are never attended to; fairseq also zeroes their embeddings before layer 0
            print(f"    encoder output, pad positions:     {describe_diff(our_x[~nonpad], fs_x[~nonpad])}")
        print(f"    logits, all positions:             {describe_diff(our_logits, fs_logits)}")
        rel = max_abs_diff(our_logits[tmask], fs_logits[tmask]) / fs_logits.abs().max().item()
        print(f"    logits, non-pad targets:           {describe_diff(our_logits[tmask], fs_logits[tmask])}")
        tol = 1e-9 if dtype == torch.float64 else 1e-5
        if dtype == torch.float64:
            l64 = ours_with_float64_self_attention_softmax(om, src, prev)
            rel64 = max_abs_diff(l64[tmask], fs_logits[tmask]) / fs_logits.abs().max().item()
            print(f"    [diagnostic] ours with a float64 softmax in self-attention, logits on non-pad targets: "
                  f"{describe_diff(l64[tmask], fs_logits[tmask])}")
            if rel >= tol and rel64 < 1e-12:
                checks.note(f"[{name}] logits differ by {rel:.3e} relative (tolerance {tol:g}); with a float64 "
                            f"softmax in our self-attention {rel64:.3e} (< 1e-12): the float32 softmax accounts for it")
            else:
                checks.check(rel < tol, f"[{name}] logits agree: {rel:.3e} relative (tolerance {tol:g})")
        else:
            checks.check(rel < tol, f"[{name}] logits agree: {rel:.3e} relative (tolerance {tol:g})")

        crit = fs.Criterion(models.task, sentence_avg=False, label_smoothing=LABEL_SMOOTHING)
        with torch.no_grad():
            fs_loss, fs_sample_size, fs_log = crit(fm, sample)
            our_loss, our_nll = label_smoothed_nll_loss(our_logits, target, LABEL_SMOOTHING, ignore_index=PAD)
            # fairseq's bare loss function on our model's log-probabilities isolates the loss formula
            lprobs = torch.log_softmax(our_logits.float(), -1).view(-1, models.V)
            fn_loss, _ = fs.ls_loss(lprobs, target.view(-1), LABEL_SMOOTHING, ignore_index=PAD)
        fs_lprobs = fm.get_normalized_probs((fs_logits, None), log_probs=True)
        rel_loss = abs(our_loss.item() - fs_loss.item()) / fs_loss.item()
        rel_nll = abs(our_nll.item() - fs_log["nll_loss"].item()) / fs_log["nll_loss"].item()
        print(f"    fairseq criterion: loss {fs_loss.item():.10f} nll {fs_log['nll_loss'].item():.10f} (sums over "
              f"sample_size={fs_sample_size} tokens; loss/sample_size/ln 2 = "
              f"{fs_loss.item() / fs_sample_size / math.log(2):.6f})")
        print(f"    ours:              loss {our_loss.item():.10f} nll {our_nll.item():.10f}; relative difference "
              f"loss {rel_loss:.3e}, nll {rel_nll:.3e}")
        print(f"    fairseq's label_smoothed_nll_loss on our log-probs vs ours: relative difference "
              f"{abs(fn_loss.item() - our_loss.item()) / fn_loss.item():.3e}; log-prob dtypes: fairseq "
              f"{dtype_name(fs_lprobs.dtype)}, our loss {dtype_name(our_loss.dtype)}")
        tol = 1e-6 if dtype == torch.float64 else 1e-5
        checks.check(rel_loss < tol and rel_nll < tol,
                     f"[{name}] label-smoothed loss and nll agree (tolerance {tol:g} relative)")


# ------------------------------------------------------------------------------------------------ D
def fairseq_rate(update: int) -> float:
    """fairseq's inverse_sqrt rate after warm-up: lr * sqrt(warmup / update)."""
    return LR * math.sqrt(WARMUP / update)


def model_gradients(fs, models, sample, dtype, checks: Checks):
    """Both models' gradients at the same weights (eval mode), and one optimizer step on each."""
    name = dtype_name(dtype)
    fm, om = models.fs_model.to(dtype).eval(), models.our_model.to(dtype).eval()
    fs_named, our_named = dict(fm.named_parameters()), dict(om.named_parameters())
    with torch.no_grad():
        for n in models.names:
            fs_named[n].copy_(models.init[n])
            our_named[n].copy_(models.init[n])
    crit = fs.Criterion(models.task, sentence_avg=False, label_smoothing=LABEL_SMOOTHING)
    fm.zero_grad()
    loss, sample_size, _ = crit(fm, sample)
    (loss / sample_size).backward()
    om.zero_grad()
    logits = om(sample["net_input"]["src_tokens"], sample["net_input"]["prev_output_tokens"])
    our_loss, _ = label_smoothed_nll_loss(logits, sample["target"], LABEL_SMOOTHING, ignore_index=PAD)
    (our_loss / sample["ntokens"]).backward()
    bt_grads = [n for n, p in fs_named.items() if BT_ONLY.match(n) and p.grad is not None]
    checks.check(not bt_grads, f"[{name}] fairseq's BetterTransformer-only tensors get no gradient: {bt_grads[:3]}")
    fg = {n: fs_named[n].grad.detach().clone() for n in models.names}
    og = {n: our_named[n].grad.detach().clone() for n in models.names}
    # k_proj.bias gradients are zero in exact arithmetic (q.b_k is added to every score of a query row,
    # which the softmax ignores), so only rounding is left in them: shown apart.
    kb = [n for n in fg if n.endswith("k_proj.bias")]
    worst = max((rel_diff(og[n], fg[n]), n) for n in fg if n not in kb)
    fg_all = torch.cat([g.flatten() for g in fg.values()])
    og_all = torch.cat([og[n].flatten() for n in fg])
    print(f"  [{name}] gradients (eval mode, identical weights), all {fg_all.numel():,} coordinates: "
          f"{describe_diff(og_all, fg_all)}")
    print(f"    worst tensor, relative to its own max (k_proj.bias apart): {worst[1]} {worst[0]:.3e}; k_proj.bias "
          f"max|g|: fairseq {max(fg[n].abs().max().item() for n in kb):.2e}, ours "
          f"{max(og[n].abs().max().item() for n in kb):.2e}")
    print(f"    coordinates with |g| < 10 eps: {(fg_all.abs() < 10 * ADAM_EPS).sum().item():,} "
          f"({100 * (fg_all.abs() < 10 * ADAM_EPS).double().mean().item():.2f}%), of which exactly 0 in fairseq's: "
          f"{(fg_all == 0).sum().item():,}")

    # one step from the same weights: each model with an optimizer, fairseq's model with fairseq's Adam
    def one_step(opt_cls, grads, **kwargs):
        params = [models.init[n].to(dtype).clone().requires_grad_(True) for n in models.names]
        for p, n in zip(params, models.names):
            p.grad = grads[n].clone()
        opt_cls(params, lr=LR, betas=BETAS, eps=ADAM_EPS, weight_decay=0.0, **kwargs).step()
        return torch.cat([(p.detach() - models.init[n].to(dtype)).flatten() for p, n in zip(params, models.names)])

    ref = one_step(fs.Adam, fg)
    for label, update in (("ours + FairseqAdam", one_step(FairseqAdam, og)),
                          ("ours + torch.optim.Adam", one_step(torch.optim.Adam, og, foreach=False))):
        d = (update - ref).abs()
        print(f"    one step at lr {LR:g}, {label} vs fairseq + its Adam: max|d update| {d.max().item():.3e} "
              f"({d.max().item() / LR:.3e} lr); coordinates off by > 1e-3 lr: {(d > 1e-3 * LR).sum().item():,} "
              f"of {d.numel():,}")
    del fg, og


def fairseq_trajectory(fs, models, samples, dtype):
    """Gradients along fairseq's own training: model in train mode (dropout), fairseq's Adam, one batch per step.

    Returns the learning rates, the gradient of each step (in ``models.names`` order) and the
    parameters reached.
    """
    fm = models.fs_model.to(dtype).train()
    named = dict(fm.named_parameters())
    params = [named[n] for n in models.names]
    with torch.no_grad():
        for p, n in zip(params, models.names):
            p.copy_(models.init[n])
    crit = fs.Criterion(models.task, sentence_avg=False, label_smoothing=LABEL_SMOOTHING)
    opt = fs.Adam(params, lr=LR, betas=BETAS, eps=ADAM_EPS, weight_decay=0.0)
    torch.manual_seed(SEED)
    rates, grads = [], []
    for t, sample in enumerate(samples):
        # rates of fairseq's inverse_sqrt schedule just after its warm-up, one Python float per step,
        # written into the param group as fairseq's scheduler does
        rates.append(fairseq_rate(WARMUP + t))
        for g in opt.param_groups:
            g["lr"] = rates[-1]
        fm.zero_grad()
        loss, sample_size, _ = crit(fm, sample)
        loss.backward()
        with torch.no_grad():  # the trainer's multiply_grads(1 / sample_size)
            for p in params:
                p.grad.mul_(1.0 / sample_size)
        grads.append([p.grad.detach().clone() for p in params])
        opt.step()
    return rates, grads, [p.detach().clone() for p in params]


def replay(optimizers: dict, models, dtype, rates, grads, on_step, eps_t=()):
    """Run several optimizers side by side from the initial weights, each fed the recorded gradients.

    ``optimizers`` maps a label to ``factory(params) -> optimizer``; ``on_step(t, params, opts)``
    gets, after step ``t`` (from 1), the label -> parameter list and label -> optimizer dicts. The
    optimizers labelled in ``eps_t`` get epsilon ``eps / sqrt(1 - beta2^t)`` at step ``t``.
    """
    params = {k: [models.init[n].to(dtype).clone() for n in models.names] for k in optimizers}
    opts = {k: make(params[k]) for k, make in optimizers.items()}
    for t, (rate, step_grads) in enumerate(zip(rates, grads), start=1):
        for k, opt in opts.items():
            for group in opt.param_groups:
                group["lr"] = rate
                if k in eps_t:
                    group["eps"] = ADAM_EPS / math.sqrt(1 - BETAS[1] ** t)
            for p, g in zip(params[k], step_grads):
                p.grad = g.clone()  # a copy each, in case an optimizer writes into its gradient
            opt.step()
            for p in params[k]:
                p.grad = None
        on_step(t, params, opts)
    return params, opts


def first_difference(models, rates, a: list, b: list, t: int) -> str | None:
    """Where two parameter lists first differ, for the report; None when every tensor is identical."""
    for n, x, y in zip(models.names, a, b):
        if not torch.equal(x, y):
            d = (x - y).abs()
            return (f"step {t}: {sum(not torch.equal(u, v) for u, v in zip(a, b))} tensors differ, first {n}: "
                    f"{int((d > 0).sum())} coordinates, max|d| {d.max().item():.3e} "
                    f"({d.max().item() / rates[t - 1]:.3e} lr), max {ulp_distance(x, y, rates[t - 1]):.1f} ulp of "
                    f"max(|theta|, lr)")
    return None


def optimizer_comparison(fs, models, samples, dtype, checks: Checks):
    name = dtype_name(dtype)
    rates, grads, fs_final = fairseq_trajectory(fs, models, samples, dtype)
    print(f"  [{name}] {len(rates)} steps along fairseq's trajectory (train mode, dropout {models.dropout}), "
          f"batches of {', '.join(str(int(s['ntokens'])) for s in samples)} target tokens, "
          f"lr {', '.join(f'{r:.6g}' for r in rates)}")

    def adam_kwargs(weight_decay):
        return dict(betas=BETAS, eps=ADAM_EPS, weight_decay=weight_decay, lr=LR)

    for wd in (0.0, WEIGHT_DECAY):
        makers = {"fairseq Adam": lambda ps, wd=wd: fs.Adam(ps, **adam_kwargs(wd)),
                  "FairseqAdam": lambda ps, wd=wd: FairseqAdam(ps, **adam_kwargs(wd))}
        if wd == 0:
            makers["torch Adam"] = lambda ps: torch.optim.Adam(ps, foreach=False, **adam_kwargs(0.0))
            makers["torch Adam, eps_t"] = lambda ps: torch.optim.Adam(ps, foreach=False, **adam_kwargs(0.0))
        else:
            makers["torch AdamW"] = lambda ps, wd=wd: torch.optim.AdamW(ps, foreach=False, **adam_kwargs(wd))
        first_diff = []
        info = []

        def on_step(t, params, opts):
            ref = params["fairseq Adam"]
            where = first_difference(models, rates, params["FairseqAdam"], ref, t)
            if where and not first_diff:
                first_diff.append(where)
            for k in ("torch Adam", "torch AdamW"):
                if k in params:
                    d = torch.cat([(x - y).abs().flatten() for x, y in zip(params[k], ref)])
                    info.append(f"    step {t}: {k} vs fairseq's Adam, max|d theta| {d.max().item():.3e} "
                                f"({d.max().item() / rates[t - 1]:.3e} lr), coordinates off by > 1e-3 lr: "
                                f"{(d > 1e-3 * rates[t - 1]).sum().item():,} of {d.numel():,}")
            if "torch Adam, eps_t" in params:
                ulps = max(ulp_distance(x, y, rates[t - 1]) for x, y in zip(params["torch Adam, eps_t"], ref))
                d = max(max_abs_diff(x, y) for x, y in zip(params["torch Adam, eps_t"], ref))
                info.append(f"    step {t}: torch Adam with eps_t = eps/sqrt(1 - beta2^t) vs fairseq's Adam, "
                            f"max|d theta| {d:.3e} ({d / rates[t - 1]:.3e} lr), at most {ulps:.0f} ulp of "
                            f"max(|theta|, lr)")

        params, opts = replay(makers, models, dtype, rates, grads, on_step, eps_t={"torch Adam, eps_t"})
        label = f"[{name}, weight_decay {wd:g}] FairseqAdam vs fairseq's Adam, {len(rates)} steps"
        checks.check(not first_diff, f"{label}: parameters bit-identical after every step"
                     + (f"; first difference at {first_diff[0]}" if first_diff else ""))
        fs_opt, our_opt = opts["fairseq Adam"], opts["FairseqAdam"]
        state_same = all(
            fs_opt.state[p]["step"] == our_opt.state[q]["step"]
            and torch.equal(fs_opt.state[p]["exp_avg"], our_opt.state[q]["exp_avg"])
            and torch.equal(fs_opt.state[p]["exp_avg_sq"], our_opt.state[q]["exp_avg_sq"])
            for p, q in zip(params["fairseq Adam"], params["FairseqAdam"]))
        checks.check(state_same, f"{label}: state (step, exp_avg, exp_avg_sq) bit-identical at the end")
        if wd == 0:
            # the replay of fairseq's Adam must land where fairseq's own training did
            checks.check(all(torch.equal(x, y) for x, y in zip(params["fairseq Adam"], fs_final)),
                         f"[{name}] replaying the recorded gradients through fairseq's Adam reproduces its trajectory")
        for line in info:
            print(line)
        del params, opts


def gradients_and_optimizers(fs, models, batches, checks: Checks):
    print(f"\nD. Gradients and optimizer (betas {BETAS}, eps {ADAM_EPS:g}; gradients are d(sum of loss)/d(theta) "
          f"divided by the batch's target tokens, as fairseq's trainer scales them)")
    for dtype in (torch.float64, torch.float32):
        model_gradients(fs, models, batches.samples[0], dtype, checks)
        optimizer_comparison(fs, models, batches.samples, dtype, checks)


def main() -> int:
    root = os.environ.get("ADAMDIST_DATA")
    if not root:
        print("ADAMDIST_DATA is not set: set it to the data root, the folder that holds iwslt14-de-en/",
              file=sys.stderr)
        return 2
    data_root = Path(root).expanduser()
    if importlib.util.find_spec("fairseq") is None:
        print("fairseq is not installed: this check runs in its own environment (fairseq==0.12.2, pip<24.1); "
              "see the 'Environment' section of this script's docstring", file=sys.stderr)
        return 2
    fs = load_fairseq()
    print(f"python {sys.version.split()[0]}  torch {torch.__version__}  numpy {np.__version__}  fairseq {fs.version} "
          f"({fs.path})  adamdist from {os.path.dirname(adamdist.__file__)}  threads {torch.get_num_threads()}")
    print("runtime patches:", "; ".join(fairseq_compat.PATCHES_APPLIED))
    print(f"data root: {data_root}")
    checks = Checks()
    enc = dictionaries(fs, data_root, checks)
    batches = batching(fs, enc, checks)
    models = build_models(fs, enc, checks)
    forward_comparison(fs, models, batches.samples[0], checks)
    gradients_and_optimizers(fs, models, batches, checks)

    print(f"\nSUMMARY: {len(checks.diffs)} difference(s), {len(checks.notes)} accepted difference(s) (NOTE)")
    for what in checks.diffs:
        print("  DIFF -", what)
    for what in checks.notes:
        print("  NOTE -", what)
    return 1 if checks.diffs else 0


if __name__ == "__main__":
    sys.exit(main())
