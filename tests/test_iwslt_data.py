"""adamdist.data.iwslt.prepare_iwslt14: fairseq's preparation, laid out as iwslt14() reads it.

fairseq's script needs the network, Moses and subword-nmt; here a stand-in fairseq checkout
whose examples/translation/prepare-iwslt14.sh writes what the real one writes (same paths)
checks everything around it: the copy into the layout, the check of the result, the
refusal of a run that produced nothing (the real script exits 0 when its download fails).
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from adamdist.data import DataNotFoundError
from adamdist.data.iwslt import FOLDER, PREPARE_SCRIPT, iwslt14, main, prepare_iwslt14

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# what fairseq's script leaves behind, in its own paths: the pre-BPE text in tmp/, the BPE'd
# text and the codes in iwslt14.tokenized.de-en/
FAKE_PREPARE = textwrap.dedent("""\
    set -e
    prep=iwslt14.tokenized.de-en
    mkdir -p $prep/tmp
    for s in train valid test; do
      printf 'das ist gut\\nein haus\\n' > $prep/tmp/$s.de
      printf 'that is good\\na house\\n' > $prep/tmp/$s.en
      printf 'das ist g@@ ut\\nein haus\\n' > $prep/$s.de
      printf 'that is go@@ od\\na house\\n' > $prep/$s.en
    done
    echo "g u" > $prep/code
    """)


def _fairseq(tmp_path: Path, script: str) -> Path:
    checkout = tmp_path / "fairseq"
    translation = checkout / "examples" / "translation"
    translation.mkdir(parents=True)
    (translation / "prepare-iwslt14.sh").write_text(script)
    return checkout


def test_the_script_ships_with_the_package_and_parses():
    assert PREPARE_SCRIPT.is_file()
    subprocess.run(["bash", "-n", str(PREPARE_SCRIPT)], check=True)


def test_prepared_files_are_laid_out_as_iwslt14_reads_them(tmp_path):
    folder = prepare_iwslt14(tmp_path / "data", fairseq=_fairseq(tmp_path, FAKE_PREPARE))
    assert folder == tmp_path / "data" / FOLDER
    train = iwslt14("train", root=tmp_path / "data")
    assert train.src == ("das ist g@@ ut", "ein haus") and train.tgt[0] == "that is go@@ od"
    assert iwslt14("test", bpe=False, root=tmp_path / "data").src[0] == "das ist gut"
    assert (folder / "bpe10k" / "code").read_text().strip() == "g u"
    assert not (tmp_path / "data" / (FOLDER + ".partial")).exists()


def test_a_local_archive_is_handed_to_fairseqs_script(tmp_path, capsys):
    archive = tmp_path / "de-en.tgz"
    archive.write_bytes(b"not really a tarball")
    script = FAKE_PREPARE + "cp orig/de-en.tgz $prep/code\n"  # the archive's bytes end up in the codes file
    main(["--root", str(tmp_path / "data"), "--fairseq", str(_fairseq(tmp_path, script)), "--archive", str(archive)])
    assert "prepared in" in capsys.readouterr().out
    assert (tmp_path / "data" / FOLDER / "bpe10k" / "code").read_bytes() == b"not really a tarball"


def test_a_run_that_produces_nothing_is_an_error_and_leaves_nothing(tmp_path):
    # fairseq's script: "Data not successfully downloaded." and `exit` (status 0)
    silent = 'echo "Data not successfully downloaded."\nexit\n'
    with pytest.raises(DataNotFoundError, match=r"(?s)missing: train\.de.*Data not successfully downloaded"):
        prepare_iwslt14(tmp_path / "data", fairseq=_fairseq(tmp_path, silent))
    assert not (tmp_path / "data" / FOLDER).exists()
    assert not (tmp_path / "data" / (FOLDER + ".partial")).exists()


def test_a_failing_script_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="exit status 3"):
        prepare_iwslt14(tmp_path / "data", fairseq=_fairseq(tmp_path, "echo broken >&2\nexit 3\n"))


@pytest.mark.parametrize("kwargs, match", [({"fairseq": "/no/such/fairseq"}, "fairseq"),
                                           ({"archive": "/no/such/de-en.tgz"}, "archive"),
                                           ({"timeout": 0}, "timeout"), ({"timeout": float("nan")}, "timeout")])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        prepare_iwslt14(tmp_path / "data", **kwargs)
