"""zoo.outputs: a requested file is written only as a regular file, never over what zoo did not write."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from zoo.errors import UsageError
from zoo.outputs import file_lock, scratch_folder, staged_output


def _onnx_bytes(props: dict[str, str]) -> bytes:
    """A one-node ONNX model with these metadata_props."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


ZOO_EXPORT = _onnx_bytes({"zoo.model": "digits_cnn"})  # what an earlier `zoo export` left
OTHER_ONNX = _onnx_bytes({"producer": "someone else"})


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _state(path: Path) -> tuple:
    st = path.lstat()
    content = path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path) if path.is_symlink() else None
    return stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content


def _write_through(path: Path, data: bytes = b"new", **kwargs) -> None:
    with staged_output(path, **kwargs) as work:
        (work / path.name).write_bytes(data)


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _link(p: Path) -> None:
    _write(p.with_name("elsewhere.txt"), b"precious")
    p.symlink_to("elsewhere.txt")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "is a directory"),
    (_link, "is a symbolic link"),
    (_fifo, "is a fifo, not a regular file"),
    (_socket, "is a socket, not a regular file"),
], ids=["directory", "symlink", "fifo", "socket"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_only_regular_files_are_written_even_with_overwrite(tmp_path: Path, make, message: str,
                                                            overwrite: bool) -> None:
    target = tmp_path / "out.onnx"
    make(target)
    before = {p.name: _state(p) for p in tmp_path.iterdir()}
    with pytest.raises(UsageError, match=message) as caught:
        _write_through(target, overwrite=overwrite)
    assert "\n" not in str(caught.value)
    assert {p.name: _state(p) for p in tmp_path.iterdir()} == before


def test_a_device_is_refused_and_no_lock_is_made_beside_it() -> None:
    before = os.stat("/dev/null")
    with pytest.raises(UsageError, match="'/dev/null' is a character device, not a regular file"):
        _write_through(Path("/dev/null"), overwrite=True)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not Path("/dev/.null.lock").exists()


@pytest.mark.parametrize(("data", "mode", "message"), [
    (b"my notes\n", 0o640, "is not a file zoo wrote"),
    (OTHER_ONNX, 0o640, "is not a file zoo wrote"),
    (b"", 0o640, "is not a file zoo wrote"),
    (ZOO_EXPORT, 0o444, r"is write-protected \(mode 0444\)"),  # even a zoo export
], ids=["text", "other-onnx", "empty", "write-protected-export"])
def test_a_file_needs_overwrite_and_keeps_its_mode(tmp_path: Path, data: bytes, mode: int, message: str) -> None:
    target = tmp_path / "out.onnx"
    _write(target, data, mode)
    with pytest.raises(UsageError, match=message + r".*pass --force \(overwrite=True"):
        _write_through(target)
    assert _state(target) == (stat.S_IFREG, mode, data)
    _write_through(target, overwrite=True)
    assert _state(target) == (stat.S_IFREG, mode, b"new")  # its mode was not silently changed
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_an_earlier_zoo_export_is_replaced_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"
    _write(target, ZOO_EXPORT, 0o600)
    _write_through(target)
    assert _state(target) == (stat.S_IFREG, 0o600, b"new")


def test_a_new_file_gets_the_usual_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        _write_through(tmp_path / "out.onnx")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.onnx").stat().st_mode) == 0o644


def test_a_failed_block_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"
    _write(target, ZOO_EXPORT)
    with pytest.raises(RuntimeError), staged_output(target) as work:
        (work / target.name).write_bytes(b"half")
        raise RuntimeError("killed half way")
    assert _state(target) == (stat.S_IFREG, 0o644, ZOO_EXPORT)
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_a_companion_is_replaced_with_its_model_and_refused_when_unrelated(tmp_path: Path) -> None:
    target, data = tmp_path / "out.onnx", tmp_path / "out.onnx.data"
    _write(data, b"someone's data")
    with pytest.raises(UsageError, match="out.onnx.data' exists and is not a file zoo wrote"), \
            staged_output(target) as work:
        (work / "out.onnx").write_bytes(ZOO_EXPORT)
        (work / "out.onnx.data").write_bytes(b"tensors")
    assert data.read_bytes() == b"someone's data" and not target.exists()
    _write(target, ZOO_EXPORT)  # now the data file belongs to a zoo export
    with staged_output(target) as work:
        (work / "out.onnx").write_bytes(ZOO_EXPORT)
        (work / "out.onnx.data").write_bytes(b"tensors")
    assert data.read_bytes() == b"tensors"
    data.unlink()
    data.symlink_to(target.name)
    with pytest.raises(UsageError, match="out.onnx.data' is a symbolic link"), staged_output(target) as work:
        (work / "out.onnx.data").write_bytes(b"tensors")
    assert data.is_symlink()


@pytest.mark.parametrize(("where", "message"), [
    ("missing/out.onnx", "directory '.*missing' does not exist"),
    ("file.txt/out.onnx", "'.*file.txt' is not a directory"),
    ("new/", "'.*new' names a directory"),
    ("x" * 5000, "File name too long"),
])
def test_a_missing_or_impossible_folder_is_one_line(tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "file.txt").write_bytes(b"x")
    with pytest.raises(UsageError, match=message), staged_output(f"{tmp_path}/{where}"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_an_unwritable_folder_is_one_line_for_a_user_without_root() -> None:
    """A user cannot write into a 0555 folder: a real EACCES (run as root, the child drops to nobody)."""
    root = Path(tempfile.mkdtemp(prefix="zoo-outputs-"))
    try:
        root.chmod(0o755)
        locked = root / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        code = ("import os\nfrom zoo.errors import UsageError\nfrom zoo.outputs import staged_output\n"
                "if os.getuid() == 0:  # after the imports: the interpreter's own files may be root's\n"
                "    os.setgid(65534); os.setuid(65534)\n"
                "try:\n"
                f"    with staged_output({str(locked / 'out.onnx')!r}) as work: pass\n"
                "except UsageError as e: print(e)\n")
        done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd="/",
                              env={"PATH": os.environ["PATH"]})
        assert done.returncode == 0, done.stderr
        assert "locked' is not writable (Permission denied)" in done.stdout
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)
        shutil.rmtree(root)


def test_stale_folders_of_a_dead_writer_are_removed_under_the_lock(tmp_path: Path) -> None:
    """A writer killed in its block leaves its folder; the next writer to that path removes it."""
    target = tmp_path / "out.onnx"
    code = ("import os, signal, sys\nfrom zoo.outputs import staged_output\n"
            f"with staged_output({str(target)!r}) as work:\n"
            "    (work / 'scratch').write_bytes(b'x' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9
    left = {p.name for p in tmp_path.iterdir()} - {".out.onnx.lock"}  # the dead writer's lock file, and:
    assert len(left) == 1 and left.pop().startswith(".out.onnx.")
    (tmp_path / ".out.onnx.backup.tmp").mkdir()  # not one of ours: a name mkdtemp cannot make
    _write_through(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.onnx.backup.tmp", "out.onnx"]


def test_a_live_writer_holds_the_lock(tmp_path: Path) -> None:
    """A second process cannot take the path's lock while the first holds it; the lock file goes with it."""
    target = tmp_path / "out.onnx"
    probe = ("from filelock import FileLock, Timeout\n"
             f"try:\n    FileLock({str(tmp_path / '.out.onnx.lock')!r}, blocking=False).acquire()\n"
             "except Timeout:\n    print('held')\n")
    with file_lock(target) as held:
        assert held
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert done.stdout.strip() == "held", done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_waiting_process_gets_the_lock_once_released_and_removes_it(tmp_path: Path) -> None:
    """A process that waits on the lock file the holder then removes takes a fresh lock, and removes that."""
    target = tmp_path / "out.onnx"
    got = tmp_path / "got"
    code = ("from pathlib import Path\nfrom zoo.outputs import file_lock\n"
            f"with file_lock(Path({str(target)!r})) as held:\n"
            f"    Path({str(got)!r}).write_text(str(held))\n")
    with file_lock(target):
        waiter = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=2)  # still waiting: it may not take the lock while this process holds it
        assert not got.exists()
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert got.read_text() == "True"
    got.unlink()
    assert list(tmp_path.iterdir()) == []


def test_threads_hold_the_lock_one_at_a_time(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"
    inside: list[int] = []
    most: list[int] = []

    def hold() -> None:
        with file_lock(target) as held:
            assert held
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == [1] * 6
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("make", "message"), [
    (os.mkfifo, "its lock file is not a regular file"),
    (lambda p: os.symlink(p.with_name("elsewhere"), p), "Too many levels of symbolic links"),
])
def test_a_lock_path_that_is_not_a_regular_file_is_refused_and_left(tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "out.onnx"
    lock_path = tmp_path / ".out.onnx.lock"
    make(lock_path)
    with pytest.raises(UsageError, match=message) as caught:
        _write_through(target)
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.onnx.lock"]
    assert not stat.S_ISREG(os.lstat(lock_path).st_mode)
    with file_lock(target, optional=True) as held:  # the weights cache goes on without a lock
        assert not held


def test_a_lock_that_cannot_be_created_is_an_error_not_a_wait(tmp_path: Path) -> None:
    """filelock would wait for ever on a lock file that cannot be made (here: under a regular file)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = ("from pathlib import Path\nfrom zoo.outputs import file_lock\n"
            f"with file_lock(Path({str(blocker / 'x.onnx')!r})):\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "NotADirectoryError" in done.stderr, done.stderr


def _scratch_owner(parent: Path) -> subprocess.Popen[str]:
    """A process in a `scratch_folder` of `parent` (prefix zoo-test) with a file in it, which prints the folder's
    path once it is there and then waits for a line on its stdin before it ends."""
    code = ("import sys\nfrom pathlib import Path\nfrom zoo.outputs import scratch_folder\n"
            f"with scratch_folder('zoo-test', Path({str(parent)!r})) as work:\n"
            "    (work / 'model.onnx').write_bytes(b'x' * 100_000)\n"
            "    print(work, flush=True)\n"
            "    sys.stdin.readline()\n")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _folder_of(owner: subprocess.Popen[str]) -> Path:
    """The scratch folder `owner` says it made (its first line: written once the folder is there)."""
    line = owner.stdout.readline()
    assert line, owner.communicate()[1]
    return Path(line.strip())


def test_a_scratch_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path: Path) -> None:
    owner = _scratch_owner(tmp_path)
    try:
        left = _folder_of(owner)
    finally:
        owner.kill()
        owner.wait()
    assert left.parent == tmp_path and left.name.startswith("zoo-test-") and (left / "model.onnx").is_file()
    (tmp_path / "zoo-test-backup").mkdir()  # not one of ours: a name mkdtemp cannot make
    (tmp_path / "zoo-test-abcd1234").write_text("a file, not a run's folder")
    with scratch_folder("zoo-test", tmp_path) as mine:
        assert not left.exists() and mine.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [mine.name, f".{mine.name}.lock", "zoo-test-backup", "zoo-test-abcd1234"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo-test-abcd1234", "zoo-test-backup"]


def test_a_scratch_folder_of_a_live_run_is_left_alone(tmp_path: Path) -> None:
    owner = _scratch_owner(tmp_path)
    try:
        live = _folder_of(owner)
        with scratch_folder("zoo-test", tmp_path) as mine:
            assert mine != live
            assert (live / "model.onnx").is_file()
        assert (live / "model.onnx").is_file()
        _, err = owner.communicate("done\n", timeout=60)
    finally:
        owner.kill()
        owner.wait()
    assert owner.returncode == 0, err
    assert list(tmp_path.iterdir()) == []
