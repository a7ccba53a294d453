"""Images: import of real archive formats, hostile archives, the built-in images.

Archives are built here with tarfile, byte for byte what `docker export`,
`docker save` and an OCI layout hold. Every refused archive must leave the
store exactly as it was: no image, no staging directory, nothing outside.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import JobSpec, Status
from sandbox.errors import SpecError
from sandbox.image.archive import ArchiveError, Limits
from sandbox.image.store import ImageError, ImageStore

pytestmark = [pytest.mark.root, pytest.mark.overlay]

Entry = tuple[str, str, bytes | str | None, int]  # (kind, name, data/target, mode)


def _tar(entries: list[Entry], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for kind, name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = str(data)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = str(data)
                tar.addfile(info)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
                tar.addfile(info)
    return buf.getvalue()


def _busybox_rootfs() -> list[Entry]:
    """A minimal runnable rootfs: busybox as /bin/sh."""
    busybox = Path("/bin/busybox").read_bytes()
    return [
        ("dir", "bin", None, 0o755),
        ("file", "bin/busybox", busybox, 0o755),
        ("symlink", "bin/sh", "/bin/busybox", 0o777),
        ("symlink", "bin/cat", "busybox", 0o777),
        ("dir", "etc", None, 0o755),
        ("file", "etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
    ]


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "state")


@pytest.fixture
def archive(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(data: bytes, name: str = "image.tar") -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


def _untouched(store: ImageStore) -> None:
    """No image and no staging directory were left by a refused import."""
    leftovers = [p.name for p in store.root.iterdir()] if store.root.exists() else []
    assert leftovers == []


def test_docker_export_tar_gz_imports_and_runs(store, archive):
    """A plain rootfs (.tar.gz, as `docker export | gzip`) becomes an image."""
    manifest = store.import_archive("bb", archive(_tar(_busybox_rootfs(), gz=True)))
    assert manifest["source"] == "rootfs"
    assert manifest["digest"].startswith("sha256:")
    root = store.root / "bb" / "rootfs"
    assert (root / "bin/busybox").stat().st_mode & 0o777 == 0o755
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    for mountpoint in ("proc", "dev", "tmp", "box"):
        assert (root / mountpoint).is_dir()
    assert store.get("bb").binds == ()


async def test_imported_image_runs_a_job(runtime, archive):
    """`sandbox image import` then a job in it: only the image's files are there."""
    store = ImageStore(runtime.settings.state_dir)
    name = f"test-bb-{os.getpid()}"
    store.import_archive(name, archive(_tar(_busybox_rootfs())))
    try:
        spec = JobSpec(code="cat /etc/passwd; ls /usr 2>&1", language="sh", image=name)
        result = await runtime.execute(spec)
        assert result.status is Status.RUNTIME_ERROR or result.status is Status.OK
        assert result.stdout.startswith("root:x:0:0::/:/bin/sh\n")
        assert "python" not in result.stdout
    finally:
        store.remove(name)


def _layer(entries: list[Entry]) -> bytes:
    return _tar(entries)


def test_docker_save_layers_and_whiteouts(store, archive):
    """docker save: layers in order; .wh. deletes, .wh..wh..opq empties a directory."""
    base: list[Entry] = [
        *_busybox_rootfs(),
        ("dir", "data", None, 0o755),
        ("file", "data/old", b"old", 0o644),
        ("file", "gone", b"x", 0o644),
        ("dir", "opaque", None, 0o755),
        ("file", "opaque/lower", b"lower", 0o644),
    ]
    top: list[Entry] = [
        ("file", ".wh.gone", b"", 0o644),
        ("file", "data/new", b"new", 0o644),
        ("dir", "opaque", None, 0o755),
        ("file", "opaque/upper", b"upper", 0o644),
        ("file", "opaque/.wh..wh..opq", b"", 0o644),
    ]
    config = {"config": {"Env": ["PATH=/bin"]}}
    outer = _tar(
        [
            ("file", "l1/layer.tar", _layer(base), 0o644),
            ("file", "l2/layer.tar", _layer(top), 0o644),
            ("file", "cfg.json", json.dumps(config).encode(), 0o644),
            (
                "file",
                "manifest.json",
                json.dumps(
                    [
                        {
                            "Config": "cfg.json",
                            "RepoTags": ["x"],
                            "Layers": ["l1/layer.tar", "l2/layer.tar"],
                        }
                    ]
                ).encode(),
                0o644,
            ),
        ]
    )
    manifest = store.import_archive("saved", archive(outer))
    root = store.root / "saved" / "rootfs"
    assert manifest["source"] == "docker-save"
    assert manifest["layers"] == ["l1/layer.tar", "l2/layer.tar"]
    assert manifest["env"] == ["PATH=/bin"]
    assert (root / "data/old").read_bytes() == b"old"
    assert (root / "data/new").read_bytes() == b"new"
    assert not (root / "gone").exists()
    assert sorted(os.listdir(root / "opaque")) == ["upper"]


def _oci(layers: list[bytes]) -> bytes:
    blobs: list[Entry] = []

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs.append(("file", f"blobs/sha256/{digest}", data, 0o644))
        return f"sha256:{digest}"

    layer_digests = [blob(gzip.compress(layer)) for layer in layers]
    config = blob(json.dumps({"config": {"Env": ["A=1"]}}).encode())
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "config": {"digest": config},
                "layers": [{"digest": d, "mediaType": "tar+gzip"} for d in layer_digests],
            }
        ).encode()
    )
    index = {"schemaVersion": 2, "manifests": [{"digest": manifest}]}
    return _tar(
        [
            ("file", "oci-layout", b'{"imageLayoutVersion": "1.0.0"}', 0o644),
            ("file", "index.json", json.dumps(index).encode(), 0o644),
            ("dir", "blobs", None, 0o755),
            ("dir", "blobs/sha256", None, 0o755),
            *blobs,
        ]
    )


def test_oci_layout_with_gzip_layers(store, archive):
    """An OCI image layout: index -> manifest -> gzip layers, applied in order."""
    layers = [_layer(_busybox_rootfs()), _layer([("file", "etc/motd", b"hi\n", 0o644)])]
    manifest = store.import_archive("oci", archive(_oci(layers)))
    assert manifest["source"] == "oci"
    assert len(manifest["layers"]) == 2
    assert (store.root / "oci/rootfs/etc/motd").read_bytes() == b"hi\n"
    assert manifest["env"] == ["A=1"]


HOSTILE: list[tuple[str, list[Entry], str]] = [
    ("absolute path", [("file", "/etc/evil", b"x", 0o644)], "absolute"),
    ("dotdot", [("file", "a/../../evil", b"x", 0o644)], "'..'"),
    (
        "relative symlink out",
        [("dir", "a", None, 0o755), ("symlink", "a/out", "../../../etc/passwd", 0o777)],
        "outside",
    ),
    (
        "write through symlink",
        [("symlink", "etc", "/etc", 0o777), ("file", "etc/evil-through-link", b"x", 0o644)],
        "symlink",
    ),
    ("hardlink outside", [("hardlink", "h", "../../etc/shadow", 0o644)], "'..'"),
    ("hardlink to nothing", [("hardlink", "h", "missing", 0o644)], "no such file"),
    ("bad whiteout", [("file", ".wh...", b"", 0o644)], "whiteout"),
]


@pytest.mark.parametrize(
    ("entries", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_archive_is_refused_and_leaves_nothing(store, archive, entries, message):
    """Each escape attempt is refused with the member named; nothing is written anywhere."""
    before = set(os.listdir("/etc"))
    with pytest.raises(ArchiveError, match=message):
        store.import_archive("evil", archive(_tar(entries)))
    _untouched(store)
    assert set(os.listdir("/etc")) == before
    assert not Path("/etc/evil-through-link").exists()


def test_absolute_symlink_is_kept(store, archive):
    """Absolute symlinks resolve inside the container's root: they are allowed."""
    store.import_archive("abs", archive(_tar([("symlink", "passwd", "/etc/passwd", 0o777)])))
    assert os.readlink(store.root / "abs/rootfs/passwd") == "/etc/passwd"


def test_devices_dropped_and_setuid_stripped(store, archive):
    """Device nodes are dropped, setuid/setgid bits cleared, both reported."""
    entries: list[Entry] = [
        ("chr", "dev-null", None, 0o666),
        ("file", "suid", b"#!/bin/sh\n", 0o4755),
        ("file", "sgid", b"#!/bin/sh\n", 0o2755),
    ]
    manifest = store.import_archive("tame", archive(_tar(entries)))
    root = store.root / "tame/rootfs"
    assert not (root / "dev-null").exists()
    assert (root / "suid").stat().st_mode & 0o7777 == 0o755
    assert (root / "sgid").stat().st_mode & 0o7777 == 0o755
    assert manifest["dropped_devices"] == 1
    assert sorted(manifest["stripped_setid"]) == ["sgid", "suid"]


def test_absurd_size_is_refused(store, archive):
    """A member larger than the limit is refused before it fills the disk."""
    data = _tar([("file", "big", b"x" * 4096, 0o644)])
    with pytest.raises(ArchiveError, match="too large"):
        store.import_archive("big", archive(data), limits=Limits(max_member_bytes=1024))
    _untouched(store)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive_is_refused(store, archive, damage):
    """A truncated or corrupt archive is an error, and leaves no half image."""
    data = _tar(_busybox_rootfs())
    data = data[: len(data) // 2] if damage == "truncated" else os.urandom(4096)
    with pytest.raises(ArchiveError):
        store.import_archive("broken", archive(data))
    _untouched(store)


def test_import_refuses_existing_and_builtin_names(store, archive):
    """Names are checked: existing, built-in and malformed names are refused."""
    data = archive(_tar([("file", "a", b"a", 0o644)]))
    store.import_archive("one", data)
    with pytest.raises(ImageError, match="exists"):
        store.import_archive("one", data)
    with pytest.raises(ImageError, match="built-in"):
        store.import_archive("busybox", data)
    with pytest.raises(SpecError, match="invalid image name"):
        store.import_archive("../evil", data)


def test_busybox_image_is_built_from_busybox_static(store):
    """The busybox image holds busybox and its applet links, nothing of the host."""
    image = store.get("busybox")
    assert image.binds == ()
    assert (image.root / "bin/busybox").is_file()
    assert os.readlink(image.root / "bin/sh") == "/bin/busybox"
    assert not (image.root / "usr/bin/python3").exists()


async def test_busybox_image_runs_sh_jobs(runtime):
    """`sandbox run --image busybox --lang sh`: the walk-through's shell and ps."""
    spec = JobSpec(code="ps; echo ok", language="sh", image="busybox")
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    lines = result.stdout.splitlines()
    assert lines[-1] == "ok"
    assert "sandbox-init" in lines[1]  # pid 1 is our init, named without a host path
    assert str(Path(__file__).resolve().parents[2]) not in result.stdout  # no host path
    assert "python" not in result.stdout


def test_remove_image(store, archive):
    """rm removes the image; a later get says there is none."""
    store.import_archive("tmp", archive(_tar([("file", "a", b"a", 0o644)])))
    store.remove("tmp")
    with pytest.raises(ImageError, match="no image"):
        store.get("tmp")
    assert [p.name for p in store.root.iterdir()] == []


@pytest.mark.slow
async def test_debootstrap_image_runs_its_own_python_free_userland(runtime):
    """`sandbox image build --debootstrap`: a minimal Debian, independent of the host's /usr.

    minbase has no python; the job runs its own dash and coreutils from the image.
    """
    store = ImageStore(runtime.settings.state_dir)
    name = f"test-deb-{os.getpid()}"
    manifest = await asyncio.to_thread(store.build_debootstrap, name, "bookworm")
    try:
        assert manifest["source"] == "debootstrap"
        assert manifest["binds"] == []
        code = "cat /etc/debian_version; ls /usr/bin/python3 2>&1 || echo no-python"
        result = await runtime.execute(JobSpec(code=code, language="sh", image=name))
        assert result.status is Status.OK, result
        version, rest = result.stdout.split("\n", 1)
        assert version.startswith("12")
        assert "no-python" in rest
    finally:
        store.remove(name)


@pytest.mark.slow
def test_an_image_for_a_language_from_its_debian_packages(tmp_path: Path):
    """`sandbox image build NAME --language python`: debootstrap's minimal Debian with the
    language's packages (languages.toml) and nothing of the host; `sandbox judge --image`
    compiles (py_compile) and runs a submission in it."""
    name = f"test-lang-{os.getpid()}"
    sandbox_cli = str(Path(sys.executable).with_name("sandbox"))
    built = subprocess.run(
        [sandbox_cli, "image", "build", name, "--language", "python", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    try:
        manifest = json.loads(built.stdout)
        assert (manifest["source"], manifest["binds"]) == ("debootstrap", [])
        assert "python3" in manifest["include"]
        tests = tmp_path / "tests"
        tests.mkdir()
        (tests / "1.in").write_text("")
        (tests / "1.out").write_text("/usr/bin/python3 False\n")
        solution = tmp_path / "sol.py"  # the host has gcc; the image has python3 only
        solution.write_text(
            "import os, sys\nprint(sys.executable, os.path.exists('/usr/bin/gcc'))\n"
        )
        judged = subprocess.run(
            [sandbox_cli, "judge", "--tests", str(tests), "--image", name, "--json", str(solution)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        result = json.loads(judged.stdout)
        assert result["status"] == "accepted", result
        assert result["compile"]["status"] == "accepted"
    finally:
        subprocess.run([sandbox_cli, "image", "rm", name], capture_output=True, check=False)
