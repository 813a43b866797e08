"""IWSLT14 data pipeline, the fairseq transformer and the transformer experiment's analysis."""

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from adamdist.data import DataNotFoundError  # noqa: E402
from adamdist.data.iwslt import (Dictionary, batch_by_tokens, build_joint_dictionary, collate,  # noqa: E402
                                 iwslt14)
from adamdist.experiments import transformer as tx  # noqa: E402
from adamdist.models.transformer import (FAIRSEQ_README_VOCAB, label_smoothed_nll_loss,  # noqa: E402
                                         parameter_count, sinusoidal_positions, transformer_iwslt_de_en)
from adamdist.simulate import count_modes  # noqa: E402

TINY = (("embed_dim", 16), ("ffn_dim", 32), ("encoder_layers", 1), ("decoder_layers", 1), ("heads", 2))


def _have_iwslt():
    root = os.environ.get("ADAMDIST_DATA")
    return bool(root) and (Path(root) / "iwslt14-de-en" / "bpe10k" / "valid.de").is_file()


needs_data = pytest.mark.skipif(not _have_iwslt(),
                                reason="IWSLT14 de-en not found: set ADAMDIST_DATA to a folder holding "
                                       "iwslt14-de-en/bpe10k/valid.{de,en}")


# -- data ------------------------------------------------------------------------------------------------
def test_missing_data_names_files_and_folder(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        iwslt14("train", root=tmp_path)
    msg = str(err.value)
    assert "train.de" in msg and "train.en" in msg and str(tmp_path) in msg and "prepare-iwslt14.sh" in msg
    with pytest.raises(ValueError, match="split"):
        iwslt14("dev", root=tmp_path)


def test_misaligned_files_are_rejected(tmp_path):
    folder = tmp_path / "iwslt14-de-en" / "bpe10k"
    folder.mkdir(parents=True)
    (folder / "valid.de").write_text("a b\nc\n")
    (folder / "valid.en").write_text("x\n")
    with pytest.raises(ValueError, match="not aligned"):
        iwslt14("valid", root=tmp_path)


def test_dictionary_order_and_padding():
    d = build_joint_dictionary(["b a a", "c a b"], padding_factor=8)
    assert d.symbols[:4] == ("<s>", "<pad>", "</s>", "<unk>")
    assert d.symbols[4:7] == ("a", "b", "c")  # by count, ties alphabetical
    assert len(d) == 8 and d.symbols[7] == "madeupword0000"
    assert (d.bos, d.pad, d.eos, d.unk) == (0, 1, 2, 3)
    assert d.encode_line("a zz").tolist() == [4, 3, 2]
    assert len(build_joint_dictionary(["a"], padding_factor=1)) == 5


def test_batching_respects_max_tokens_and_covers_everything():
    rng = np.random.default_rng(0)
    src = rng.integers(1, 60, 500)
    tgt = rng.integers(1, 60, 500)
    batches = batch_by_tokens(src, tgt, 256, seed=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        assert len(b) * max(src[b].max(), tgt[b].max()) <= 256
    # a batch ends below 8 sentences or at a multiple of 8, except the final tail (fairseq's batch_by_size)
    assert sum(len(b) >= 8 and len(b) % 8 for b in batches) <= 1
    again = batch_by_tokens(src, tgt, 256, seed=3)
    assert all((a == b).all() for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="max_tokens"):
        batch_by_tokens([100], [5], 50)


@pytest.mark.parametrize("n,max_tokens,sizes", [
    (19, 1000, [3, 16]),  # all fit in one batch, but a batch only ends at a multiple of 8: the tail stays apart
    (43, 100, [3, 8, 8, 8, 8, 8]),  # 10 fit; each overflow closes the batch at its last multiple of 8
    (40, 100, [8, 8, 8, 8, 8]),
])
def test_batching_follows_fairseqs_rule_for_leftovers(n, max_tokens, sizes):
    """Worked by hand from fairseq's batch_by_size_vec (equal lengths of 10 tokens)."""
    batches = batch_by_tokens([10] * n, [10] * n, max_tokens, seed=0)
    assert sorted(len(b) for b in batches) == sizes
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))


def test_batching_closes_a_tail_that_overflows_alone():
    """Worked by hand: eight 1-token sentences end a batch at 8; two 10s wait as a tail (10 x 10 = 100 fits);
    a 50 overflows both the batch (11 x 50) and the tail (3 x 50), so the eight and the two 10s are closed
    and the 50 starts afresh."""
    lengths = [1] * 8 + [10, 10, 50]
    batches = batch_by_tokens(lengths, lengths, 100, seed=0)
    assert sorted(sorted(b.tolist()) for b in batches) == [list(range(8)), [8, 9], [10]]


def test_collate_pads_and_shifts_like_fairseq():
    d = Dictionary(["<s>", "<pad>", "</s>", "<unk>", "a", "b", "c", "d"])
    src = [d.encode_line("a"), d.encode_line("a b c")]
    tgt = [d.encode_line("d d"), d.encode_line("c")]
    b = collate(src, tgt, d)
    # longest source first; sources left-padded, targets right-padded
    assert b.src_tokens.tolist() == [[4, 5, 6, 2], [1, 1, 4, 2]]
    assert b.target.tolist() == [[6, 2, 1], [7, 7, 2]]
    assert b.prev_output_tokens.tolist() == [[2, 6, 1], [2, 7, 7]]
    assert b.src_lengths.tolist() == [4, 2] and b.ntokens == 5


@needs_data
def test_real_valid_slice():
    corpus = iwslt14("valid")
    assert len(corpus) == 7283 and corpus.src[0] == "es ist diese pyrami@@ de ."
    raw = iwslt14("valid", bpe=False)
    assert raw.tgt[0] == corpus.tgt[0].replace("@@ ", "")
    small = corpus.head(200)
    d = build_joint_dictionary(list(small.src) + list(small.tgt))
    assert len(d) % 8 == 0
    src = [d.encode_line(s) for s in small.src]
    tgt = [d.encode_line(t) for t in small.tgt]
    batches = batch_by_tokens([len(s) for s in src], [len(t) for t in tgt], 512)
    b = collate([src[i] for i in batches[0]], [tgt[i] for i in batches[0]], d)
    assert b.src_tokens.shape[0] * max(b.src_tokens.shape[1], b.target.shape[1]) <= 512
    assert (b.target.ne(d.pad).sum(1) == b.prev_output_tokens.ne(d.pad).sum(1)).all()


# -- model -----------------------------------------------------------------------------------------------
def test_parameter_count_formula():
    assert parameter_count(0, 0) == 31_543_296
    assert parameter_count(*FAIRSEQ_README_VOCAB) == 39_469_056
    assert parameter_count(10_000, 10_000, share_all_embeddings=True) == 31_543_296 + 512 * 10_000
    with pytest.raises(ValueError, match="joint"):
        parameter_count(10, 12, share_all_embeddings=True)
    model = transformer_iwslt_de_en(1000)
    assert model.num_parameters() == parameter_count(1000, 1000) == 31_543_296 + 1024 * 1000
    # decoder output projection is the decoder embedding: no extra tensor
    names = dict(model.named_parameters())
    assert "decoder.embed_tokens.weight" in names and not any("output_projection" in n for n in names)


def test_tiny_forward_backward_and_masks():
    torch.manual_seed(0)
    model = transformer_iwslt_de_en(40, **dict(TINY))
    src = torch.tensor([[1, 1, 5, 6, 2], [7, 8, 9, 10, 2]])
    prev = torch.tensor([[2, 11, 12, 1], [2, 13, 14, 15]])
    tgt = torch.tensor([[11, 12, 2, 1], [13, 14, 15, 2]])
    model.eval()
    logits = model(src, prev)
    assert logits.shape == (2, 4, 40)
    # causality: changing a later decoder input leaves earlier outputs unchanged
    prev2 = prev.clone()
    prev2[1, 3] = 20
    assert torch.allclose(model(src, prev2)[1, :3], logits[1, :3], atol=1e-6)
    # left padding of the source does not change the output of the real tokens' sentence
    out_a = model(torch.tensor([[5, 6, 2]]), prev[:1])
    assert torch.allclose(out_a, logits[:1], atol=1e-5)
    model.train()
    loss, nll = label_smoothed_nll_loss(model(src, prev), tgt)
    loss.backward()
    emb = model.encoder.embed_tokens.weight.grad
    assert emb[1].abs().sum() == 0  # padding row gets no gradient
    assert emb[3].abs().sum() == 0  # a token absent from the batch: an exactly zero row
    assert emb[5].abs().sum() > 0


def test_label_smoothing_matches_manual():
    torch.manual_seed(1)
    v, eps = 7, 0.1
    logits = torch.randn(2, 3, v)
    target = torch.tensor([[4, 2, 1], [5, 6, 2]])  # one pad (1)
    loss, nll = label_smoothed_nll_loss(logits, target, eps, ignore_index=1)
    lp = torch.log_softmax(logits, -1).reshape(-1, v)
    manual, manual_nll = 0.0, 0.0
    for row, y in zip(lp, target.reshape(-1).tolist()):
        if y == 1:
            continue
        q = torch.full((v,), eps / (v - 1))
        q[y] = 1 - eps  # fairseq: (1 - eps - eps_i) on y plus eps_i on every class
        manual += float(-(q * row).sum())
        manual_nll += float(-row[y])
    assert math.isclose(float(loss), manual, rel_tol=1e-5)
    assert math.isclose(float(nll), manual_nll, rel_tol=1e-6)


def test_sinusoidal_positions_fairseq_layout():
    emb = sinusoidal_positions(10, 8, padding_idx=1)
    assert emb[1].abs().sum() == 0
    pos, k = 5, 2
    freq = math.exp(-k * math.log(10000) / 3)
    assert math.isclose(float(emb[pos, k]), math.sin(pos * freq), rel_tol=1e-5)
    assert math.isclose(float(emb[pos, 4 + k]), math.cos(pos * freq), rel_tol=1e-5)


# -- experiment analysis ---------------------------------------------------------------------------------
def test_inverse_sqrt_schedule():
    f = lambda k: tx.inverse_sqrt_factor(k, 5e-4, 4000, 1e-7)  # noqa: E731
    assert math.isclose(f(0) * 5e-4, 1e-7)
    assert math.isclose(f(4000), 1.0) and math.isclose(f(16000), 0.5)
    assert tx.inverse_sqrt_factor(7, 5e-4, 0, 1e-7) == 1.0


def test_mode_locations_agree_with_count_modes():
    rng = np.random.default_rng(0)
    edges = np.linspace(-4, 4, 161)
    for centres in ([0.0], [-2.0, 0.0, 2.0], [-3, -1.5, 0, 1.5, 3]):
        x = np.concatenate([rng.normal(c, 0.15, 20_000) for c in centres])
        h, _ = np.histogram(x, edges)
        locs = tx.mode_locations(h, edges)
        assert len(locs) == count_modes(h) == len(centres)
        assert np.allclose(locs, centres, atol=0.1)
    assert len(tx.mode_locations(np.zeros(160), edges)) == 0


def test_hill_estimator():
    rng = np.random.default_rng(1)
    assert abs(tx.hill_tail_index(rng.standard_cauchy(200_000)) - 1) < 0.1
    assert abs(tx.hill_tail_index(rng.standard_t(3, 200_000)) - 3) < 0.5
    assert tx.hill_tail_index(rng.normal(size=200_000)) > 4
    assert math.isnan(tx.hill_tail_index(np.zeros(100)))


def test_layer_kind_and_pick():
    assert tx.layer_kind("encoder.embed_tokens.weight") == "embedding"
    assert tx.layer_kind("decoder.layers.3.encoder_attn.k_proj.bias") == "attention"
    assert tx.layer_kind("decoder.layers.3.encoder_attn_layer_norm.weight") == "layer norm"
    assert tx.layer_kind("encoder.layers.0.fc2.weight") == "ffn"
    numels = {"a": 5, "b": 20_000, "c": 30_000}
    chosen = tx.pick_layer(sorted(numels), seed=4, numels=numels, min_numel=10_000)
    assert chosen in ("b", "c")
    assert all(tx.pick_layer(sorted(numels), seed=s, numels=numels, min_numel=10_000) != "a" for s in range(20))


def test_two_sample_ks():
    assert tx.two_sample_ks([0, 1, 2], [0, 1, 2]) == 0
    assert tx.two_sample_ks([0, 0], [1, 1]) == 1


@needs_data
def test_tiny_run_replays_exactly(tmp_path):
    """Capture on a tiny model: Adam replayed on the captured gradients gives the captured updates."""
    cfg = tx.TransformerRun(steps=3, max_tokens=256, max_sentences=120, model_overrides=TINY, lr=1e-2,
                            warmup_updates=0, beta1=0.0, sample_size=500, bins=80)
    upd = tx.run(cfg, folder=tmp_path, progress=False)
    grad = tx.gradients(cfg, folder=tmp_path)  # a cache hit: run stored it
    assert upd.steps.tolist() == [1, 2, 3] and len(list(tmp_path.glob("*.npz"))) == 2
    name = "encoder.layers.0.fc1.weight"
    assert cfg.optimizer == "fairseq" and cfg.simulated_optimizer == "fairseq_adam"
    sims = tx.hypothesis_runs(upd, grad, name, cfg.beta1, cfg.beta2, n=2000, optimizer=cfg.simulated_optimizer)
    replay = sims["replay"].samples[name]
    real = upd.samples[name]
    # lr = 1e-2 makes the float32 rounding of theta negligible (< 1e-4 relative)
    assert np.nanmax(np.abs(replay - real)) < 1e-3
    # torch's Adam, eps after the bias correction, does not replay fairseq's: gradients near eps exist here
    other = tx.hypothesis_runs(upd, grad, name, cfg.beta1, cfg.beta2, n=10, optimizer="adam")["replay"]
    assert np.nanmax(np.abs(other.samples[name] - real)) > 1e-3
    table = tx.ks_table(upd, sims, name)
    assert set(table["model"]) == set(sims)
    err = tx.replay_error(upd, sims["replay"], name)
    assert (err["max_abs_error"] < 1e-3).all() and (err["share_off"] == 0).all()
    modes = tx.replay_modes(upd, grad, cfg.beta1, cfg.beta2, cfg.eps, names=[name], optimizer=cfg.simulated_optimizer)
    assert (modes.modes_captured == modes.modes_exact).all()  # no rounding artefacts at lr = 1e-2
    props = tx.gradient_properties(grad, ["encoder.embed_tokens.weight"])
    assert (props["zero_fraction"] > 0.3).all()  # most of a 120-sentence vocabulary is absent from a batch


def _grad_stats(samples):
    from adamdist.results import UpdateStats

    steps, k = samples.shape
    z = np.zeros((steps, 1))
    return UpdateStats(steps=np.arange(1, steps + 1), names=["w"], edges=[-1.0, 1.0], count=z + k, mean=z,
                       var=z + 1, abs_var=z, skew=z, nonfinite=z, hist=np.ones((steps, 1, 1)), underflow=z,
                       overflow=z, samples={"w": samples})


def test_gradient_persistence():
    rng = np.random.default_rng(0)
    fixed = _grad_stats(np.abs(rng.normal(size=(12, 500))) + 0.1)
    noise = _grad_stats(rng.normal(size=(12, 500)))
    assert tx.gradient_persistence(fixed).sign_agreement.iloc[0] == 1.0
    assert 0.5 <= tx.gradient_persistence(noise).sign_agreement.iloc[0] < 0.75
    assert tx.gradient_persistence(fixed).snr.iloc[0] > tx.gradient_persistence(noise).snr.iloc[0]


@pytest.mark.parametrize("which", ["quick", "paper"])
def test_configs_have_the_three_runs_of_the_issue(which):
    from adamdist.experiments import transformer as tx

    c = tx.configs(which)
    assert set(c) == {"theory", "fairseq", "fairseq_no_warmup"}
    assert c["theory"].beta1 == 0 and c["theory"].warmup_updates == 0
    assert (c["fairseq"].beta1, c["fairseq"].beta2, c["fairseq"].warmup_updates) == (0.9, 0.98, 4000)
    nw = c["fairseq_no_warmup"]
    assert (nw.lr, nw.warmup_updates, nw.beta1, nw.beta2) == (3e-4, 0, 0.9, 0.98)
    assert len({x.split for x in c.values()}) == 1
    with pytest.raises(ValueError, match="profile"):
        tx.configs("huge")


def test_the_run_chooses_whose_adam():

    from adamdist.optim import FairseqAdam

    params = [torch.nn.Parameter(torch.ones(2))]
    cfg = tx.TransformerRun()
    assert cfg.optimizer == "fairseq"  # the paper ran fairseq
    assert isinstance(tx._optimizer(cfg, params), FairseqAdam)
    torch_cfg = dataclasses.replace(cfg, optimizer="torch")
    assert type(tx._optimizer(torch_cfg, params)) is torch.optim.Adam and torch_cfg.simulated_optimizer == "adam"
    assert type(tx._optimizer(dataclasses.replace(torch_cfg, weight_decay=1e-4), params)) is torch.optim.AdamW
    with pytest.raises(ValueError, match="optimizer must be 'fairseq' or 'torch'"):
        tx._optimizer(dataclasses.replace(cfg, optimizer="sgd"), params)


def test_eps_placement_table_separates_the_two_adams():
    """Gradients from 1e-12 to 1: fairseq's Adam equals torch's with eps_t, and differs from torch's plain
    Adam exactly where |g| is within a few eps."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((6, 4000)) * 10.0 ** rng.uniform(-12, 0, (6, 4000))
    table = tx.eps_placement_table(_grad_stats(g), 0.9, 0.98, eps=1e-8)
    assert table.step.tolist() == list(range(1, 7)) and (table.coordinates == 4000).all()
    assert (table.max_abs_diff_eps_t < 1e-12).all()
    # step 1: |u| = x / (x + 1) against x / (x + 7.07) for x = |g| / eps, apart by up to 0.454 at x = 2.66
    assert 0.44 < table.max_abs_diff_torch[0] < 0.455
    # a quarter of the log-uniform magnitudes lie below 10 eps_t; eps_t -> eps as t grows, and so the gap closes
    assert (table.share_near_eps > 0.4).all() and table.share_differs[0] > 0.2
    assert (np.diff(table.share_differs) < 0).all()
    assert (table.share_zero == 0).all()
    zeroed = g.copy()
    zeroed[:, :1000] = 0.0  # a quarter exactly zero: an update of 0 for both, near eps for the count
    zeroed = tx.eps_placement_table(_grad_stats(zeroed), 0.9, 0.98, eps=1e-8)
    assert (zeroed.share_zero == 0.25).all() and (zeroed.share_near_eps >= 0.25).all()
    large = tx.eps_placement_table(_grad_stats(g * 1e6), 0.9, 0.98, eps=1e-8)
    assert (large.share_differs <= table.share_differs).all() and large.share_differs[0] < table.share_differs[0]


# -- the chapter's verdicts ------------------------------------------------------------------------------
def test_update_bound_formula_and_that_adam_respects_it():
    assert tx.update_bound(1, 0.9, 0.98) == pytest.approx(1.0)
    for t in (2, 5, 20):
        assert tx.update_bound(t, 0.0, 0.98) ** 2 == pytest.approx((1 - 0.98 ** t) / 0.02)
    # a growing bound with momentum, finite because beta1**2 < beta2
    b = [tx.update_bound(t, 0.9, 0.98) for t in range(1, 30)]
    assert all(np.diff(b) > 0) and b[-1] < 0.1 / math.sqrt(0.02) / (1 - 0.9 / math.sqrt(0.98))
    # Adam (eps = 0) on gradients built to be adversarial: large once, then tiny, or Cauchy noise
    rng = np.random.default_rng(0)
    g = np.concatenate([rng.standard_cauchy((12, 500)),
                        np.where(np.arange(12)[:, None] == 0, 1.0, 1e-6) * np.ones((12, 500))], axis=1)
    for b1 in (0.0, 0.9):
        m = v = 0.0
        for t in range(1, 13):
            m = b1 * m + (1 - b1) * g[t - 1]
            v = 0.98 * v + 0.02 * g[t - 1] ** 2
            u = (m / (1 - b1 ** t)) / np.sqrt(v / (1 - 0.98 ** t))
            assert np.abs(u).max() <= tx.update_bound(t, b1, 0.98) * (1 + 1e-12)
    for bad in ((0, 0.9, 0.98), (2, 1.0, 0.98), (2, 0.9, 1.0), (1.5, 0.9, 0.98)):
        with pytest.raises(ValueError):
            tx.update_bound(*bad)


def test_replay_table_stays_within_the_bound():
    rng = np.random.default_rng(2)
    g = _grad_stats(rng.standard_t(1.5, size=(8, 400)))
    table = tx.replay_table(g, g, 0.9, 0.98, 1e-8, optimizer="fairseq_adam")
    assert table.step.tolist() == list(range(1, 9)) and set(table.name) == {"w"}
    assert (table.var_exact <= table.bound).all() and (table.max_abs_exact ** 2 <= table.bound).all()
    assert table.bound.iloc[0] == pytest.approx(1.0)
    assert list(tx.replay_modes(g, g, 0.9, 0.98, optimizer="fairseq_adam").columns) == [
        "name", "kind", "step", "modes_captured", "modes_exact"]


def _evidence(good: bool):
    """Synthetic inputs of claims(): every claim supported (good) or every claim contradicted."""
    steps = np.arange(1, 11)
    rows = []
    for run in ("theory", "fairseq"):
        for name in ("a.fc1.weight", "b.layer_norm.weight"):
            for m in steps:
                bound = tx.update_bound(int(m), 0.0 if run == "theory" else 0.9, 0.98) ** 2
                rows.append({"run": run, "name": name, "kind": tx.layer_kind(name), "step": int(m),
                             "modes_captured": 5, "modes_exact": 5 if good else 1,
                             "var_tensor": 1.42 if m == 1 else 0.9, "var_captured": 1.42 if m == 1 else 0.9,
                             "var_exact": (0.99 if m == 1 else 0.9) if good else 2 * bound, "bound": bound})
    replay = pd.DataFrame(rows)
    shares = pd.concat([pd.DataFrame({"run": run, "step": steps, "share_not_rejected": 0.95 if good else 0.1,
                                      "var_ratio_median": 1.05 if good else 0.05}) for run in ("theory", "fairseq")])
    hyp_rows = []
    for name in ("a.fc1.weight", "b.layer_norm.weight"):
        for model, within, mean_ks in ((tx.PAPER_MODEL, 9 if good else 1, 0.02 if good else 0.3),
                                       (tx.MEMORY_MODEL, 10 if good else 0, 0.01 if good else 0.5),
                                       (tx.MARGINAL_MODEL, 2, 0.3)):
            for reference in (tx.EXACT, tx.CAPTURED):
                hyp_rows.append({"reference": reference, "name": name, "model": model, "mean_ks": mean_ks,
                                 "steps_within_band": within, "steps": 10})
    return dict(replay=replay, law_shares=shares, hypothesis=pd.DataFrame(hyp_rows), layer="a.fc1.weight",
                setting="synthetic")



def test_claims_supported_case():
    from adamdist.verdict import CLAIM_COLUMNS, VERDICTS, claims_table

    rows = tx.claims(**_evidence(True), extra="ignored")
    table = claims_table(rows)
    assert list(table.columns) == list(CLAIM_COLUMNS) and len(table) == 6
    assert table.verdict.tolist() == ["supported"] * 6 and set(table.verdict) <= set(VERDICTS)
    assert all(s.startswith(tx.SECTION) for s in table.section)
    assert all("rule:" in m for m in table.measured)
    # the step-1 excess over B_1^2 = 1 is float32's, not Adam's: named in the row and not held against the claim
    assert "float32 rounding" in table.measured[0] and "1.42" in table.measured[0]
    assert "a.fc1.weight: up to 5 modes as captured, 5 replayed" in table.measured[3]


def test_claims_contradicted_case():
    table = pd.DataFrame(tx.claims(**_evidence(False)))
    assert table.verdict.tolist() == ["contradicted"] * 6
    assert "'fairseq' 2 → 0 of 2" in table.measured[3]
    assert "for 0 of 2 tensors" in table.measured[4]


def test_claims_partly_supported_case():
    ev = _evidence(True)
    shares = ev["law_shares"]
    shares.loc[(shares.run == "theory") & (shares.step > 6), "share_not_rejected"] = 0.1  # holds at 60% of steps
    replay = ev["replay"]
    replay.loc[(replay.name == "b.layer_norm.weight") & (replay.run == "fairseq"), "modes_exact"] = 1
    replay.loc[(replay.name == "a.fc1.weight") & (replay.run == "fairseq"), "modes_captured"] = 5
    extra = replay[replay.name == "a.fc1.weight"].assign(name="c.fc2.weight", modes_exact=1)
    ev["replay"] = pd.concat([replay, extra], ignore_index=True)  # 3 captured many-peaked, 1 of them replayed
    table = pd.DataFrame(tx.claims(**ev))
    assert table.verdict[2] == "partly supported" and "at 60% of steps" in table.measured[2]
    assert table.verdict[3] == "partly supported"


def test_claims_checks_its_inputs():
    ev = _evidence(True)
    with pytest.raises(ValueError, match="replay must be a DataFrame"):
        tx.claims(**{**ev, "replay": ev["replay"].drop(columns="var_exact")})
    with pytest.raises(ValueError, match="law_shares has no rows"):
        tx.claims(**{**ev, "law_shares": ev["law_shares"].iloc[:0]})
    with pytest.raises(ValueError, match="run"):
        tx.claims(**{**ev, "law_shares": ev["law_shares"][ev["law_shares"].run == "theory"]})
    with pytest.raises(ValueError, match="bootstrap"):
        tx.claims(**{**ev, "hypothesis": ev["hypothesis"][ev["hypothesis"].model != tx.MARGINAL_MODEL]})
    with pytest.raises(ValueError, match="many"):
        tx.claims(**ev, many=1)
    with pytest.raises(ValueError, match="hypothesis must be a DataFrame"):
        tx.claims(**{**ev, "hypothesis": "not a frame"})
