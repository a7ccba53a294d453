"""Submissions as archives (sandbox/submission.py, JudgeSpec.archive): unpacked or refused."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from typing import Literal

import pytest
from pydantic import ValidationError

from sandbox.judging import JudgeSpec
from sandbox.submission import MAX_BYTES, MAX_FILES, unpack


def _zip(files: dict[str, bytes], *, link: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symbolic link
            z.writestr(info, "/etc/shadow")
    return out.getvalue()


def _tar(
    files: dict[str, bytes],
    mode: Literal["w", "w:gz", "w:xz"] = "w:gz",
    *,
    device: str | None = None,
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if device:
            info = tarfile.TarInfo(device)
            info.type = tarfile.CHRTYPE
            t.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("make", [_zip, _tar, lambda f: _tar(f, "w:xz"), lambda f: _tar(f, "w")])
def test_zip_and_tar_unpack_to_plain_files(make):
    assert unpack(make({"main.cpp": b"int main() {}\n", "util.h": b"//\n"})) == {
        "main.cpp": b"int main() {}\n",
        "util.h": b"//\n",
    }


def test_one_top_folder_is_taken_from_inside():
    assert unpack(_zip({"solution/main.py": b"1", "solution/lib.py": b"2"})) == {
        "main.py": b"1",
        "lib.py": b"2",
    }


@pytest.mark.parametrize(
    ("archive", "said"),
    [
        (_zip({"a/x.py": b"", "b/y.py": b""}), "not a plain file name"),
        (_zip({"../../etc/cron.d/x": b""}), "not a plain file name"),
        (_tar({"/etc/passwd": b""}), "not a plain file name"),
        (_zip({"x.py": b""}, link="link"), "not a regular file"),
        (_tar({"x.py": b""}, device="null"), "not a regular file"),
        (_zip({f"f{i}.py": b"" for i in range(MAX_FILES + 1)}), f"more than {MAX_FILES} files"),
        (_zip({"bomb.txt": b"\0" * (MAX_BYTES + 1)}), f"more than {MAX_BYTES} bytes"),
        (b"just some bytes", "not an archive"),
        (_zip({}), "no files"),
    ],
)
def test_what_could_hurt_is_refused_by_name(archive: bytes, said: str):
    with pytest.raises(ValueError, match=said):
        unpack(archive)


def test_a_bombs_headers_are_not_trusted():
    """A deflated run of zeros is small in the archive; it stops at the cap as it is read."""
    archive = _zip({"a.txt": b"\0" * (MAX_BYTES // 2), "b.txt": b"\0" * (MAX_BYTES // 2 + 10)})
    assert len(archive) < 100_000
    with pytest.raises(ValueError, match=r"at b\.txt"):
        unpack(archive)


def test_a_judge_spec_takes_its_code_and_files_from_the_archive():
    archive = base64.b64encode(_zip({"main.cpp": b"// code\n", "grader.cpp": b"// g\n"}))
    spec = JudgeSpec.model_validate(
        {"archive": archive.decode(), "language": "cpp", "tests": [{"stdin": ""}]}
    )
    assert spec.code == "// code\n"
    assert set(spec.files) == {"grader.cpp"}
    assert spec.archive is None  # unpacked, not carried along
    empty = JudgeSpec.model_validate(  # an empty code (Judge0's multi-file programs) is none
        {"code": "", "archive": archive.decode(), "language": "cpp", "tests": [{"stdin": ""}]}
    )
    assert empty.code == "// code\n"
    with pytest.raises(ValidationError, match=r"it holds main\.cpp, the source, and code is given"):
        JudgeSpec.model_validate(
            {"code": "x", "archive": archive.decode(), "language": "cpp", "tests": [{}]}
        )


def test_a_bad_archive_is_a_validation_error_naming_it():
    with pytest.raises(ValidationError, match="not an archive"):
        JudgeSpec.model_validate(
            {"archive": base64.b64encode(b"junk").decode(), "tests": [{"stdin": ""}]}
        )
    with pytest.raises(ValidationError, match="archive: not base64"):
        JudgeSpec.model_validate({"archive": "%%% not base64", "tests": [{"stdin": ""}]})
