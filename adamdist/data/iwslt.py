"""IWSLT14 German-English as fairseq prepares it, and fairseq-style batching.

The files are the output of fairseq's ``examples/translation/prepare-iwslt14.sh``
(Moses tokenisation, lower-casing, 10k joint BPE merges), laid out under
:func:`adamdist.data.data_root` as::

    iwslt14-de-en/{train,valid,test}.{de,en}          tokenised text, no BPE
    iwslt14-de-en/bpe10k/{train,valid,test}.{de,en}   the same with BPE ("@@ " joiner)
    iwslt14-de-en/bpe10k/code                         the BPE codes

:func:`prepare_iwslt14` produces them on your machine (they are never downloaded
behind your back): it runs fairseq's script, which fetches the corpus, Moses and
subword-nmt, and copies its output into this layout. By hand, the same is::

    git clone https://github.com/facebookresearch/fairseq
    cd fairseq/examples/translation && bash prepare-iwslt14.sh
    # then copy iwslt14.tokenized.de-en/{train,valid,test}.{de,en} and code to
    #   $ADAMDIST_DATA/iwslt14-de-en/bpe10k/
    # and tmp/{train,valid,test}.{de,en} to $ADAMDIST_DATA/iwslt14-de-en/

fairseq's ``valid`` split is every 23rd line of the cleaned training corpus, so
it is a sample of the training distribution; the book's ``quick`` profile trains
on it when ``train`` is absent (and says so).

What mirrors fairseq (``fairseq-preprocess --joined-dictionary`` and
``LanguagePairDataset``):

* :class:`Dictionary`: ``<s>=0, <pad>=1, </s>=2, <unk>=3``, then symbols by
  decreasing count (ties alphabetical), padded with ``madeupwordNNNN`` to a
  multiple of 8 (fairseq's default ``--padding-factor 8``);
* every sentence gets ``</s>`` appended; sources are left-padded, targets
  right-padded; ``prev_output_tokens`` is the target with ``</s>`` moved to the
  front (teacher forcing);
* :func:`batch_by_tokens`: sentences sorted by length, batches filled while
  ``(batch size) x (longest sentence)`` stays within ``max_tokens``, batch
  sizes below 8 or multiples of 8, with fairseq's rule for what is left over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._validation import check_int, check_scalar
from . import DataNotFoundError, data_root

__all__ = [
    "iwslt14", "prepare_iwslt14", "ParallelCorpus", "Dictionary", "build_joint_dictionary",
    "batch_by_tokens", "collate", "Batch", "FOLDER", "SPLITS",
]

FOLDER = "iwslt14-de-en"
SPLITS = ("train", "valid", "test")
LANGS = ("de", "en")
PREPARE_SCRIPT = Path(__file__).with_name("prepare_iwslt14.sh")
"""The shell wrapper around fairseq's ``prepare-iwslt14.sh`` (shipped with the package)."""


@dataclass(frozen=True)
class ParallelCorpus:
    """Aligned sentence pairs of one split (lists of whitespace-tokenised lines).

    Attributes
    ----------
    split : str
    src, tgt : tuple of str
        German (source) and English (target) lines; ``src[i]`` translates to ``tgt[i]``.
    bpe : bool
        Whether the lines carry fairseq's BPE (``"@@ "`` joiners).
    folder : pathlib.Path
        Where the files were read from.
    """

    split: str
    src: tuple
    tgt: tuple
    bpe: bool
    folder: Path

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int) -> "ParallelCorpus":
        """The first ``n`` pairs (for tests and tiny runs)."""
        n = check_int(n, "n", low=0)
        return ParallelCorpus(self.split, self.src[:n], self.tgt[:n], self.bpe, self.folder)


def _missing_message(folder: Path, missing: Sequence[Path], split: str) -> str:
    names = ", ".join(str(p) for p in missing)
    hint = ""
    if split == "train":
        hint = (" The offline copy used by the book holds only 'valid' and 'test'; the quick profile "
                "trains on 'valid' (every 23rd line of fairseq's cleaned training corpus).")
    return (f"IWSLT14 de-en split {split!r} not found: missing {names} (searched folder {folder}; "
            f"set ADAMDIST_DATA to the folder holding '{FOLDER}/'). Produce the files with fairseq's "
            f"examples/translation/prepare-iwslt14.sh: adamdist.data.iwslt.prepare_iwslt14() runs it and "
            f"lays the files out (see adamdist.data.iwslt's docstring); nothing is downloaded "
            f"automatically.{hint}")


def _split_files(base: Path, split: str, bpe: bool) -> list[Path]:
    """The two files of one split under ``base = root/iwslt14-de-en``, in :data:`LANGS` order."""
    folder = base / "bpe10k" if bpe else base
    return [folder / f"{split}.{lang}" for lang in LANGS]


def _expected_files(base: Path) -> list[Path]:
    return ([p for bpe in (False, True) for split in SPLITS for p in _split_files(base, split, bpe)]
            + [base / "bpe10k" / "code"])


def prepare_iwslt14(root=None, *, fairseq=None, archive=None, timeout: float = 3600.0) -> Path:
    """Prepare IWSLT14 de-en with fairseq's ``prepare-iwslt14.sh`` into the layout :func:`iwslt14` reads.

    Runs :data:`PREPARE_SCRIPT`, which takes fairseq's script (from ``fairseq``, or
    from a pinned fairseq commit fetched with git), lets it download the corpus, Moses
    and subword-nmt, tokenise, lower-case and learn 10,000 joint BPE merges, and copies
    the result to ``root/iwslt14-de-en/``. This is what chapter 8 does on Colab and
    the site's workflow on its runner. It needs ``bash``, ``git``, ``perl``,
    ``python3`` and ``wget``, and the network (or ``archive``).

    Parameters
    ----------
    root : path, optional
        Data root; defaults to :func:`adamdist.data.data_root`.
    fairseq : path, optional
        An existing fairseq checkout to take the script from.
    archive : path, optional
        A local copy of ``de-en.tgz`` (the script's download then is not needed).
    timeout : float
        Seconds the whole preparation may take (default one hour).

    Returns
    -------
    pathlib.Path
        The folder ``root/iwslt14-de-en``.

    Raises
    ------
    DataNotFoundError
        When the script fails or leaves any file of the layout missing (fairseq's
        script exits with status 0 when its download fails): the message names the
        missing files and ends with the script's last lines of output.
    """
    timeout = check_scalar(timeout, "timeout", 0.0, low_open=True)
    base = Path(data_root() if root is None else root).expanduser() / FOLDER
    env = dict(os.environ)
    for name, arg, value in (("FAIRSEQ_DIR", "fairseq", fairseq), ("IWSLT14_TGZ", "archive", archive)):
        env.pop(name, None)
        if value is not None:
            if not Path(value).expanduser().exists():
                raise FileNotFoundError(f"{arg}: {value} does not exist")
            env[name] = str(Path(value).expanduser().resolve())
    bash = shutil.which("bash")
    if bash is None:
        raise DataNotFoundError("prepare_iwslt14 needs bash (fairseq's script is a bash script)")
    # Written to a temporary folder first and moved at the end, so that a failed run never
    # leaves a half-prepared data set that iwslt14() would read.
    staging = base.with_name(FOLDER + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        run = subprocess.run([bash, str(PREPARE_SCRIPT), str(staging)], env=env, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataNotFoundError(f"prepare_iwslt14: fairseq's script did not finish within {timeout:g} s") from None
    missing = [p for p in _expected_files(staging) if not p.is_file() or p.stat().st_size == 0]
    if run.returncode != 0 or missing:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        names = ", ".join(p.relative_to(staging).as_posix() for p in missing) or "none"
        raise DataNotFoundError(f"prepare_iwslt14: fairseq's prepare-iwslt14.sh did not produce IWSLT14 de-en "
                                f"(exit status {run.returncode}; missing: {names}). Its last output:\n{tail}")
    base.mkdir(parents=True, exist_ok=True)
    for path in _expected_files(staging):
        target = base / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)
    return base


def iwslt14(split: str = "valid", *, bpe: bool = True, root=None) -> ParallelCorpus:
    """Load one split of IWSLT14 de-en as prepared by fairseq.

    Parameters
    ----------
    split : {"train", "valid", "test"}
    bpe : bool
        Read the BPE'd files under ``bpe10k/`` (what the model trains on), else
        the tokenised text before BPE.
    root : path, optional
        Data root; defaults to :func:`adamdist.data.data_root`.

    Returns
    -------
    ParallelCorpus

    Raises
    ------
    DataNotFoundError
        When a file of the split is missing; the message names the files and
        the folder searched.
    ValueError
        For an unknown split, or when the two sides have different line counts.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    base = Path(data_root() if root is None else root).expanduser() / FOLDER
    paths = _split_files(base, split, bpe)
    folder = paths[0].parent
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataNotFoundError(_missing_message(folder, missing, split))
    src, tgt = (tuple(p.read_text(encoding="utf-8").splitlines()) for p in paths)
    if len(src) != len(tgt):
        raise ValueError(f"{paths[0]} has {len(src)} lines but {paths[1]} has {len(tgt)}: not aligned")
    return ParallelCorpus(split, src, tgt, bpe, folder)


class Dictionary:
    """fairseq's ``Dictionary``: symbol <-> index, with its four special symbols first.

    Build one with :func:`build_joint_dictionary`.
    """

    bos_word, pad_word, eos_word, unk_word = "<s>", "<pad>", "</s>", "<unk>"

    def __init__(self, symbols: Sequence[str]):
        specials = [self.bos_word, self.pad_word, self.eos_word, self.unk_word]
        if list(symbols[:4]) != specials:
            raise ValueError(f"the first four symbols must be {specials}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be unique")
        self.symbols = tuple(symbols)
        self.indices = {s: i for i, s in enumerate(self.symbols)}
        self.bos, self.pad, self.eos, self.unk = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.symbols)

    def index(self, symbol: str) -> int:
        """Index of ``symbol``, or of ``<unk>`` when unknown."""
        return self.indices.get(symbol, self.unk)

    def encode_line(self, line: str) -> np.ndarray:
        """Whitespace tokens to indices, with ``</s>`` appended (fairseq's ``append_eos=True``)."""
        ids = [self.index(tok) for tok in line.split()]
        ids.append(self.eos)
        return np.asarray(ids, dtype=np.int64)

    def string(self, ids: Iterable[int]) -> str:
        """Indices back to text, dropping padding and ``</s>``."""
        return " ".join(self.symbols[i] for i in ids if i not in (self.pad, self.eos))


def build_joint_dictionary(lines: Iterable[str], padding_factor: int = 8) -> Dictionary:
    """A joint source+target dictionary as ``fairseq-preprocess --joined-dictionary`` builds it.

    Parameters
    ----------
    lines : iterable of str
        All training lines of both languages (BPE'd).
    padding_factor : int
        The size is rounded up to a multiple of this with ``madeupwordNNNN``
        symbols (fairseq's default 8; use 1 for no padding).

    Notes
    -----
    fairseq counts ``</s>`` once per line (it is a special symbol, so this only
    changes its count) and orders the other symbols by decreasing count, ties
    broken alphabetically (it sorts before ``Counter.most_common``).
    """
    check_int(padding_factor, "padding_factor", low=1)
    counts = Counter()
    for line in lines:
        counts.update(line.split())
    specials = [Dictionary.bos_word, Dictionary.pad_word, Dictionary.eos_word, Dictionary.unk_word]
    for s in specials:
        counts.pop(s, None)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    symbols = specials + [s for s, _ in ordered]
    i = 0
    while len(symbols) % padding_factor:
        symbols.append(f"madeupword{i:04d}")
        i += 1
    return Dictionary(symbols)


def batch_by_tokens(src_lengths, tgt_lengths, max_tokens: int, *, seed: int = 0,
                    batch_size_multiple: int = 8, max_positions: int = 1024) -> list[np.ndarray]:
    """Group sentence indices into batches of at most ``max_tokens`` padded tokens.

    fairseq's ``LanguagePairDataset.ordered_indices`` + ``batch_by_size``
    (``data_utils_fast.batch_by_size_vec``), rule for rule: indices are
    shuffled (seeded), then stably sorted by target and then by source length,
    so each batch holds sentences of similar length. A running batch only
    ever ends at a size below ``batch_size_multiple`` or a multiple of it;
    the sentences read since that point wait as a tail. When adding a sentence
    would take ``len(batch) * longest`` past ``max_tokens``, the running batch
    is closed and the tail starts the next one (if the tail alone overflows,
    it is closed too and the sentence starts afresh). At the end the tail is a
    batch of its own, so 19 equal sentences that fit together still give 16 +
    3. Pairs longer than ``max_positions`` are dropped, as fairseq does. The
    list of batches is then shuffled (seeded), as fairseq does every epoch.

    Returns
    -------
    list of int arrays
        Indices of each batch.
    """
    src = np.asarray(src_lengths, dtype=np.int64)
    tgt = np.asarray(tgt_lengths, dtype=np.int64)
    if src.shape != tgt.shape or src.ndim != 1:
        raise ValueError("src_lengths and tgt_lengths must be 1-d arrays of the same length")
    check_int(max_tokens, "max_tokens", low=1)
    check_int(batch_size_multiple, "batch_size_multiple", low=1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(src.size)
    order = order[np.argsort(tgt[order], kind="mergesort")]
    order = order[np.argsort(src[order], kind="mergesort")]
    sizes = np.maximum(src, tgt)
    order = order[sizes[order] <= max_positions]
    if sizes[order].max(initial=0) > max_tokens:
        raise ValueError(f"max_tokens={max_tokens} is smaller than the longest sentence "
                         f"({int(sizes[order].max())} tokens)")
    lengths = sizes[order].tolist()
    # ends[-1] is where the running batch ends now; the entries before it close finished batches
    ends, start, batch_longest, tail_longest = [0], 0, 0, 0
    for pos, n in enumerate(lengths):
        tail_longest = max(tail_longest, n)
        longest = max(batch_longest, tail_longest)
        count = pos + 1 - start
        overflow = count * longest > max_tokens
        if overflow:
            if tail_longest * (pos + 1 - ends[-1]) > max_tokens:  # the tail alone overflows: close it too
                ends.append(pos)
                tail_longest = n
            start = ends[-1]
            ends.append(ends[-1])
            longest = tail_longest
        if overflow or count < batch_size_multiple or count % batch_size_multiple == 0:
            ends[-1] = pos + 1
            batch_longest, tail_longest = longest, 0
    cuts = ends if ends[-1] != len(lengths) else ends[:-1]
    batches = [b.astype(np.int64) for b in np.split(order, cuts) if b.size]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


@dataclass(frozen=True)
class Batch:
    """One collated mini-batch (torch tensors), fairseq's ``net_input`` + ``target``.

    Attributes
    ----------
    src_tokens : LongTensor (B, S)
        Source with ``</s>``, left-padded.
    src_lengths : LongTensor (B,)
    prev_output_tokens : LongTensor (B, T)
        ``</s>`` followed by the target without its final ``</s>``, right-padded.
    target : LongTensor (B, T)
        Target with ``</s>``, right-padded.
    ntokens : int
        Non-padding target tokens (fairseq's ``sample_size``).
    """

    src_tokens: object
    src_lengths: object
    prev_output_tokens: object
    target: object
    ntokens: int

    def to(self, device) -> "Batch":
        return Batch(self.src_tokens.to(device), self.src_lengths.to(device),
                     self.prev_output_tokens.to(device), self.target.to(device), self.ntokens)


def _pad(seqs: Sequence[np.ndarray], pad: int, left: bool) -> np.ndarray:
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        if left:
            out[i, width - len(s):] = s
        else:
            out[i, :len(s)] = s
    return out


def collate(src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], dictionary: Dictionary) -> Batch:
    """Pad encoded pairs into a :class:`Batch` as fairseq's ``language_pair_dataset.collate``.

    Sentences are ordered by decreasing source length (as fairseq does); the
    source is left-padded, target and ``prev_output_tokens`` right-padded.
    """
    import torch

    if len(src) != len(tgt) or not src:
        raise ValueError("src and tgt must be non-empty and of the same length")
    for s in list(src) + list(tgt):
        if len(s) == 0 or s[-1] != dictionary.eos:
            raise ValueError("every encoded sentence must end with </s> (use Dictionary.encode_line)")
    order = np.argsort([-len(s) for s in src], kind="mergesort")
    src = [src[i] for i in order]
    tgt = [tgt[i] for i in order]
    prev = [np.concatenate([[dictionary.eos], t[:-1]]) for t in tgt]
    return Batch(
        src_tokens=torch.from_numpy(_pad(src, dictionary.pad, left=True)),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.int64),
        prev_output_tokens=torch.from_numpy(_pad(prev, dictionary.pad, left=False)),
        target=torch.from_numpy(_pad(tgt, dictionary.pad, left=False)),
        ntokens=int(sum(len(t) for t in tgt)),
    )


def main(argv=None) -> int:
    """``python -m adamdist.data.iwslt``: prepare IWSLT14 de-en (see :func:`prepare_iwslt14`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m adamdist.data.iwslt",
                                     description="Prepare IWSLT14 de-en with fairseq's prepare-iwslt14.sh into "
                                                 "the layout adamdist.data.iwslt reads.")
    parser.add_argument("--root", help="data root (default: $ADAMDIST_DATA or ~/.cache/adamdist/data)")
    parser.add_argument("--fairseq", help="an existing fairseq checkout to take the script from")
    parser.add_argument("--archive", help="a local copy of de-en.tgz")
    args = parser.parse_args(argv)
    folder = prepare_iwslt14(args.root, fairseq=args.fairseq, archive=args.archive)
    print(f"IWSLT14 de-en prepared in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
