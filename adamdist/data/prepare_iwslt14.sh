#!/usr/bin/env bash
# Prepare IWSLT14 de-en with fairseq's examples/translation/prepare-iwslt14.sh and lay it out as
# adamdist.data.iwslt reads it:  DEST/{train,valid,test}.{de,en}  (tokenised, before BPE) and
# DEST/bpe10k/{train,valid,test}.{de,en} + DEST/bpe10k/code.
#
# usage: prepare_iwslt14.sh DEST
# env:   FAIRSEQ_DIR   an existing fairseq checkout (else fairseq is fetched at FAIRSEQ_COMMIT)
#        IWSLT14_TGZ   a local copy of de-en.tgz (fairseq's script otherwise downloads it)
# Needs git, perl, python3 and wget (the tools fairseq's script calls). Called by
# adamdist.data.iwslt.prepare_iwslt14, which checks the result.
set -euo pipefail
dest=$(realpath -m "$1")
FAIRSEQ_COMMIT=${FAIRSEQ_COMMIT:-388c520be21752cacb9fe3b1712038f32e0e9a5f}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "${FAIRSEQ_DIR:-}" ]; then
  cp -r "$FAIRSEQ_DIR/examples/translation" "$work/translation"
else
  git -c advice.detachedHead=false clone --quiet --filter=blob:none --no-checkout \
    https://github.com/facebookresearch/fairseq "$work/fairseq"
  git -C "$work/fairseq" checkout --quiet "$FAIRSEQ_COMMIT" -- examples/translation
  cp -r "$work/fairseq/examples/translation" "$work/translation"
fi
cd "$work/translation"
if [ -n "${IWSLT14_TGZ:-}" ]; then
  mkdir -p orig && cp "$IWSLT14_TGZ" orig/de-en.tgz
fi
# fairseq's script exits 0 even when its download fails: the caller checks the files.
bash prepare-iwslt14.sh

prep=iwslt14.tokenized.de-en
mkdir -p "$dest/bpe10k"
for split in train valid test; do
  for lang in de en; do
    cp "$prep/tmp/$split.$lang" "$dest/$split.$lang"
    cp "$prep/$split.$lang" "$dest/bpe10k/$split.$lang"
  done
done
cp "$prep/code" "$dest/bpe10k/code"
echo "prepare_iwslt14.sh: IWSLT14 de-en in $dest"
